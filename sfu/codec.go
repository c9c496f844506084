package sfu

import (
	"encoding/binary"
	"strings"

	"github.com/pion/webrtc/v4"
)

// codecKind is what the forwarding path needs to know about a codec: how to
// find keyframes (and frame widths) in its RTP payloads.
type codecKind uint8

const (
	codecOther codecKind = iota
	codecOpus
	codecVP8
	codecVP9
	codecH264
)

func codecKindOf(mime string) codecKind {
	switch {
	case strings.EqualFold(mime, webrtc.MimeTypeOpus):
		return codecOpus
	case strings.EqualFold(mime, webrtc.MimeTypeVP8):
		return codecVP8
	case strings.EqualFold(mime, webrtc.MimeTypeVP9):
		return codecVP9
	case strings.EqualFold(mime, webrtc.MimeTypeH264):
		return codecH264
	}
	return codecOther
}

// keyframe reports whether an RTP payload (without padding) starts a
// keyframe, and the frame width when the payload carries it (VP8 keyframe
// header, VP9 scalability structure, H.264 SPS), else 0. Audio payloads are
// all "keyframes": a subscriber may start anywhere.
func keyframe(c codecKind, payload []byte) (bool, int) {
	switch c {
	case codecVP8:
		return vp8Keyframe(payload)
	case codecVP9:
		return vp9Keyframe(payload)
	case codecH264:
		return h264Keyframe(payload)
	case codecOpus:
		return true, 0
	}
	return false, 0
}

// vp8Keyframe parses the VP8 payload descriptor (RFC 7741, section 4.2) and
// the start of the frame header (RFC 6386, section 9.1).
func vp8Keyframe(p []byte) (bool, int) {
	if len(p) < 1 {
		return false, 0
	}
	b0 := p[0]
	i := 1
	if b0&0x80 != 0 { // X: extended control bits
		if len(p) < 2 {
			return false, 0
		}
		b1 := p[1]
		i = 2
		if b1&0x80 != 0 { // I: picture ID, 7 or 15 bits
			if len(p) <= i {
				return false, 0
			}
			if p[i]&0x80 != 0 {
				i += 2
			} else {
				i++
			}
		}
		if b1&0x40 != 0 { // L: TL0PICIDX
			i++
		}
		if b1&0x30 != 0 { // T or K: TID/Y/KEYIDX
			i++
		}
	}
	start := b0&0x10 != 0 // S
	partition := b0 & 0x07
	if !start || partition != 0 || len(p) <= i {
		return false, 0
	}
	h := p[i:]
	if h[0]&0x01 != 0 { // P: an inter frame
		return false, 0
	}
	if len(h) >= 10 && h[3] == 0x9d && h[4] == 0x01 && h[5] == 0x2a {
		return true, int(binary.LittleEndian.Uint16(h[6:8]) & 0x3fff)
	}
	return true, 0
}

// vp9Keyframe parses the VP9 payload descriptor (RFC 9628, section 4.2).
func vp9Keyframe(p []byte) (bool, int) {
	if len(p) < 1 {
		return false, 0
	}
	b0 := p[0]
	picID, interPic, layers, flexible := b0&0x80 != 0, b0&0x40 != 0, b0&0x20 != 0, b0&0x10 != 0
	begin, ss := b0&0x08 != 0, b0&0x02 != 0
	i := 1
	if picID {
		if len(p) <= i {
			return false, 0
		}
		if p[i]&0x80 != 0 {
			i += 2
		} else {
			i++
		}
	}
	spatial := 0
	if layers {
		if len(p) <= i {
			return false, 0
		}
		spatial = int(p[i]>>1) & 0x07
		i++
		if !flexible {
			i++ // TL0PICIDX
		}
	}
	if flexible && interPic {
		for n := 0; n < 3; n++ { // up to 3 reference indices
			if len(p) <= i {
				return false, 0
			}
			more := p[i]&0x01 != 0
			i++
			if !more {
				break
			}
		}
	}
	key := !interPic && begin && spatial == 0
	width := 0
	if ss && len(p) > i {
		n := int(p[i]>>5) + 1
		hasSize := p[i]&0x10 != 0
		i++
		for s := 0; hasSize && s < n && len(p) >= i+4; s++ {
			width = int(binary.BigEndian.Uint16(p[i:]))
			i += 4
		}
	}
	return key, width
}

// pictureIDs locates the frame numbering of a VP8 (RFC 7741, section 4.2)
// or VP9 (RFC 9628, section 4.2) payload descriptor: the offset of the
// picture id (-1: none) and whether it is the 15-bit form, and the offset
// of TL0PICIDX (-1: none). A descriptor too short for what it announces
// has neither. Other codecs number frames by RTP sequence number alone.
func pictureIDs(c codecKind, p []byte) (pic int, long bool, tl0 int) {
	pic, tl0 = -1, -1
	i := 0
	hasPic, hasTL0 := false, false
	switch c {
	case codecVP8:
		if len(p) < 2 || p[0]&0x80 == 0 { // X: no extension, no ids
			return -1, false, -1
		}
		hasPic, hasTL0 = p[1]&0x80 != 0, p[1]&0x40 != 0 // I, L
		i = 2
	case codecVP9:
		if len(p) < 1 {
			return -1, false, -1
		}
		// I; TL0PICIDX follows the layer indices (L) in non-flexible mode (F).
		hasPic, hasTL0 = p[0]&0x80 != 0, p[0]&0x20 != 0 && p[0]&0x10 == 0
		i = 1
	default:
		return -1, false, -1
	}
	if hasPic {
		if len(p) <= i {
			return -1, false, -1
		}
		pic, long = i, p[i]&0x80 != 0
		i++
		if long {
			i++
		}
	}
	if c == codecVP9 && p[0]&0x20 != 0 {
		i++ // TID/U/SID/D
	}
	if hasTL0 {
		tl0 = i
		i++
	}
	if len(p) < i {
		return -1, false, -1
	}
	return pic, long, tl0
}

// h264Keyframe finds an IDR slice or a sequence parameter set (RFC 6184:
// single NAL unit, STAP-A, start of an FU-A); the SPS gives the width.
func h264Keyframe(p []byte) (bool, int) {
	if len(p) < 1 {
		return false, 0
	}
	switch typ := p[0] & 0x1f; {
	case typ == 5:
		return true, 0
	case typ == 7:
		return true, spsWidth(p)
	case typ == 24: // STAP-A
		key, width := false, 0
		for i := 1; i+2 < len(p); {
			size := int(binary.BigEndian.Uint16(p[i:]))
			i += 2
			if size == 0 || i+size > len(p) {
				break
			}
			switch p[i] & 0x1f {
			case 5:
				key = true
			case 7:
				key = true
				width = spsWidth(p[i : i+size])
			}
			i += size
		}
		return key, width
	case typ == 28: // FU-A
		if len(p) < 2 {
			return false, 0
		}
		t := p[1] & 0x1f
		return p[1]&0x80 != 0 && (t == 5 || t == 7), 0
	}
	return false, 0
}

// spsWidth reads the frame width from an H.264 sequence parameter set
// (ITU-T H.264, 7.3.2.1.1), 0 when it cannot.
func spsWidth(nal []byte) int {
	if len(nal) < 4 {
		return 0
	}
	r := bitReader{b: nal, pos: 1}
	profile := r.bits(8)
	r.bits(16) // constraint flags, level
	r.ue()     // seq_parameter_set_id
	chroma := uint32(1)
	switch profile {
	case 100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135:
		chroma = r.ue()
		if chroma == 3 {
			r.bits(1) // separate_colour_plane_flag
		}
		r.ue()              // bit_depth_luma_minus8
		r.ue()              // bit_depth_chroma_minus8
		r.bits(1)           // qpprime_y_zero_transform_bypass_flag
		if r.bits(1) == 1 { // seq_scaling_matrix_present_flag
			n := 8
			if chroma == 3 {
				n = 12
			}
			for i := 0; i < n; i++ {
				if r.bits(1) == 1 {
					size := 16
					if i >= 6 {
						size = 64
					}
					last, next := int32(8), int32(8)
					for j := 0; j < size && !r.failed; j++ {
						if next != 0 {
							next = (last + r.se() + 256) % 256
						}
						if next != 0 {
							last = next
						}
					}
				}
			}
		}
	}
	r.ue()          // log2_max_frame_num_minus4
	switch r.ue() { // pic_order_cnt_type
	case 0:
		r.ue() // log2_max_pic_order_cnt_lsb_minus4
	case 1:
		r.bits(1) // delta_pic_order_always_zero_flag
		r.se()    // offset_for_non_ref_pic
		r.se()    // offset_for_top_to_bottom_field
		n := r.ue()
		for i := uint32(0); i < n && i < 256 && !r.failed; i++ {
			r.se()
		}
	}
	r.ue()    // max_num_ref_frames
	r.bits(1) // gaps_in_frame_num_value_allowed_flag
	widthMbs := r.ue() + 1
	r.ue()              // pic_height_in_map_units_minus1
	if r.bits(1) == 0 { // frame_mbs_only_flag
		r.bits(1) // mb_adaptive_frame_field_flag
	}
	r.bits(1) // direct_8x8_inference_flag
	var cropLeft, cropRight uint32
	if r.bits(1) == 1 { // frame_cropping_flag
		cropLeft, cropRight = r.ue(), r.ue()
		r.ue()
		r.ue()
	}
	if r.failed || widthMbs > 1024 {
		return 0
	}
	unit := uint32(1)
	if chroma == 1 || chroma == 2 {
		unit = 2
	}
	w := int(widthMbs*16) - int((cropLeft+cropRight)*unit)
	if w <= 0 {
		return 0
	}
	return w
}

// bitReader reads an H.264 RBSP, skipping emulation prevention bytes
// (0x000003). It never allocates; reading past the end sets failed.
type bitReader struct {
	b      []byte
	pos    int  // byte position
	bit    uint // bits consumed of b[pos]
	zeros  int  // consecutive zero bytes before pos
	failed bool
}

func (r *bitReader) bit1() uint32 {
	if r.pos >= len(r.b) {
		r.failed = true
		return 0
	}
	if r.bit == 0 && r.zeros >= 2 && r.b[r.pos] == 3 {
		r.pos++
		r.zeros = 0
		if r.pos >= len(r.b) {
			r.failed = true
			return 0
		}
	}
	v := uint32(r.b[r.pos]>>(7-r.bit)) & 1
	r.bit++
	if r.bit == 8 {
		if r.b[r.pos] == 0 {
			r.zeros++
		} else {
			r.zeros = 0
		}
		r.bit = 0
		r.pos++
	}
	return v
}

func (r *bitReader) bits(n int) uint32 {
	var v uint32
	for i := 0; i < n; i++ {
		v = v<<1 | r.bit1()
	}
	return v
}

// ue reads an unsigned Exp-Golomb code.
func (r *bitReader) ue() uint32 {
	n := 0
	for r.bit1() == 0 {
		if r.failed || n > 31 {
			r.failed = true
			return 0
		}
		n++
	}
	return (1<<n - 1) + r.bits(n)
}

// se reads a signed Exp-Golomb code.
func (r *bitReader) se() int32 {
	v := r.ue()
	if v&1 == 1 {
		return int32((v + 1) / 2)
	}
	return -int32(v / 2)
}

// matchCodec picks, among the codecs a subscriber negotiated, the one to
// forward a publisher's codec as: same MIME type, and for H.264 and VP9 the
// same packetization mode, profile and profile-id.
func matchCodec(want webrtc.RTPCodecCapability, have []webrtc.RTPCodecParameters) (webrtc.RTPCodecParameters, bool) {
	best, bestScore := webrtc.RTPCodecParameters{}, 0
	for _, c := range have {
		if !strings.EqualFold(c.MimeType, want.MimeType) {
			continue
		}
		score := 1
		switch {
		case c.SDPFmtpLine == want.SDPFmtpLine:
			score = 3
		case fmtpCompatible(want, c.RTPCodecCapability):
			score = 2
		}
		if score > bestScore {
			best, bestScore = c, score
		}
	}
	switch codecKindOf(want.MimeType) {
	case codecH264, codecVP9:
		return best, bestScore >= 2
	}
	return best, bestScore >= 1
}

func fmtpCompatible(a, b webrtc.RTPCodecCapability) bool {
	switch codecKindOf(a.MimeType) {
	case codecH264:
		pa, pb := fmtpValue(a.SDPFmtpLine, "profile-level-id"), fmtpValue(b.SDPFmtpLine, "profile-level-id")
		if len(pa) < 2 || len(pb) < 2 || !strings.EqualFold(pa[:2], pb[:2]) {
			return false
		}
		ma, mb := fmtpValue(a.SDPFmtpLine, "packetization-mode"), fmtpValue(b.SDPFmtpLine, "packetization-mode")
		if ma == "" {
			ma = "0"
		}
		if mb == "" {
			mb = "0"
		}
		return ma == mb
	case codecVP9:
		pa, pb := fmtpValue(a.SDPFmtpLine, "profile-id"), fmtpValue(b.SDPFmtpLine, "profile-id")
		if pa == "" {
			pa = "0"
		}
		if pb == "" {
			pb = "0"
		}
		return pa == pb
	}
	return true
}

func fmtpValue(fmtp, key string) string {
	for _, kv := range strings.Split(fmtp, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		if strings.EqualFold(k, key) {
			return v
		}
	}
	return ""
}

package sfu

import (
	"encoding/binary"
	"testing"

	"github.com/pion/webrtc/v4"
)

func TestVP8Keyframe(t *testing.T) {
	for _, c := range []struct {
		name    string
		payload []byte
		key     bool
		width   int
	}{
		{"keyframe with picture id", vp8TestPayload(true, 1280, 77, 10, 0), true, 1280},
		{"inter frame", vp8TestPayload(false, 0, 78, 10, 0), false, 0},
		{"no extension", []byte{0x10, 0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01}, true, 640},
		{"not the first partition", []byte{0x11, 0x10, 0x02, 0x00}, false, 0},
		{"not a start", []byte{0x00, 0x10, 0x02, 0x00}, false, 0},
		{"truncated descriptor", []byte{0x90}, false, 0},
		{"truncated picture id", []byte{0x90, 0x80}, false, 0},
		{"keyframe without full header", []byte{0x10, 0x10}, true, 0},
		{"empty", nil, false, 0},
	} {
		key, width := vp8Keyframe(c.payload)
		if key != c.key || width != c.width {
			t.Errorf("%s: (%v, %d), want (%v, %d)", c.name, key, width, c.key, c.width)
		}
	}
}

func TestVP9Keyframe(t *testing.T) {
	// I=1 (15-bit picture id), B=1, V=1 with one spatial layer of 960x540.
	ss := []byte{0x80 | 0x08 | 0x02, 0x80, 0x01, 0x10, 0, 0, 0, 0}
	binary.BigEndian.PutUint16(ss[4:], 960)
	binary.BigEndian.PutUint16(ss[6:], 540)
	for _, c := range []struct {
		name    string
		payload []byte
		key     bool
		width   int
	}{
		{"keyframe with scalability structure", ss, true, 960},
		{"inter picture", []byte{0x80 | 0x40 | 0x08, 0x05}, false, 0},
		{"keyframe, not a frame start", []byte{0x80, 0x05}, false, 0},
		{"flexible with references", []byte{0x50 | 0x08, 0x03, 0x02}, false, 0},
		{"layer 1 of a keyframe", []byte{0x20 | 0x08, 0x02, 0x00}, false, 0},
		{"truncated", []byte{0x80}, false, 0},
	} {
		key, width := vp9Keyframe(c.payload)
		if key != c.key || width != c.width {
			t.Errorf("%s: (%v, %d), want (%v, %d)", c.name, key, width, c.key, c.width)
		}
	}
}

// bitWriter writes an H.264 RBSP (without emulation prevention).
type bitWriter struct {
	b   []byte
	bit int
}

func (w *bitWriter) put(v uint32, n int) {
	for i := n - 1; i >= 0; i-- {
		if w.bit%8 == 0 {
			w.b = append(w.b, 0)
		}
		if v>>i&1 == 1 {
			w.b[len(w.b)-1] |= 0x80 >> (w.bit % 8)
		}
		w.bit++
	}
}

func (w *bitWriter) ue(v uint32) {
	v++
	n := 0
	for x := v; x > 1; x >>= 1 {
		n++
	}
	w.put(0, n)
	w.put(v, n+1)
}

// sps writes a sequence parameter set of widthMbs macroblocks, cropped.
func sps(profile uint32, widthMbs, cropRight uint32) []byte {
	w := &bitWriter{}
	w.put(0x67, 8) // NAL header: SPS
	w.put(profile, 8)
	w.put(0, 8)  // constraints
	w.put(31, 8) // level
	w.ue(0)      // sps id
	if profile == 100 {
		w.ue(1)     // chroma_format_idc
		w.ue(0)     // bit depth luma
		w.ue(0)     // bit depth chroma
		w.put(0, 1) // qpprime
		w.put(1, 1) // scaling matrix present
		for i := 0; i < 8; i++ {
			if i == 0 {
				w.put(1, 1) // list 0 present: 16 deltas of 0 (flat)
				for j := 0; j < 16; j++ {
					w.ue(0) // se(0) == ue(0)
				}
			} else {
				w.put(0, 1)
			}
		}
	}
	w.ue(0)     // log2_max_frame_num_minus4
	w.ue(0)     // pic_order_cnt_type
	w.ue(0)     // log2_max_pic_order_cnt_lsb_minus4
	w.ue(1)     // max_num_ref_frames
	w.put(0, 1) // gaps
	w.ue(widthMbs - 1)
	w.ue(22)    // height in map units - 1
	w.put(1, 1) // frame_mbs_only
	w.put(1, 1) // direct_8x8
	if cropRight > 0 {
		w.put(1, 1)
		w.ue(0)
		w.ue(cropRight)
		w.ue(0)
		w.ue(4)
	} else {
		w.put(0, 1)
	}
	w.put(1, 1) // vui absent... rbsp stop bit
	return w.b
}

// The picture id and TL0PICIDX fields of VP8 and VP9 payload descriptors.
func TestPictureIDs(t *testing.T) {
	for _, c := range []struct {
		name    string
		codec   codecKind
		payload []byte
		pic     int
		long    bool
		tl0     int
	}{
		{"VP8 15-bit id", codecVP8, vp8TestPayload(false, 0, 300, 4, 0), 2, true, -1},
		{"VP8 7-bit id, TL0PICIDX, TID", codecVP8, []byte{0x90, 0xe0, 0x05, 0x09, 0x40, 0x11}, 2, false, 3},
		{"VP8 15-bit id and TL0PICIDX", codecVP8, []byte{0x90, 0xc0, 0x81, 0x02, 0x09, 0x11}, 2, true, 4},
		{"VP8 TL0PICIDX alone", codecVP8, []byte{0x90, 0x40, 0x09, 0x11}, -1, false, 2},
		{"VP8 without extension", codecVP8, []byte{0x10, 0x10, 0x02}, -1, false, -1},
		{"VP8 truncated id", codecVP8, []byte{0x90, 0x80, 0x81}, -1, false, -1},
		{"VP8 truncated TL0PICIDX", codecVP8, []byte{0x90, 0xc0, 0x81, 0x02}, -1, false, -1},
		{"VP9 non-flexible", codecVP9, []byte{0xa8, 0x81, 0x02, 0x00, 0x09, 0x00}, 1, true, 4},
		{"VP9 flexible", codecVP9, []byte{0xb8, 0x05, 0x00, 0x00}, 1, false, -1},
		{"VP9 without layer indices", codecVP9, []byte{0x88, 0x81, 0x02, 0x00}, 1, true, -1},
		{"VP9 truncated", codecVP9, []byte{0xa8, 0x81, 0x02, 0x00}, -1, false, -1},
		{"H.264", codecH264, []byte{0x90, 0xc0, 0x81, 0x02, 0x09}, -1, false, -1},
	} {
		pic, long, tl0 := pictureIDs(c.codec, c.payload)
		if pic != c.pic || long != c.long || tl0 != c.tl0 {
			t.Errorf("%s: (%d, %v, %d), want (%d, %v, %d)", c.name, pic, long, tl0, c.pic, c.long, c.tl0)
		}
	}
	if id := readPictureID([]byte{0x90, 0x80, 0x81, 0x02}, 2, true); id != 258 {
		t.Errorf("15-bit picture id %d, want 258", id)
	}
	if !newerPictureID(1, 0x7ffe, 0x7fff) || newerPictureID(0x7ffe, 1, 0x7fff) || !newerPictureID(0, 0x7f, 0x7f) {
		t.Error("picture ids do not wrap")
	}
}

func TestH264Keyframe(t *testing.T) {
	base := sps(66, 40, 0)  // 640
	high := sps(100, 86, 5) // 1376 - 2*5 = 1366
	stap := []byte{24}
	for _, nal := range [][]byte{base, {0x68, 0xce, 0x38, 0x80}, {0x65, 0x88}} {
		stap = binary.BigEndian.AppendUint16(stap, uint16(len(nal)))
		stap = append(stap, nal...)
	}
	for _, c := range []struct {
		name    string
		payload []byte
		key     bool
		width   int
	}{
		{"SPS", base, true, 640},
		{"high profile SPS with cropping", high, true, 1366},
		{"IDR", []byte{0x65, 0x88, 0x84}, true, 0},
		{"non-IDR slice", []byte{0x41, 0x9a}, false, 0},
		{"STAP-A with SPS, PPS, IDR", stap, true, 640},
		{"FU-A start of IDR", []byte{0x7c, 0x85, 0x88}, true, 0},
		{"FU-A middle of IDR", []byte{0x7c, 0x05, 0x88}, false, 0},
		{"FU-A of a P slice", []byte{0x7c, 0x81, 0x9a}, false, 0},
		{"truncated STAP-A", []byte{24, 0x00, 0x40, 0x67}, false, 0},
		{"truncated SPS", []byte{0x67, 0x42}, true, 0},
	} {
		key, width := h264Keyframe(c.payload)
		if key != c.key || width != c.width {
			t.Errorf("%s: (%v, %d), want (%v, %d)", c.name, key, width, c.key, c.width)
		}
	}
}

func TestMatchCodec(t *testing.T) {
	h264 := func(fmtp string, pt webrtc.PayloadType) webrtc.RTPCodecParameters {
		return webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: fmtp}, PayloadType: pt}
	}
	have := []webrtc.RTPCodecParameters{
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, PayloadType: 96},
		h264("level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f", 100),
		h264("level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f", 102),
	}
	want := webrtc.RTPCodecCapability{MimeType: "video/h264", SDPFmtpLine: "packetization-mode=1;profile-level-id=42e01f"}
	if c, ok := matchCodec(want, have); !ok || c.PayloadType != 102 {
		t.Errorf("H.264 mode 1: %v %v", c.PayloadType, ok)
	}
	if _, ok := matchCodec(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP9}, have); ok {
		t.Errorf("VP9 matched a list without VP9")
	}
	if c, ok := matchCodec(webrtc.RTPCodecCapability{MimeType: "video/vp8"}, have); !ok || c.PayloadType != 96 {
		t.Errorf("VP8: %v %v", c.PayloadType, ok)
	}
	if _, ok := matchCodec(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, SDPFmtpLine: "packetization-mode=1;profile-level-id=640c1f"}, have); ok {
		t.Errorf("High profile matched baseline")
	}
}

func TestPacketCache(t *testing.T) {
	c := newPacketCache(4)
	dst := make([]byte, maxPacketSize)
	for seq := uint16(65530); seq != 4; seq++ {
		c.store(seq, []byte{byte(seq)})
	}
	for seq, want := range map[uint16]int{0: 1, 3: 1, 65535: 0, 65532: 0, 4: 0} {
		if n := c.get(seq, dst); n != want || (n == 1 && dst[0] != byte(seq)) {
			t.Errorf("seq %d: %d bytes", seq, n)
		}
	}
	c.store(7, make([]byte, maxPacketSize+1)) // too big: not cached
	if n := c.get(7, dst); n != 0 {
		t.Errorf("an oversized packet was cached")
	}
}

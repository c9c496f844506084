package sfu

// Picture ids across layer switches.
//
// Every simulcast layer numbers its frames on its own (VP8 and VP9 picture
// id and TL0PICIDX, in the payload descriptor), and a receiver keys frames
// and their references by these numbers. Forwarded unchanged, the ids jump
// at a switch to those of the new layer, which are often ones the
// subscriber has just had from the old layer (Chrome often gives a frame
// about the same picture id on every layer) or older. Chrome was seen (e2e
// TestMeeting) not to decode the new layer's keyframe at all after such a
// jump (keyFramesDecoded stayed put) and to go on showing frames of the
// old layer's size for seconds while the SFU forwarded the new layer.
//
// So a subscription rewrites the ids as it rewrites sequence numbers: each
// epoch (downtrack.go) adds offsets that make the new layer's keyframe
// follow the newest picture id and TL0PICIDX sent, as the next keyframe of
// one stream would, and a retransmission gets the offsets of the epoch it
// was first sent in. Offsets are zero until the first switch, and a
// payload is copied (into the subscription's own buffer: the incoming one
// is shared) only when an id changes: after a switch, every packet.

// frameIDs is a subscription's picture id state. downTrack.mu guards it.
type frameIDs struct {
	idState
	// buf holds the payload being forwarded with its ids rewritten; made
	// at the first rewrite (audio and subscriptions that never switch
	// layers need none).
	buf *[maxPacketSize]byte
}

// idState is what a subscription has sent: what a later subscription on
// the same sender continues (downTrack.resume).
type idState struct {
	picSent bool   // lastPic holds a picture id sent
	tl0Sent bool   // lastTL0 holds a TL0PICIDX sent
	lastPic uint16 // the newest picture id sent
	picMask uint16 // its width: 0x7fff, or 0x7f for the 7-bit form
	lastTL0 uint8  // the newest TL0PICIDX sent
}

func (f *frameIDs) state() idState     { return f.idState }
func (f *frameIDs) setState(s idState) { f.idState = s }

// offsets are the picture id and TL0PICIDX offsets of an epoch that starts
// with payload (a keyframe): its ids become the ones after the newest sent.
func (f *frameIDs) offsets(c codecKind, payload []byte) (picOff uint16, tl0Off uint8) {
	pic, long, tl0 := pictureIDs(c, payload)
	if pic >= 0 && f.picSent {
		picOff = (f.lastPic + 1 - readPictureID(payload, pic, long)) & 0x7fff
	}
	if tl0 >= 0 && f.tl0Sent {
		tl0Off = f.lastTL0 + 1 - payload[tl0]
	}
	return picOff, tl0Off
}

// rewriteIDs returns payload with the ids of epoch e, copied into the
// subscription's buffer when they change. sent: payload goes out for the
// first time (not a retransmission), so its ids count as sent.
// downTrack.mu is held.
func (d *downTrack) rewriteIDs(payload []byte, e *epoch, sent bool) []byte {
	c := d.track.ckind
	if c != codecVP8 && c != codecVP9 {
		return payload
	}
	f := &d.ids
	pic, long, tl0 := pictureIDs(c, payload)
	var inPic, outPic uint16
	var inTL0, outTL0 uint8
	if pic >= 0 {
		mask := uint16(0x7f)
		if long {
			mask = 0x7fff
		}
		inPic = readPictureID(payload, pic, long)
		outPic = (inPic + e.picOff) & mask
		if sent && (!f.picSent || f.picMask != mask || newerPictureID(outPic, f.lastPic, mask)) {
			f.picSent, f.lastPic, f.picMask = true, outPic, mask
		}
	}
	if tl0 >= 0 {
		inTL0 = payload[tl0]
		outTL0 = inTL0 + e.tl0Off
		if sent && (!f.tl0Sent || int8(outTL0-f.lastTL0) > 0) {
			f.tl0Sent, f.lastTL0 = true, outTL0
		}
	}
	if outPic == inPic && outTL0 == inTL0 || len(payload) > maxPacketSize {
		return payload
	}
	// The payload may be shared with other subscriptions (fanout.go), or
	// be the reader's buffer: the rewrite goes into our own copy.
	if f.buf == nil {
		f.buf = new([maxPacketSize]byte)
	}
	b := f.buf[:copy(f.buf[:], payload)]
	if pic >= 0 {
		if long {
			b[pic] = 0x80 | byte(outPic>>8)&0x7f
			b[pic+1] = byte(outPic)
		} else {
			b[pic] = byte(outPic) & 0x7f
		}
	}
	if tl0 >= 0 {
		b[tl0] = outTL0
	}
	return b
}

// readPictureID reads the picture id at p[at] (pictureIDs).
func readPictureID(p []byte, at int, long bool) uint16 {
	if long {
		return uint16(p[at]&0x7f)<<8 | uint16(p[at+1])
	}
	return uint16(p[at] & 0x7f)
}

// newerPictureID: a follows b, modulo the width of mask.
func newerPictureID(a, b, mask uint16) bool {
	d := (a - b) & mask
	return d != 0 && d <= mask/2
}

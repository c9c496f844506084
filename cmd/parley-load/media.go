package main

import (
	"encoding/binary"
	"time"
)

// Synthetic media. Every RTP payload ends with an 8-byte big-endian send
// time (unix ns) so receivers can measure one-way latency on this machine.
const tsLen = 8

const (
	vp8Bitrate      = 1_500_000 // bit/s
	vp8FPS          = 30
	vp8KeyEvery     = 3 * time.Second
	maxPayload      = 1200 // bytes of RTP payload, at most
	opusPerSecond   = 50
	opusPayloadSize = 80 // ≈ 32 kbit/s
	vp8ClockRate    = 90000
	opusClockRate   = 48000
)

// vp8FrameBytes is the size of every synthetic frame (key or delta): the
// bit rate spread over the frames.
const vp8FrameBytes = vp8Bitrate / 8 / vp8FPS // 6250

// vp8Packetizer splits synthetic VP8 frames into RTP payloads.
type vp8Packetizer struct {
	frame []byte
	out   [][]byte // reused payload buffers
}

// frameHeader writes a VP8 frame header (RFC 6386 §9.1) at the start of
// b: the 3-byte frame tag (bit 0 clear for a keyframe, version 0,
// show_frame set, first partition size), and for a keyframe the start code
// 9d 01 2a and 640×480.
func frameHeader(b []byte, key bool) int {
	const firstPart = 100
	tag := uint32(firstPart)<<5 | 1<<4 // show_frame
	if !key {
		tag |= 1 // inter frame
	}
	b[0], b[1], b[2] = byte(tag), byte(tag>>8), byte(tag>>16)
	if !key {
		return 3
	}
	copy(b[3:], []byte{0x9d, 0x01, 0x2a})
	binary.LittleEndian.PutUint16(b[6:], 640)
	binary.LittleEndian.PutUint16(b[8:], 480)
	return 10
}

// packetize returns the RTP payloads of one frame of frameBytes (each
// payload: a 1-byte VP8 payload descriptor, S set on the first, PID 0;
// frame data; then the send time). The last payload carries the marker.
// The returned slices are valid until the next call.
func (p *vp8Packetizer) packetize(key bool, frameBytes int, now time.Time) [][]byte {
	per := maxPayload - 1 - tsLen // frame bytes per packet
	n := (frameBytes + per - 1) / per
	if cap(p.frame) < frameBytes {
		p.frame = make([]byte, frameBytes)
	}
	frame := p.frame[:frameBytes]
	clear(frame)
	frameHeader(frame, key)
	for len(p.out) < n {
		p.out = append(p.out, make([]byte, 0, maxPayload))
	}
	ns := uint64(now.UnixNano())
	for i := 0; i < n; i++ {
		chunk := frame[i*per : min((i+1)*per, frameBytes)]
		b := p.out[i][:0]
		desc := byte(0)
		if i == 0 {
			desc = 0x10 // S: start of a VP8 partition
		}
		b = append(b, desc)
		b = append(b, chunk...)
		b = binary.BigEndian.AppendUint64(b, ns)
		p.out[i] = b
	}
	return p.out[:n]
}

// isVP8Keyframe reports whether an RTP payload starts a VP8 keyframe.
func isVP8Keyframe(payload []byte) bool {
	if len(payload) < 1 {
		return false
	}
	d := payload[0]
	i := 1
	if d&0x80 != 0 { // X
		if len(payload) < 2 {
			return false
		}
		x := payload[1]
		i = 2
		if x&0x80 != 0 { // I
			i++
			if len(payload) > 2 && payload[2]&0x80 != 0 {
				i++
			}
		}
		if x&0x40 != 0 { // L
			i++
		}
		if x&0x30 != 0 { // T or K
			i++
		}
	}
	if d&0x10 == 0 || d&0x07 != 0 || len(payload) < i+10 {
		return false
	}
	f := payload[i:]
	return f[0]&1 == 0 && f[3] == 0x9d && f[4] == 0x01 && f[5] == 0x2a
}

// rtpPayload returns the payload of a raw RTP packet (after CSRCs and the
// header extension, before padding) without allocating.
func rtpPayload(b []byte) ([]byte, bool) {
	if len(b) < 12 || b[0]>>6 != 2 {
		return nil, false
	}
	off := 12 + 4*int(b[0]&0x0f)
	if b[0]&0x10 != 0 {
		if len(b) < off+4 {
			return nil, false
		}
		off += 4 + 4*int(binary.BigEndian.Uint16(b[off+2:]))
	}
	end := len(b)
	if b[0]&0x20 != 0 && end > 0 {
		end -= int(b[end-1])
	}
	if off > end {
		return nil, false
	}
	return b[off:end], true
}

// sendTime reads the trailing send time of a payload.
func sendTime(payload []byte) (int64, bool) {
	if len(payload) < tsLen {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(payload[len(payload)-tsLen:])), true
}

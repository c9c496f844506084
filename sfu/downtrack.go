package sfu

import (
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// downTrack forwards one published track to one subscriber. It is the
// webrtc.TrackLocal added to the subscriber's PeerConnection: Pion binds it
// when a negotiation brings it up and gives us the writer, SSRC and payload
// type to rewrite packets with. It rewrites SSRC, sequence numbers,
// timestamps and VP8/VP9 picture ids so that the subscriber sees one
// continuous stream across simulcast layer switches, serves the
// subscriber's NACKs from the track's packet caches, and turns its PLI/FIR
// into throttled keyframe requests.
type downTrack struct {
	track    *publishedTrack
	sub      *Participant // nil for a tap's
	tap      *Tap         // set for a tap's (tap.go)
	streamID string

	maxWidth atomic.Int32 // RequestLayer; 0: no limit
	target   atomic.Int32 // layer wanted; switched to at its next keyframe
	curLayer atomic.Int32 // mirror of current for readers without mu

	packets     atomic.Uint64
	bytes       atomic.Uint64
	writeErrors atomic.Uint64
	nacks       atomic.Uint64 // sequence numbers asked for
	resent      atomic.Uint64 // ... and served from a cache
	keyRequests atomic.Uint64 // PLI/FIR received
	fracLost    atomic.Uint32 // last receiver report, fraction lost × 256
	cumLost     atomic.Uint32 // last receiver report, cumulative lost
	remb        atomic.Uint64 // last REMB estimate, bit/s
	bw          bwCap         // bandwidth cap on the layer choice (bwe.go)

	sender *webrtc.RTPSender // set once by the subscriber, under its mu

	// mu serialises writes (forwarded packets and retransmissions) and
	// guards the rewriting state. Only this downtrack's writers contend.
	mu        sync.Mutex
	writer    webrtc.TrackLocalWriter // nil: not bound, or no common codec
	held      bool                    // see hold
	ssrc      uint32
	pt        uint8
	current   int    // layer being forwarded, -1: none yet
	started   bool   // lastSeq, lastTS and lastWrite hold a packet sent on this SSRC
	resumed   bool   // ... by the slot's previous subscription (resume)
	lastSeq   uint16 // highest sequence number sent
	lastTS    uint32 // its timestamp
	lastWrite int64  // nanotime of that packet
	epochs    [4]epoch
	ei        int // newest epoch
	nepochs   int
	tccID     uint8 // negotiated id of the transport-cc header extension; 0: none
	tccBuf    [2]byte
	hdr       rtp.Header // outgoing header, reused
	ext       [1]rtp.Extension
	rtxHdr    rtp.Header // header of a retransmitted packet, reused
	rtxExt    [16]rtp.Extension
	rtxBuf    [maxPacketSize]byte
	ids       frameIDs // picture id rewriting (frameids.go)
}

// epoch is one stretch of forwarding from one layer: outgoing sequence
// numbers from outStart on are incoming ones plus seqOff. Four are kept so
// that NACKs shortly after a layer switch still find their packets.
type epoch struct {
	layer    int
	outStart uint16
	seqOff   uint16
	tsOff    uint32
	picOff   uint16 // added to picture ids (modulo their width)
	tl0Off   uint8  // added to TL0PICIDX
	inLow    uint16 // incoming packets before this are late: dropped
	inHigh   uint16
}

func newDownTrack(t *publishedTrack, sub *Participant) *downTrack {
	d := &downTrack{track: t, sub: sub, streamID: t.owner.streamID, current: -1}
	d.curLayer.Store(-1)
	d.rtxHdr.Extensions = d.rtxExt[:0]
	return d
}

// ID is the published track's id: the subscriber's SDP carries
// a=msid:<publisher stream id> <track id>.
func (d *downTrack) ID() string { return d.track.info.ID }

// RID is empty: a subscriber receives one layer.
func (d *downTrack) RID() string { return "" }

// StreamID groups a publisher's tracks (for lip sync in the browser).
func (d *downTrack) StreamID() string { return d.streamID }

// Kind is audio or video.
func (d *downTrack) Kind() webrtc.RTPCodecType { return d.track.kind }

// Bind is called by Pion when the subscriber's negotiation completes.
func (d *downTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	codecs := ctx.CodecParameters()
	if len(codecs) == 0 {
		return webrtc.RTPCodecParameters{}, errors.New("sfu: no codec negotiated")
	}
	codec, ok := matchCodec(d.track.codec, codecs)
	d.mu.Lock()
	d.ssrc = uint32(ctx.SSRC())
	d.tccID = 0
	for _, e := range ctx.HeaderExtensions() {
		if e.URI == sdp.TransportCCURI && e.ID > 0 && e.ID < 15 {
			d.tccID = uint8(e.ID)
		}
	}
	d.current, d.nepochs = -1, 0
	d.started = d.resumed
	d.curLayer.Store(-1)
	if ok {
		d.writer = ctx.WriteStream()
		d.pt = uint8(codec.PayloadType)
	} else {
		// Failing Bind would fail the whole negotiation: bind to something
		// and forward nothing.
		codec = codecs[0]
		d.writer = nil
	}
	d.mu.Unlock()
	if !ok {
		d.sub.log.Warn("subscriber lacks the publisher's codec; track not forwarded",
			"track", d.track.info.ID, "codec", d.track.codec.MimeType)
		return codec, nil
	}
	now := nanotime()
	if li := d.track.selectLayer(int(d.maxWidth.Load()), d.bw.current(), now); li >= 0 {
		d.target.Store(int32(li))
	}
	d.track.wantKeyframe(int(d.target.Load()), now) // a new subscriber starts on a keyframe
	return codec, nil
}

// resume makes d continue the numbering of prev, the previous
// subscription on the same sender (and SSRC): its first packet follows
// prev's last in sequence number and, by the time passed, in timestamp, so
// that the subscriber sees one stream. Called before d is bound.
func (d *downTrack) resume(prev *downTrack) {
	if prev == nil {
		return
	}
	prev.mu.Lock()
	started, seq, ts, at := prev.started, prev.lastSeq, prev.lastTS, prev.lastWrite
	prevClock := prev.track.clock
	ids := prev.ids.state()
	prev.mu.Unlock()
	if !started || prevClock != d.track.clock {
		return // a new clock rate: nothing to continue
	}
	d.mu.Lock()
	d.resumed, d.lastSeq, d.lastTS, d.lastWrite = true, seq, ts, at
	if prev.track.ckind == d.track.ckind {
		d.ids.setState(ids) // the same decoder goes on: so do its picture ids
	}
	d.mu.Unlock()
}

// hold stops forwarding until release: the client does not know this
// stream's SSRC yet (glare.go), and early packets on an undeclared SSRC
// confuse some clients.
func (d *downTrack) hold() {
	d.mu.Lock()
	d.held = true
	d.mu.Unlock()
}

// release ends a hold: forwarding starts again at the next keyframe.
func (d *downTrack) release() {
	d.mu.Lock()
	d.held = false
	d.current = -1
	d.curLayer.Store(-1)
	d.mu.Unlock()
	d.track.wantKeyframe(int(d.target.Load()), nanotime())
}

// Unbind is called by Pion when the sender stops.
func (d *downTrack) Unbind(webrtc.TrackLocalContext) error {
	d.mu.Lock()
	d.writer = nil
	d.mu.Unlock()
	return nil
}

// forward writes one packet of layer l if this subscriber is on that layer,
// or switches to l when l is the target and the packet starts a keyframe.
// Hot path: no allocation.
func (d *downTrack) forward(l *layer, h *rtp.Header, payload []byte, pad byte, key bool, now int64) {
	d.mu.Lock()
	if d.writer == nil || d.held {
		d.mu.Unlock()
		return
	}
	if l.index != d.current {
		if int32(l.index) != d.target.Load() {
			d.mu.Unlock()
			return
		}
		if !key {
			d.mu.Unlock()
			// Waiting for a keyframe on the target: (re)ask, throttled.
			d.track.wantKeyframe(l.index, now)
			return
		}
		d.switchTo(l, h, payload, now)
	}
	e := &d.epochs[d.ei]
	seq := h.SequenceNumber
	if int16(seq-e.inLow) < 0 {
		d.mu.Unlock() // from before the switch to this layer
		return
	}
	if int16(seq-e.inHigh) > 0 {
		e.inHigh = seq
		if e.inHigh-e.inLow > 0x4000 {
			e.inLow = e.inHigh - 0x4000
		}
	}
	out, ts := seq+e.seqOff, h.Timestamp+e.tsOff
	if int16(out-d.lastSeq) > 0 {
		d.lastSeq, d.lastTS, d.lastWrite = out, ts, now
	}
	payload = d.rewriteIDs(payload, e, true)
	d.write(h, out, ts, payload, pad, now)
	d.mu.Unlock()
}

// switchTo starts a new epoch on layer l at packet h (a keyframe): the
// outgoing sequence number and picture id continue from the last ones sent
// and the timestamp advances by the wall-clock time since then.
func (d *downTrack) switchTo(l *layer, h *rtp.Header, payload []byte, now int64) {
	var seqOff uint16
	var tsOff uint32
	if d.started {
		seqOff = d.lastSeq + 1 - h.SequenceNumber
		elapsed := min(max(now-d.lastWrite, 0), int64(time.Hour))
		delta := uint32(uint64(elapsed) * uint64(d.track.clock) / uint64(time.Second))
		if delta == 0 {
			delta = 1
		}
		tsOff = d.lastTS + delta - h.Timestamp
	} else {
		d.started = true
		d.lastSeq, d.lastTS, d.lastWrite = h.SequenceNumber-1, h.Timestamp, now
	}
	d.ei = (d.ei + 1) % len(d.epochs)
	d.nepochs = min(d.nepochs+1, len(d.epochs))
	picOff, tl0Off := d.ids.offsets(d.track.ckind, payload)
	d.epochs[d.ei] = epoch{
		layer: l.index, outStart: h.SequenceNumber + seqOff, seqOff: seqOff, tsOff: tsOff,
		picOff: picOff, tl0Off: tl0Off,
		inLow: h.SequenceNumber, inHigh: h.SequenceNumber,
	}
	d.current = l.index
	d.curLayer.Store(int32(l.index))
}

// write sends one packet with the rewritten header, sent at now. d.mu is
// held.
func (d *downTrack) write(h *rtp.Header, seq uint16, ts uint32, payload []byte, pad byte, now int64) {
	o := &d.hdr
	o.Version = 2
	o.Padding, o.PaddingSize = pad > 0, pad
	o.Marker = h.Marker
	o.PayloadType = d.pt
	o.SequenceNumber, o.Timestamp, o.SSRC = seq, ts, d.ssrc
	o.CSRC = h.CSRC
	// The publisher's header extensions carry its own ids (mid, rid,
	// transport-cc...): dropped. Ours: the transport-wide sequence number
	// toward this subscriber (twcc.go).
	o.Extension, o.ExtensionProfile, o.Extensions = false, 0, d.ext[:0]
	if d.tccID != 0 && d.sub != nil {
		// Size on the wire: header with extension, payload, SRTP tag.
		n := d.sub.cong.sent(now, 12+4*len(o.CSRC)+8+len(payload)+int(pad)+16)
		d.tccBuf[0], d.tccBuf[1] = byte(n>>8), byte(n)
		_ = o.SetExtension(d.tccID, d.tccBuf[:]) // one-byte profile; d.ext has room: no allocation
	}
	if _, err := d.writer.WriteRTP(o, payload); err != nil {
		d.writeErrors.Add(1)
		return
	}
	d.packets.Add(1)
	d.bytes.Add(uint64(len(payload)))
}

// resend serves a NACKed sequence number (as the subscriber numbers it)
// from the packet cache of the layer it was forwarded from.
func (d *downTrack) resend(seq uint16) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.writer == nil || d.held || !d.started || int16(d.lastSeq-seq) < 0 {
		return false
	}
	for k := 0; k < d.nepochs; k++ {
		e := &d.epochs[(d.ei-k+len(d.epochs))%len(d.epochs)]
		if int16(seq-e.outStart) < 0 {
			continue
		}
		l := d.track.layerAt(e.layer)
		if l == nil {
			return false
		}
		n := l.cache.get(seq-e.seqOff, d.rtxBuf[:])
		if n == 0 {
			return false
		}
		d.rtxHdr.Extensions = d.rtxExt[:0]
		hlen, err := d.rtxHdr.Unmarshal(d.rtxBuf[:n])
		if err != nil {
			return false
		}
		payload, pad, ok := splitPadding(&d.rtxHdr, d.rtxBuf[hlen:n])
		if !ok {
			return false
		}
		payload = d.rewriteIDs(payload, e, false)
		d.write(&d.rtxHdr, seq, d.rtxHdr.Timestamp+e.tsOff, payload, pad, nanotime())
		return true
	}
	return false
}

// RTCP packet types and feedback formats (RFC 3550, 4585, 5104).
const (
	rtcpSR    = 200
	rtcpRR    = 201
	rtcpRTPFB = 205
	rtcpPSFB  = 206
	fmtNACK   = 1
	fmtTWCC   = 15
	fmtPLI    = 1
	fmtFIR    = 4
	fmtAFB    = 15
	// maxResendPerPacket bounds the retransmissions one RTCP packet causes.
	maxResendPerPacket = 64
)

// handleRTCP walks a compound RTCP packet without allocating: PLI and FIR
// become keyframe requests toward the publisher, NACKs are served from the
// cache, receiver reports and REMB feed the statistics.
func (d *downTrack) handleRTCP(b []byte) {
	d.mu.Lock()
	ssrc := d.ssrc
	d.mu.Unlock()
	resends := 0
	for len(b) >= 8 {
		if b[0]>>6 != 2 {
			return
		}
		count := int(b[0] & 0x1f)
		typ := b[1]
		size := (int(binary.BigEndian.Uint16(b[2:4])) + 1) * 4
		if size > len(b) {
			return
		}
		pkt := b[:size]
		b = b[size:]
		switch typ {
		case rtcpPSFB:
			if len(pkt) < 12 {
				continue
			}
			media := binary.BigEndian.Uint32(pkt[8:12])
			switch count {
			case fmtPLI:
				if media == ssrc {
					d.keyframeRequested()
				}
			case fmtFIR:
				for i := 12; i+8 <= len(pkt); i += 8 {
					if binary.BigEndian.Uint32(pkt[i:]) == ssrc {
						d.keyframeRequested()
						break
					}
				}
			case fmtAFB:
				if len(pkt) >= 20 && string(pkt[12:16]) == "REMB" {
					exp := pkt[17] >> 2
					mantissa := uint64(pkt[17]&3)<<16 | uint64(pkt[18])<<8 | uint64(pkt[19])
					if exp < 40 {
						d.remb.Store(mantissa << exp)
					}
				}
			}
		case rtcpRTPFB:
			if count == fmtTWCC && d.sub != nil {
				// Transport-wide feedback, whichever of the connection's
				// streams it names (every ~100 ms: parsing may allocate).
				var fb rtcp.TransportLayerCC
				if fb.Unmarshal(pkt) == nil {
					d.sub.cong.feedback(&fb, nanotime())
				}
				continue
			}
			if count != fmtNACK || len(pkt) < 16 || binary.BigEndian.Uint32(pkt[8:12]) != ssrc {
				continue
			}
			for i := 12; i+4 <= len(pkt); i += 4 {
				pid := binary.BigEndian.Uint16(pkt[i:])
				blp := binary.BigEndian.Uint16(pkt[i+2:])
				for bit := -1; bit < 16; bit++ {
					if bit >= 0 && blp&(1<<bit) == 0 {
						continue
					}
					if resends >= maxResendPerPacket {
						break
					}
					resends++
					d.nacks.Add(1)
					if d.resend(pid + uint16(bit+1)) {
						d.resent.Add(1)
					}
				}
			}
		case rtcpRR, rtcpSR:
			off := 8
			if typ == rtcpSR {
				off = 28
			}
			for i := 0; i < count && off+24 <= len(pkt); i, off = i+1, off+24 {
				if binary.BigEndian.Uint32(pkt[off:]) == ssrc {
					d.fracLost.Store(uint32(pkt[off+4]))
					d.cumLost.Store(uint32(pkt[off+5])<<16 | uint32(pkt[off+6])<<8 | uint32(pkt[off+7]))
				}
			}
		}
	}
}

// keyframeRequested forwards a subscriber's PLI/FIR to the publisher
// (throttled per layer by requestKeyframe).
func (d *downTrack) keyframeRequested() {
	d.keyRequests.Add(1)
	li := int(d.curLayer.Load())
	if li < 0 {
		li = int(d.target.Load())
	}
	d.track.requestKeyframe(li, nanotime())
}

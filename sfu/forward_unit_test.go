package sfu

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// Forwarding without Pion's transports: a published track whose layers are
// fed by hand, and downtracks bound to in-memory writers.

// testTCCID is the transport-cc extension id the fake negotiation gives.
const testTCCID = 3

var vp8Codec = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}

// memWriter is a webrtc.TrackLocalWriter that marshals what it is given
// (as SRTP would) and keeps count; record keeps copies for inspection.
type memWriter struct {
	mu      sync.Mutex
	buf     [maxPacketSize + 100]byte
	n       atomic.Int64
	record  bool
	packets []rtp.Packet
}

func (w *memWriter) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, err := rtp.MarshalPacketTo(w.buf[:], h, payload) //nolint:staticcheck // what srtp does
	if err != nil {
		return 0, err
	}
	w.n.Add(1)
	if w.record {
		var p rtp.Packet
		if err := p.Unmarshal(append([]byte(nil), w.buf[:n]...)); err != nil {
			return 0, err
		}
		w.packets = append(w.packets, p)
	}
	return n, nil
}

func (w *memWriter) Write(b []byte) (int, error) { return len(b), nil }

func (w *memWriter) got() []rtp.Packet {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]rtp.Packet(nil), w.packets...)
}

// bindCtx is the webrtc.TrackLocalContext Pion would pass to Bind.
type bindCtx struct {
	ssrc   webrtc.SSRC
	writer webrtc.TrackLocalWriter
}

func (c *bindCtx) CodecParameters() []webrtc.RTPCodecParameters {
	return []webrtc.RTPCodecParameters{{RTPCodecCapability: vp8Codec, PayloadType: 100}}
}
func (c *bindCtx) HeaderExtensions() []webrtc.RTPHeaderExtensionParameter {
	return []webrtc.RTPHeaderExtensionParameter{{URI: sdp.TransportCCURI, ID: testTCCID}}
}
func (c *bindCtx) SSRC() webrtc.SSRC                       { return c.ssrc }
func (c *bindCtx) SSRCRetransmission() webrtc.SSRC         { return 0 }
func (c *bindCtx) SSRCForwardErrorCorrection() webrtc.SSRC { return 0 }
func (c *bindCtx) WriteStream() webrtc.TrackLocalWriter    { return c.writer }
func (c *bindCtx) ID() string                              { return "ctx" }
func (c *bindCtx) RTCPReader() interceptor.RTCPReader      { return nil }

// fakeTrack is a VP8 track with n layers and a PLI counter.
func fakeTrack(n int) (*publishedTrack, *atomic.Int64) {
	plis := &atomic.Int64{}
	owner := &Participant{id: "pub", streamID: "pub", log: testLogger(), cong: newCongestion()}
	t := &publishedTrack{
		info:    TrackInfo{ID: "cam", Participant: "pub", Kind: "video", Source: "camera"},
		owner:   owner,
		kind:    webrtc.RTPCodecTypeVideo,
		codec:   vp8Codec,
		ckind:   codecVP8,
		clock:   90000,
		sendPLI: func(uint32) { plis.Add(1) },
	}
	ls := make([]*layer, n)
	for i := range ls {
		ls[i] = &layer{track: t, index: i, rid: fmt.Sprint("r", i), ssrc: uint32(1000 + i), pt: 96, cache: newPacketCache(videoCacheSize)}
	}
	t.layers.Store(&ls)
	return t, plis
}

func fakeSubscriber(t *publishedTrack, w *memWriter, ssrc uint32) *downTrack {
	sub := &Participant{id: "sub", log: testLogger(), cong: newCongestion()}
	d := newDownTrack(t, sub)
	if _, err := d.Bind(&bindCtx{ssrc: webrtc.SSRC(ssrc), writer: w}); err != nil {
		panic(err)
	}
	t.addDown(d)
	return d
}

// packet marshals an RTP packet carrying a VP8 frame of layer marker.
func packet(seq uint16, ts uint32, key bool, width int, marker byte) []byte {
	p := rtp.Packet{
		Header:  rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: ts, SSRC: 42},
		Payload: vp8TestPayload(key, width, seq, 900, marker),
	}
	b, err := p.Marshal()
	if err != nil {
		panic(err)
	}
	return b
}

// BenchmarkForward pushes packets through the forwarding path (parse,
// cache, keyframe check, rewrite, write) to N subscribers. The per-packet
// path must not allocate.
func BenchmarkForward(b *testing.B) {
	for _, n := range []int{1, 10, 50} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
			t, _ := fakeTrack(1)
			w := &memWriter{}
			for i := 0; i < n; i++ {
				fakeSubscriber(t, w, uint32(5000+i))
			}
			l := t.layerAt(0)
			pkt := packet(1, 0, true, 640, 1)
			l.ingest(pkt, nanotime()) // starts every subscriber on a keyframe
			pkt = packet(2, 0, false, 0, 1)
			b.SetBytes(int64(len(pkt)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				binary.BigEndian.PutUint16(pkt[2:], uint16(i+2))
				binary.BigEndian.PutUint32(pkt[4:], uint32(i)*3000)
				l.ingest(pkt, nanotime())
			}
			b.StopTimer()
			if got, want := w.n.Load(), int64(n)*int64(b.N+1); got != want {
				b.Fatalf("wrote %d packets, want %d", got, want)
			}
		})
	}
}

// The forwarding path allocates nothing per packet (AllocsPerRun is not
// meaningful under the race detector).
func TestForwardDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under -race")
	}
	tr, _ := fakeTrack(1)
	w := &memWriter{}
	for i := 0; i < 10; i++ {
		fakeSubscriber(tr, w, uint32(5000+i))
	}
	l := tr.layerAt(0)
	l.ingest(packet(1, 0, true, 640, 1), nanotime())
	pkt := packet(2, 0, false, 0, 1)
	seq := uint16(2)
	allocs := testing.AllocsPerRun(1000, func() {
		seq++
		binary.BigEndian.PutUint16(pkt[2:], seq)
		l.ingest(pkt, nanotime())
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per forwarded packet, want 0", allocs)
	}
	// NACK service allocates nothing either.
	d := (*tr.down.Load())[0]
	nack := rtcpNACK(d.ssrc, seq-5, 0b101)
	allocs = testing.AllocsPerRun(1000, func() { d.handleRTCP(nack) })
	if allocs != 0 {
		t.Errorf("%.1f allocations per NACK, want 0", allocs)
	}

	// Nor after a layer switch, when every packet's picture id is rewritten.
	tr2, _ := fakeTrack(2)
	d2 := fakeSubscriber(tr2, &memWriter{}, 6000)
	tr2.layerAt(0).ingest(packet(1, 0, true, 320, 1), nanotime())
	d2.target.Store(1)
	l1 := tr2.layerAt(1)
	l1.ingest(packet(5000, 0, true, 640, 2), nanotime())
	pkt = packet(5001, 0, false, 0, 2)
	seq = 5001
	allocs = testing.AllocsPerRun(1000, func() {
		seq++
		binary.BigEndian.PutUint16(pkt[2:], seq)
		l1.ingest(pkt, nanotime())
	})
	if allocs != 0 || d2.current != 1 || d2.epochs[d2.ei].picOff == 0 {
		t.Errorf("%.1f allocations per forwarded packet after a switch (layer %d, picture id offset %d), want 0",
			allocs, d2.current, d2.epochs[d2.ei].picOff)
	}
}

// rtcpNACK builds a generic NACK for ssrc: pid and the bitmask blp.
func rtcpNACK(ssrc uint32, pid, blp uint16) []byte {
	b := make([]byte, 16)
	b[0], b[1] = 0x80|fmtNACK, rtcpRTPFB
	binary.BigEndian.PutUint16(b[2:], 3)
	binary.BigEndian.PutUint32(b[8:], ssrc)
	binary.BigEndian.PutUint16(b[12:], pid)
	binary.BigEndian.PutUint16(b[14:], blp)
	return b
}

func rtcpPLI(ssrc uint32) []byte {
	b := make([]byte, 12)
	b[0], b[1] = 0x80|fmtPLI, rtcpPSFB
	binary.BigEndian.PutUint16(b[2:], 2)
	binary.BigEndian.PutUint32(b[8:], ssrc)
	return b
}

// Switching layers happens at a keyframe of the target, keeps one SSRC and
// consecutive sequence numbers; NACKs are served from the right layer's
// cache with the subscriber's numbering.
func TestDownTrackSwitchAndNACK(t *testing.T) {
	tr, plis := fakeTrack(2)
	w := &memWriter{record: true}
	d := fakeSubscriber(tr, w, 777)
	l0, l1 := tr.layerAt(0), tr.layerAt(1)
	now := nanotime()
	ms := int64(1e6)

	// Layer 0 starts with a keyframe: 10 packets.
	for i := 0; i < 10; i++ {
		l0.ingest(packet(uint16(100+i), uint32(9000+i*3000), i == 0, 320, 1), now+int64(i)*20*ms)
	}
	// Switch to layer 1: its interframes are not forwarded (and ask for a
	// keyframe), layer 0 continues until layer 1's keyframe.
	d.target.Store(1)
	before := plis.Load()
	l1.ingest(packet(5000, 70000, false, 0, 2), now+200*ms)
	if plis.Load() == before {
		t.Errorf("waiting for a keyframe on the target did not ask for one")
	}
	l0.ingest(packet(110, 9000+10*3000, false, 0, 1), now+200*ms)
	l1.ingest(packet(5001, 73000, true, 640, 2), now+220*ms)
	l0.ingest(packet(111, 9000+11*3000, false, 0, 1), now+220*ms) // old layer: dropped now
	l1.ingest(packet(5002, 76000, false, 0, 2), now+240*ms)
	l1.ingest(packet(5000, 70000, false, 0, 2), now+241*ms) // late, from before the switch

	got := w.got()
	if len(got) != 13 {
		t.Fatalf("forwarded %d packets, want 13", len(got))
	}
	for i, p := range got {
		if p.SSRC != 777 || p.PayloadType != 100 {
			t.Fatalf("packet %d: ssrc %d pt %d", i, p.SSRC, p.PayloadType)
		}
		if i > 0 && p.SequenceNumber != got[i-1].SequenceNumber+1 {
			t.Errorf("packet %d: seq %d after %d", i, p.SequenceNumber, got[i-1].SequenceNumber)
		}
		if i > 0 && int32(p.Timestamp-got[i-1].Timestamp) <= 0 {
			t.Errorf("packet %d: timestamp %d after %d", i, p.Timestamp, got[i-1].Timestamp)
		}
		wantLayer := byte(1)
		if i >= 11 {
			wantLayer = 2
		}
		if m := p.Payload[len(p.Payload)-1]; m != wantLayer {
			t.Errorf("packet %d from layer marker %d, want %d", i, m, wantLayer)
		}
	}
	if k, _ := vp8Keyframe(got[11].Payload); !k {
		t.Errorf("the first packet of the new layer is not a keyframe")
	}

	// NACK one packet from each epoch: 3 (layer 0) and 12 (layer 1).
	old, cur := got[3], got[12]
	d.handleRTCP(rtcpNACK(777, old.SequenceNumber, 0))
	d.handleRTCP(rtcpNACK(777, cur.SequenceNumber, 0))
	d.handleRTCP(rtcpNACK(999, old.SequenceNumber, 0))    // another SSRC: ignored
	d.handleRTCP(rtcpNACK(777, cur.SequenceNumber+50, 0)) // never sent
	re := w.got()[13:]
	if len(re) != 2 {
		t.Fatalf("%d retransmissions, want 2", len(re))
	}
	for i, want := range []rtp.Packet{old, cur} {
		if re[i].SequenceNumber != want.SequenceNumber || re[i].Timestamp != want.Timestamp ||
			string(re[i].Payload) != string(want.Payload) {
			t.Errorf("retransmission %d: seq %d ts %d, want seq %d ts %d", i, re[i].SequenceNumber, re[i].Timestamp, want.SequenceNumber, want.Timestamp)
		}
	}
	if d.nacks.Load() != 3 || d.resent.Load() != 2 {
		t.Errorf("nacks %d resent %d", d.nacks.Load(), d.resent.Load())
	}

	// A PLI from the subscriber reaches the publisher, throttled.
	before = plis.Load()
	for i := 0; i < 5; i++ {
		d.handleRTCP(rtcpPLI(777))
	}
	if n := plis.Load() - before; n > 1 {
		t.Errorf("5 PLIs in a row became %d keyframe requests", n)
	}
}

// vp8IDPacket marshals an RTP packet whose VP8 payload descriptor carries
// a 15-bit picture id and a TL0PICIDX; a keyframe is 160 pixels wide on
// layer marker 1, 320 on the others; marker ends the payload.
func vp8IDPacket(seq uint16, ts uint32, key bool, pic uint16, tl0 uint8, marker byte) []byte {
	payload := []byte{0x90, 0xc0, 0x80 | byte(pic>>8), byte(pic), tl0} // X, S; I, L
	if key {
		width := uint16(320)
		if marker == 1 {
			width = 160
		}
		payload = append(payload, 0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, byte(width), byte(width>>8), 0xf0, 0x00)
	} else {
		payload = append(payload, 0x11, 0x00, 0x00)
	}
	payload = append(payload, make([]byte, 200)...)
	p := rtp.Packet{
		Header:  rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: ts, SSRC: 42},
		Payload: append(payload, marker),
	}
	b, err := p.Marshal()
	if err != nil {
		panic(err)
	}
	return b
}

// vp8IDs reads the picture id and TL0PICIDX a forwarded packet carries.
func vp8IDs(t *testing.T, p rtp.Packet) (uint16, uint8) {
	t.Helper()
	pic, long, tl0 := pictureIDs(codecVP8, p.Payload)
	if pic < 0 || !long || tl0 < 0 {
		t.Fatalf("packet %d: no 15-bit picture id and TL0PICIDX in %x", p.SequenceNumber, p.Payload[:6])
	}
	return readPictureID(p.Payload, pic, long), p.Payload[tl0]
}

// After a layer switch the subscriber's picture ids and TL0PICIDX go on
// from the last ones sent, whatever the new layer numbers its frames (here,
// as Chrome does, the same frame has the same id on both layers, so the new
// layer's keyframe has an id the subscriber has already seen); a
// retransmission keeps the ids it was first sent with; the incoming packet,
// which other subscriptions share, is left as it was.
func TestDownTrackSwitchRewritesPictureIDs(t *testing.T) {
	tr, _ := fakeTrack(2)
	w := &memWriter{record: true}
	d := fakeSubscriber(tr, w, 777)
	wo := &memWriter{record: true}
	fakeSubscriber(tr, wo, 778).maxWidth.Store(160) // stays on layer 0
	l0, l1 := tr.layerAt(0), tr.layerAt(1)
	now := nanotime()
	ms := int64(1e6)

	// Frames 30000..30009 on layer 0 (picture ids wrap at 2^15 on the way);
	// TL0PICIDX 250.. (wraps at 2^8).
	frame := func(i int) (uint16, uint8) { return uint16(32760+i) & 0x7fff, uint8(250 + i) }
	for i := 0; i < 10; i++ {
		pic, tl0 := frame(i)
		l0.ingest(vp8IDPacket(uint16(100+i), uint32(9000+i*3000), i == 0, pic, tl0, 1), now+int64(i)*33*ms)
	}
	// Layer 1's keyframe is frame 9 again, then frames 10 and 11 (its own
	// TL0PICIDX space).
	d.target.Store(1)
	key := vp8IDPacket(5000, 70000, true, 32769&0x7fff, 7, 2)
	keyCopy := append([]byte(nil), key...)
	l1.ingest(key, now+300*ms)
	if string(key) != string(keyCopy) {
		t.Fatalf("forwarding rewrote the incoming packet")
	}
	l1.ingest(vp8IDPacket(5001, 73000, false, 32770&0x7fff, 8, 2), now+333*ms)
	l1.ingest(vp8IDPacket(5002, 76000, false, 32771&0x7fff, 9, 2), now+366*ms)

	got := w.got()
	if len(got) != 13 {
		t.Fatalf("forwarded %d packets, want 13", len(got))
	}
	for i, p := range got {
		pic, tl0 := vp8IDs(t, p)
		wantPic, wantTL0 := frame(i)
		if pic != wantPic || tl0 != wantTL0 {
			t.Errorf("packet %d (layer marker %d): picture id %d TL0PICIDX %d, want %d and %d",
				i, p.Payload[len(p.Payload)-1], pic, tl0, wantPic, wantTL0)
		}
	}
	if k, _ := vp8Keyframe(got[10].Payload); !k || got[10].Payload[len(got[10].Payload)-1] != 2 {
		t.Fatalf("packet 10 is not the new layer's keyframe")
	}
	// The subscription that stayed on layer 0 got the publisher's ids.
	if g := wo.got(); len(g) != 10 {
		t.Errorf("the other subscription got %d packets, want 10", len(g))
	} else {
		for i, p := range g {
			if pic, tl0 := vp8IDs(t, p); pic != uint16(32760+i)&0x7fff || tl0 != uint8(250+i) {
				t.Errorf("the other subscription's packet %d: picture id %d TL0PICIDX %d", i, pic, tl0)
			}
		}
	}
	// Retransmissions: one packet of each epoch, with the ids first sent.
	d.handleRTCP(rtcpNACK(777, got[4].SequenceNumber, 0))
	d.handleRTCP(rtcpNACK(777, got[11].SequenceNumber, 0))
	re := w.got()[13:]
	if len(re) != 2 {
		t.Fatalf("%d retransmissions, want 2", len(re))
	}
	for i, want := range []rtp.Packet{got[4], got[11]} {
		if string(re[i].Payload) != string(want.Payload) {
			t.Errorf("retransmission %d differs from what was sent", i)
		}
	}

	// A later subscription on the same sender (a reused transceiver)
	// continues the ids too.
	next := newDownTrack(tr, d.sub)
	next.resume(d)
	w2 := &memWriter{record: true}
	if _, err := next.Bind(&bindCtx{ssrc: 777, writer: w2}); err != nil {
		t.Fatal(err)
	}
	tr.removeDown(d)
	tr.addDown(next)
	next.target.Store(1)
	l1.ingest(vp8IDPacket(5003, 79000, true, 100, 200, 2), now+400*ms)
	if g := w2.got(); len(g) != 1 {
		t.Fatalf("the next subscription forwarded %d packets, want 1", len(g))
	} else if pic, tl0 := vp8IDs(t, g[0]); pic != 5 || tl0 != 7 {
		t.Errorf("the next subscription starts at picture id %d TL0PICIDX %d, want 5 and 7", pic, tl0)
	}
}

// The layer chosen for a width: widest that fits, else narrowest; by
// bitrate when widths are unknown; only active layers.
func TestSelectLayer(t *testing.T) {
	tr, _ := fakeTrack(3)
	now := nanotime()
	widths := []int32{1280, 320, 640} // rids in any order
	for i, w := range widths {
		l := tr.layerAt(i)
		l.width.Store(w)
		l.bitrate.Store(int64(w) * 1000)
		l.lastPacket.Store(now)
	}
	for _, c := range []struct{ max, want int }{{0, 0}, {320, 1}, {100, 1}, {639, 1}, {640, 2}, {1000, 2}, {1280, 0}, {4000, 0}} {
		if got := tr.selectLayer(c.max, 0, now); got != c.want {
			t.Errorf("max width %d: layer %d, want %d", c.max, got, c.want)
		}
	}
	// The top layer goes quiet: the middle one is the best left.
	tr.layerAt(0).lastPacket.Store(now - int64(3*layerActiveFor))
	if got := tr.selectLayer(0, 0, now); got != 2 {
		t.Errorf("with the top layer quiet: %d, want 2", got)
	}
	// Widths unknown: ranked by bitrate, assumed to halve from 1280.
	for i := 0; i < 3; i++ {
		tr.layerAt(i).width.Store(0)
		tr.layerAt(i).lastPacket.Store(now)
	}
	if got := tr.selectLayer(640, 0, now); got != 2 {
		t.Errorf("by bitrate, 640: %d, want 2", got)
	}
}

// A bitrate cap lowers the choice below what the width allows; a layer
// not measured yet fits any cap; the narrowest is the floor.
func TestSelectLayerUnderCap(t *testing.T) {
	tr, _ := fakeTrack(3)
	now := nanotime()
	for i, w := range []int32{1280, 320, 640} {
		l := tr.layerAt(i)
		l.width.Store(w)
		l.bitrate.Store(map[int32]int64{320: 150_000, 640: 500_000, 1280: 1_500_000}[w])
		l.lastPacket.Store(now)
	}
	for _, c := range []struct {
		max  int
		cap  int64
		want int
	}{
		{0, 0, 0}, {0, 2_000_000, 0}, {0, 1_000_000, 2}, {0, 500_000, 2}, {0, 499_999, 1},
		{0, 10_000, 1}, {320, 1_000_000, 1}, {640, 100_000, 1}, {1280, 600_000, 2},
	} {
		if got := tr.selectLayer(c.max, c.cap, now); got != c.want {
			t.Errorf("max width %d, cap %d: layer %d, want %d", c.max, c.cap, got, c.want)
		}
	}
	tr.layerAt(0).bitrate.Store(0) // not measured yet
	if got := tr.selectLayer(0, 200_000, now); got != 0 {
		t.Errorf("an unmeasured top layer under a cap: %d, want 0", got)
	}
}

// The bandwidth cap: congestion caps at the estimate, a quiet period lifts
// it to allow one layer more than the one sent, a probe that meets
// congestion again doubles the wait, and loss alone caps below the rate
// being sent. An estimate below the rate sent is congestion only after the
// estimator cut it: without a cut it has not measured that layer yet (a
// switch up), and caps nothing.
func TestBandwidthCap(t *testing.T) {
	rates := []int64{150_000, 500_000, 1_500_000}
	sec := int64(time.Second)
	var b bwCap
	now := int64(1000 * sec)
	if c := b.update(3_000_000, 1_500_000, true, false, rates, now); c != 0 {
		t.Fatalf("an estimate above the rate sent capped at %d", c)
	}
	if c := b.update(1_400_000, 1_500_000, true, false, rates, now); c != 0 {
		t.Fatalf("an estimate at 93%% of the rate sent (within the margin) capped at %d", c)
	}
	if c := b.update(600_000, 1_500_000, false, false, rates, now); c != 0 {
		t.Fatalf("an estimate below the rate sent, not cut, capped at %d", c)
	}
	if c := b.update(600_000, 1_500_000, true, false, rates, now); c != 600_000 {
		t.Fatalf("congestion: cap %d, want the estimate 600000", c)
	}
	// Quiet but not long enough: the cap stays.
	if c := b.update(700_000, 500_000, false, false, rates, now+7*sec); c != 600_000 {
		t.Fatalf("after 7 s: cap %d, want 600000", c)
	}
	// After 8 s: one layer up, the top one: no cap.
	if c := b.update(700_000, 500_000, false, false, rates, now+8*sec); c != 0 {
		t.Fatalf("after 8 s: cap %d, want none", c)
	}
	// The probe meets congestion: capped again, and the next probe waits 16 s.
	now += 9 * sec
	if c := b.update(800_000, 1_500_000, true, false, rates, now); c != 800_000 {
		t.Fatalf("probe congested: cap %d, want 800000", c)
	}
	if c := b.update(900_000, 500_000, false, false, rates, now+15*sec); c != 800_000 {
		t.Fatalf("15 s after a failed probe: cap %d, want 800000", c)
	}
	if c := b.update(900_000, 500_000, false, false, rates, now+16*sec); c != 0 {
		t.Fatalf("16 s after a failed probe: cap %d, want none", c)
	}

	// Congestion on the lowest layer caps below it; the probe allows the
	// middle layer (not the lowest, which is sent anyway), with room for its
	// bitrate to vary: halfway to the top one.
	var f bwCap
	if c := f.update(100_000, 150_000, true, false, rates, now); c != 100_000 {
		t.Fatalf("congestion on the lowest layer: cap %d, want 100000", c)
	}
	if c := f.update(300_000, 150_000, false, false, rates, now+8*sec); c != 1_000_000 {
		t.Fatalf("probe from the lowest layer: cap %d, want 1000000", c)
	}

	// Loss without an estimate: capped below the rate sent.
	var l bwCap
	if c := l.update(0, 500_000, false, true, rates, now); c != 375_000 {
		t.Fatalf("loss: cap %d, want 375000", c)
	}
	if c := l.update(0, 150_000, false, true, rates, now+sec); c != 112_500 {
		t.Fatalf("more loss on the low layer: cap %d, want 112500", c)
	}
}

// handleRTCP and ingest survive arbitrary bytes.
func TestMalformedInputsDoNotPanic(t *testing.T) {
	tr, _ := fakeTrack(1)
	w := &memWriter{}
	d := fakeSubscriber(tr, w, 777)
	l := tr.layerAt(0)
	l.ingest(packet(1, 0, true, 640, 1), nanotime())
	r := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 1600)
	for i := 0; i < 20000; i++ {
		n := r.IntN(len(buf))
		for j := 0; j < n; j++ {
			buf[j] = byte(r.Uint32())
		}
		if n >= 2 {
			buf[0] = buf[0]&0x3f | 0x80 // version 2, mostly
			if i%2 == 0 {
				buf[1] = rtcpRTPFB + byte(i%3)
			}
		}
		d.handleRTCP(buf[:n])
		if n >= 2 {
			buf[1] = buf[1]&0x80 | 96
		}
		l.ingest(buf[:n], nanotime())
		for _, c := range []codecKind{codecVP8, codecVP9, codecH264} {
			keyframe(c, buf[:n])
			if pic, long, tl0 := pictureIDs(c, buf[:n]); pic >= 0 {
				readPictureID(buf[:n], pic, long)
			} else if tl0 >= n {
				t.Fatalf("TL0PICIDX offset %d past a %d-byte payload", tl0, n)
			}
		}
	}
}

func FuzzHandleRTCP(f *testing.F) {
	f.Add(rtcpNACK(777, 10, 0xffff))
	f.Add(rtcpPLI(777))
	f.Fuzz(func(t *testing.T, b []byte) {
		tr, _ := fakeTrack(1)
		d := fakeSubscriber(tr, &memWriter{}, 777)
		tr.layerAt(0).ingest(packet(1, 0, true, 640, 1), nanotime())
		d.handleRTCP(b)
	})
}

func FuzzIngest(f *testing.F) {
	f.Add(packet(1, 0, true, 640, 1))
	f.Add(packet(2, 0, false, 0, 1))
	f.Fuzz(func(t *testing.T, b []byte) {
		tr, _ := fakeTrack(1)
		fakeSubscriber(tr, &memWriter{}, 777)
		tr.layerAt(0).ingest(b, nanotime())
	})
}

// Keyframe requests: a subscriber's own PLIs reach the publisher at most
// every 500 ms per layer; a subscription waiting for a keyframe to start
// (it forwards nothing until then) may ask every 100 ms; both share the
// layer's last request.
func TestKeyframeRequestThrottles(t *testing.T) {
	tr, plis := fakeTrack(1)
	ms := int64(time.Millisecond)
	now := int64(10_000) * ms
	tr.requestKeyframe(0, now)
	tr.requestKeyframe(0, now+200*ms) // subscriber PLI within 500 ms: dropped
	if n := plis.Load(); n != 1 {
		t.Fatalf("%d requests, want 1", n)
	}
	tr.wantKeyframe(0, now+50*ms) // a waiting start within 100 ms: dropped
	if n := plis.Load(); n != 1 {
		t.Fatalf("%d requests after a start 50 ms later, want 1", n)
	}
	tr.wantKeyframe(0, now+150*ms) // a waiting start after 100 ms: sent
	if n := plis.Load(); n != 2 {
		t.Fatalf("%d requests after a start 150 ms later, want 2", n)
	}
	tr.requestKeyframe(0, now+500*ms) // 350 ms after the last: dropped
	tr.requestKeyframe(0, now+650*ms) // 500 ms after the last: sent
	if n := plis.Load(); n != 3 {
		t.Fatalf("%d requests, want 3", n)
	}
	// Audio tracks never ask.
	tr.kind = webrtc.RTPCodecTypeAudio
	tr.wantKeyframe(0, now+5000*ms)
	if n := plis.Load(); n != 3 {
		t.Errorf("an audio track asked for a keyframe")
	}
}

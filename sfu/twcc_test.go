package sfu

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// Forwarded packets carry one transport-wide sequence, shared by all of a
// subscriber's streams, retransmissions included.
func TestTransportWideNumbering(t *testing.T) {
	sub := &Participant{id: "sub", log: testLogger(), cong: newCongestion()}
	w := &memWriter{record: true}
	var downs []*downTrack
	var layers []*layer
	for i := 0; i < 2; i++ {
		tr, _ := fakeTrack(1)
		d := newDownTrack(tr, sub)
		if _, err := d.Bind(&bindCtx{ssrc: webrtc.SSRC(7000 + i), writer: w}); err != nil {
			t.Fatal(err)
		}
		tr.addDown(d)
		downs = append(downs, d)
		layers = append(layers, tr.layerAt(0))
	}
	for seq := uint16(1); seq <= 10; seq++ {
		for _, l := range layers {
			l.ingest(packet(seq, uint32(seq)*3000, seq == 1, 640, 1), nanotime())
		}
	}
	if !downs[0].resend(downs[0].lastSeq - 2) {
		t.Fatal("a NACKed packet was not resent")
	}
	got := w.got()
	if len(got) != 21 {
		t.Fatalf("%d packets written, want 21", len(got))
	}
	for i, p := range got {
		ext := p.GetExtension(testTCCID)
		if len(ext) != 2 {
			t.Fatalf("packet %d has no transport-cc extension: %+v", i, p.Header)
		}
		if n := binary.BigEndian.Uint16(ext); n != uint16(i) {
			t.Errorf("packet %d (ssrc %d) numbered %d, want %d", i, p.SSRC, n, i)
		}
	}
}

// A subscriber's connection without transport-cc (no such extension
// negotiated) gets packets without it.
func TestNoTransportWideNumberingWithoutExtension(t *testing.T) {
	tr, _ := fakeTrack(1)
	sub := &Participant{id: "sub", log: testLogger(), cong: newCongestion()}
	d := newDownTrack(tr, sub)
	w := &memWriter{record: true}
	if _, err := d.Bind(&noExtCtx{bindCtx{ssrc: 7000, writer: w}}); err != nil {
		t.Fatal(err)
	}
	tr.addDown(d)
	tr.layerAt(0).ingest(packet(1, 0, true, 640, 1), nanotime())
	got := w.got()
	if len(got) != 1 || got[0].Extension || len(got[0].Extensions) != 0 {
		t.Fatalf("packets %+v, want one without header extensions", got)
	}
}

type noExtCtx struct{ bindCtx }

func (c *noExtCtx) HeaderExtensions() []webrtc.RTPHeaderExtensionParameter { return nil }

// Numbering a sent packet allocates nothing (the forwarding path's budget).
func TestCongestionSentDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under -race")
	}
	c := newCongestion()
	now := int64(1e9)
	allocs := testing.AllocsPerRun(1000, func() { now += 1000; c.sent(now, 1200) })
	if allocs != 0 {
		t.Errorf("%.1f allocations per sent packet, want 0", allocs)
	}
}

// link simulates the path to a subscriber: a FIFO bottleneck of capacity
// bit/s behind 20 ms of propagation, losing a share of packets at random;
// transport-cc feedback every 100 ms.
type link struct {
	capacity float64
	loss     float64
	rng      *rand.Rand
	free     int64 // µs when the bottleneck is next free
	pending  []simPacket
}

type simPacket struct {
	seq     uint16
	arrival int64 // µs; -1: lost
}

// run sends rate bit/s of 1,200-byte packets for seconds through l and
// feeds c the feedback; it returns the target at the end.
func (l *link) run(t *testing.T, c *congestion, rate float64, seconds int) int64 {
	t.Helper()
	const size = 1200
	interval := int64(size * 8 * 1e6 / rate) // µs between packets
	start := int64(10e6)
	next, nextFB := start, start+100_000
	for now := start; now < start+int64(seconds)*1e6; now += 500 {
		for ; next <= now; next += interval {
			seq := c.sent(next*1000, size)
			p := simPacket{seq: seq, arrival: -1}
			if l.rng.Float64() >= l.loss {
				depart := max(next, l.free) + int64(size*8*1e6/l.capacity)
				l.free = depart
				p.arrival = depart + 20_000
			}
			l.pending = append(l.pending, p)
		}
		if now >= nextFB {
			nextFB += 100_000
			l.feedback(t, c, now)
		}
	}
	return c.target.Load()
}

// feedback reports every pending packet up to the first one still in
// flight, as a browser would.
func (l *link) feedback(t *testing.T, c *congestion, now int64) {
	t.Helper()
	n := 0
	for n < len(l.pending) && l.pending[n].arrival <= now {
		n++ // lost ones (-1) are reported lost
	}
	if n == 0 {
		return
	}
	pkts := l.pending[:n]
	l.pending = l.pending[n:]
	fb := rtcp.TransportLayerCC{
		BaseSequenceNumber: pkts[0].seq,
		PacketStatusCount:  uint16(len(pkts)),
	}
	var ref int64 = -1
	last := int64(0)
	for i := 0; i < len(pkts); i += 7 {
		chunk := &rtcp.StatusVectorChunk{SymbolSize: rtcp.TypeTCCSymbolSizeTwoBit}
		for j := i; j < i+7; j++ {
			if j >= len(pkts) || pkts[j].arrival < 0 {
				chunk.SymbolList = append(chunk.SymbolList, rtcp.TypeTCCPacketNotReceived)
				continue
			}
			if ref < 0 {
				ref = pkts[j].arrival / 64000
				fb.ReferenceTime = uint32(ref)
				last = ref * 64000
			}
			delta := (pkts[j].arrival - last) / 250 * 250
			last += delta
			chunk.SymbolList = append(chunk.SymbolList, rtcp.TypeTCCPacketReceivedLargeDelta)
			fb.RecvDeltas = append(fb.RecvDeltas, &rtcp.RecvDelta{Type: rtcp.TypeTCCPacketReceivedLargeDelta, Delta: delta})
		}
		fb.PacketChunks = append(fb.PacketChunks, chunk)
	}
	// Through the wire format, as the browser's feedback arrives.
	raw := marshalTWCC(t, &fb)
	var parsed rtcp.TransportLayerCC
	if err := parsed.Unmarshal(raw); err != nil {
		t.Fatal(err)
	}
	c.feedback(&parsed, now*1000)
}

func TestEstimateGrowsOnAFreePath(t *testing.T) {
	c := newCongestion()
	l := &link{capacity: 20e6, rng: rand.New(rand.NewPCG(1, 2))}
	got := l.run(t, c, 1.5e6, 15)
	t.Logf("free path: estimate %d, acked %.0f", got, c.acked)
	// It grows from its start (1.5 Mbit/s), but never beyond 1.5 times
	// what is seen to arrive.
	if got <= bweInitial*12/10 || got > 1.5*1.5e6*1.1 {
		t.Errorf("estimate %d bit/s after 15 s of 1.5 Mbit/s on a 20 Mbit/s path, want (1.8M, 2.5M]", got)
	}
	// Held by what arrives is not cut: no congestion for layer choice.
	if at := c.cutAt.Load(); at != 0 {
		t.Errorf("the estimate was cut (at %d) on a free path", at)
	}
}

func TestEstimateFallsBelowABottleneck(t *testing.T) {
	c := newCongestion()
	l := &link{capacity: 1e6, rng: rand.New(rand.NewPCG(1, 2))}
	got := l.run(t, c, 1.5e6, 10)
	t.Logf("bottleneck: estimate %d, acked %.0f, threshold %.1f", got, c.acked, c.threshold)
	// The queue grows: the delay trend says overuse, and the estimate
	// drops to about what gets through.
	if got > 1.1e6 || got < bweMin {
		t.Errorf("estimate %d bit/s through a 1 Mbit/s bottleneck, want at most 1.1M", got)
	}
	if c.lastDecrease == 0 || c.cutAt.Load() != c.lastDecrease*1000 {
		t.Errorf("the target never decreased, or the cut is not recorded (at %d, last decrease %d µs)", c.cutAt.Load(), c.lastDecrease)
	}
}

func TestEstimateFallsWithLoss(t *testing.T) {
	c := newCongestion()
	l := &link{capacity: 20e6, loss: 0.2, rng: rand.New(rand.NewPCG(1, 2))}
	got := l.run(t, c, 1.5e6, 5)
	t.Logf("lossy path: estimate %d, acked %.0f", got, c.acked)
	if got >= bweInitial*8/10 {
		t.Errorf("estimate %d bit/s with 20 %% loss, want below %d", got, bweInitial*8/10)
	}
	if c.cutAt.Load() == 0 {
		t.Error("the cuts for loss are not recorded")
	}
}

// Feedback about numbers never sent (or long forgotten) changes nothing
// and does not crash.
func TestFeedbackForUnknownPackets(t *testing.T) {
	c := newCongestion()
	c.sent(1e9, 1200)
	fb := &rtcp.TransportLayerCC{
		BaseSequenceNumber: 5000,
		PacketStatusCount:  3,
		PacketChunks:       []rtcp.PacketStatusChunk{&rtcp.RunLengthChunk{PacketStatusSymbol: rtcp.TypeTCCPacketReceivedSmallDelta, RunLength: 3}},
		RecvDeltas:         []*rtcp.RecvDelta{{Type: rtcp.TypeTCCPacketReceivedSmallDelta, Delta: 250}},
	}
	c.feedback(fb, 2e9)
	if got := c.target.Load(); got < bweMin || got > bweMax {
		t.Errorf("target %d out of bounds", got)
	}
	if c.acked != 0 || c.havePrev {
		t.Error("unknown packets were measured")
	}
}

// handleRTCP hands transport-cc feedback to the subscriber's estimator.
func TestHandleRTCPFeedsEstimator(t *testing.T) {
	tr, _ := fakeTrack(1)
	w := &memWriter{}
	d := fakeSubscriber(tr, w, 5000)
	l := tr.layerAt(0)
	l.ingest(packet(1, 0, true, 640, 1), nanotime())
	for seq := uint16(2); seq < 40; seq++ {
		l.ingest(packet(seq, uint32(seq)*3000, false, 0, 1), nanotime())
	}
	// Every one of the 39 packets reported lost: the loss branch lowers
	// the target.
	fb := rtcp.TransportLayerCC{
		MediaSSRC:          5000,
		BaseSequenceNumber: 0,
		PacketStatusCount:  39,
		PacketChunks:       []rtcp.PacketStatusChunk{&rtcp.RunLengthChunk{PacketStatusSymbol: rtcp.TypeTCCPacketNotReceived, RunLength: 39}},
	}
	raw := marshalTWCC(t, &fb)
	before := d.sub.cong.target.Load()
	d.handleRTCP(raw)
	if after := d.sub.cong.target.Load(); after >= before {
		t.Errorf("target %d after a feedback losing everything, was %d", after, before)
	}
}

// marshalTWCC fills in fb's RTCP header and marshals it.
func marshalTWCC(t *testing.T, fb *rtcp.TransportLayerCC) []byte {
	t.Helper()
	size := fb.MarshalSize()
	fb.Header = rtcp.Header{
		Count:  rtcp.FormatTCC,
		Type:   rtcp.TypeTransportSpecificFeedback,
		Length: uint16(size/4 - 1),
	}
	raw, err := fb.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

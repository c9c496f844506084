package sfu

import (
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// seqWriter checks that one subscriber's packets arrive in order.
type seqWriter struct {
	n       int
	last    uint16
	started bool
	bad     int
}

func (w *seqWriter) WriteRTP(h *rtp.Header, _ []byte) (int, error) {
	if w.started && h.SequenceNumber != w.last+1 {
		w.bad++
	}
	w.started, w.last = true, h.SequenceNumber
	w.n++
	return 0, nil
}

func (w *seqWriter) Write(b []byte) (int, error) { return len(b), nil }

// A large room's fan-out is split over the pool's workers: every
// subscriber gets every packet, in order, and the reader returns only when
// all copies are made (it then reuses the packet's buffer).
func TestParallelFanout(t *testing.T) {
	pool := newFanPool(3)
	defer pool.stop()
	tr, _ := fakeTrack(1)
	tr.owner.sfu = &SFU{pool: pool}
	const subs = 300
	writers := make([]*seqWriter, subs)
	for i := range writers {
		writers[i] = &seqWriter{}
		sub := &Participant{id: "sub", log: testLogger(), cong: newCongestion()}
		d := newDownTrack(tr, sub)
		if _, err := d.Bind(&bindCtx{ssrc: webrtc.SSRC(9000 + i), writer: writers[i]}); err != nil {
			t.Fatal(err)
		}
		tr.addDown(d)
	}
	l := tr.layerAt(0)
	pkt := packet(1, 0, true, 640, 1)
	l.ingest(pkt, nanotime())
	const packets = 200
	for i := 2; i <= packets; i++ {
		// The same buffer, rewritten for each packet, as the reader does.
		pkt = packet(uint16(i), uint32(i)*3000, false, 0, 1)
		l.ingest(pkt, nanotime())
		for j, w := range writers {
			if w.n != i {
				t.Fatalf("after packet %d, subscriber %d has %d packets: ingest returned before its fan-out ended", i, j, w.n)
			}
		}
	}
	for j, w := range writers {
		if w.bad != 0 {
			t.Errorf("subscriber %d got %d packets out of order", j, w.bad)
		}
	}
	if len(l.fan.jobs) < 2 {
		t.Fatalf("the fan-out of %d subscribers was not split (%d chunks)", subs, len(l.fan.jobs))
	}
}

// Without workers (one core), or below parallelMin, the reader forwards
// alone; after stop, submitted jobs run on the caller.
func TestFanPoolStop(t *testing.T) {
	if newFanPool(0) != nil {
		t.Fatal("a pool on one core")
	}
	pool := newFanPool(2)
	pool.stop()
	tr, _ := fakeTrack(1)
	w := &memWriter{}
	for i := 0; i < parallelMin; i++ {
		fakeSubscriber(tr, w, uint32(5000+i))
	}
	tr.owner.sfu = &SFU{pool: pool}
	tr.layerAt(0).ingest(packet(1, 0, true, 640, 1), nanotime())
	if got := w.n.Load(); got != parallelMin {
		t.Fatalf("%d copies after the pool stopped, want %d", got, parallelMin)
	}
}

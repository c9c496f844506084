package sfu

import (
	"testing"
	"time"
)

// A publisher sends three rid layers; a subscriber asking for 320 pixels
// gets the low one; asking for more switches up at a keyframe, with one
// continuous stream (same SSRC, consecutive sequence numbers, increasing
// timestamps).
func TestSimulcastLayers(t *testing.T) {
	s := newTestSFU(t)
	room := s.NewRoom("simulcast")
	pubC := newClient(t, room, "pub", publishAll)
	defer pubC.close()
	layers := pubC.publishSimulcast("sim-cam", []string{"q", "h", "f"}, []int{320, 640, 1280}, 20*time.Millisecond)
	pubC.connect()
	pubC.setMids(layers)

	// Every layer is known, with the widths from its keyframes.
	eventually(t, 10*time.Second, func() bool {
		for _, ps := range room.Stats() {
			if ps.ID == "pub" {
				n := 0
				for _, ts := range ps.Published {
					if ts.Width > 0 && ts.Packets > 0 {
						n++
					}
				}
				return n == 3
			}
		}
		return false
	}, "three layers with widths")
	for _, l := range layers {
		l.keyEvery.Store(1 << 20) // from now on, keyframes only on request
	}

	sub := newClient(t, room, "sub", publishAll)
	defer sub.close()
	sub.p.RequestLayer("sim-cam", 320)
	sub.connect()

	eventually(t, 10*time.Second, func() bool { return sub.packetsOf("sim-cam") > 20 }, "the subscriber receives video")
	if got := recentLayers(sub, "sim-cam", 10); len(got) != 1 || !got[1] {
		t.Fatalf("with max width 320 the subscriber gets layers %v, want only the low one (1)", got)
	}

	// Switch up: to 'h' (640), then 'f' (1280).
	plisBefore := layers[1].plis.Load()
	sub.p.RequestLayer("sim-cam", 700)
	eventually(t, 5*time.Second, func() bool { return recentLayers(sub, "sim-cam", 5)[2] }, "switch to the middle layer")
	if layers[1].plis.Load() == plisBefore {
		t.Errorf("switching did not ask the target layer for a keyframe")
	}
	sub.p.RequestLayer("sim-cam", 0)
	eventually(t, 5*time.Second, func() bool { return recentLayers(sub, "sim-cam", 5)[3] }, "switch to the top layer")
	// And down again.
	sub.p.RequestLayer("sim-cam", 320)
	eventually(t, 5*time.Second, func() bool {
		got := recentLayers(sub, "sim-cam", 5)
		return len(got) == 1 && got[1]
	}, "switch back to the low layer")

	rt := sub.track("sim-cam")
	rt.mu.Lock()
	defer rt.mu.Unlock()
	log := rt.log
	if len(log) == 0 || log[0].layer != 1 || !log[0].key {
		t.Fatalf("the stream does not start with a keyframe of the low layer: %+v", log[:min(3, len(log))])
	}
	switches := 0
	for i := 1; i < len(log); i++ {
		prev, cur := log[i-1], log[i]
		if cur.ssrc != log[0].ssrc {
			t.Fatalf("SSRC changed at packet %d", i)
		}
		if cur.seq != prev.seq+1 {
			t.Errorf("sequence jumps %d → %d at packet %d", prev.seq, cur.seq, i)
		}
		if int32(cur.ts-prev.ts) <= 0 {
			t.Errorf("timestamp does not advance %d → %d at packet %d", prev.ts, cur.ts, i)
		}
		if cur.layer != prev.layer {
			switches++
			if !cur.key {
				t.Errorf("switch from layer %d to %d at packet %d is not on a keyframe", prev.layer, cur.layer, i)
			}
		}
	}
	if switches != 3 {
		t.Errorf("%d layer switches, want 3", switches)
	}
	for _, ps := range room.Stats() {
		if ps.ID == "sub" && (len(ps.Subscribed) != 1 || ps.Subscribed[0].Layer != "q") {
			t.Errorf("subscriber stats %+v", ps.Subscribed)
		}
	}
}

// recentLayers returns the layer markers of the last n packets received.
func recentLayers(c *client, id string, n int) map[byte]bool {
	rt := c.track(id)
	if rt == nil {
		return nil
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	got := map[byte]bool{}
	for i := max(0, len(rt.log)-n); i < len(rt.log); i++ {
		got[rt.log[i].layer] = true
	}
	return got
}

// The congestion controller toward a subscriber runs on the subscriber's
// transport-cc feedback: the estimate leaves its initial value only when
// feedback about the packets forwarded to it arrives (without the
// interceptors on the subscription's sender, it would stay put).
func TestBandwidthEstimateFollowsFeedback(t *testing.T) {
	s := newTestSFU(t)
	room := s.NewRoom("bwe")
	pub := newClient(t, room, "pub", publishAll)
	defer pub.close()
	pub.publishVideo("cam", "camera", 20*time.Millisecond)
	pub.connect()
	sub := newClient(t, room, "sub", publishAll)
	defer sub.close()
	sub.connect()
	eventually(t, 10*time.Second, func() bool { return sub.packetsOf("cam") > 20 }, "sub receives video")

	estimate := func() int64 {
		for _, ps := range room.Stats() {
			if ps.ID == "sub" {
				return ps.BandwidthEstimate
			}
		}
		return -1
	}
	if e := estimate(); e < bweMin || e > bweMax {
		t.Fatalf("estimate %d toward the subscriber, want one in [%d, %d]", e, bweMin, bweMax)
	}
	eventually(t, 10*time.Second, func() bool { e := estimate(); return e >= bweMin && e != bweInitial },
		"the estimate moves from its initial %d on feedback (now %d)", bweInitial, estimate())
}

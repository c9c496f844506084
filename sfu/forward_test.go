package sfu

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

var publishAll = Publish{Audio: true, Video: true, Screen: true}

// Two participants each publish VP8 and Opus; each receives the other's
// two tracks and never its own.
func TestTwoParticipants(t *testing.T) {
	s := newTestSFU(t)
	room := s.NewRoom("r1")
	a := newClient(t, room, "alice", publishAll)
	defer a.close()
	b := newClient(t, room, "bob", publishAll)
	defer b.close()
	a.publishVideo("a-cam", "camera", 20*time.Millisecond)
	a.publishAudio("a-mic", 20*time.Millisecond)
	b.publishVideo("b-cam", "camera", 20*time.Millisecond)
	b.publishAudio("b-mic", 20*time.Millisecond)
	a.connect()
	b.connect()

	for _, c := range []*client{a, b} {
		eventually(t, 10*time.Second, func() bool {
			au, vi, _ := c.received(20)
			return au == 1 && vi == 1
		}, "%s receives one audio and one video track", c.name)
	}
	for _, c := range []*client{a, b} {
		if _, _, own := c.received(0); own {
			t.Errorf("%s received its own track", c.name)
		}
		if n := len(c.recv); n != 2 {
			t.Errorf("%s has %d tracks, want 2", c.name, n)
		}
	}
	if rt := a.track("b-cam"); rt == nil || rt.streamID != b.p.streamID {
		t.Errorf("alice: b-cam missing or with the wrong stream id")
	}

	// Events: each publisher saw its two tracks published.
	eventually(t, 2*time.Second, func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return len(a.published) == 2
	}, "alice's OnTrackPublished")
	infos := room.Tracks()
	if len(infos) != 4 {
		t.Fatalf("room has %d tracks, want 4: %+v", len(infos), infos)
	}
	for _, ti := range infos {
		want := map[string]string{"a-cam": "camera", "a-mic": "microphone", "b-cam": "camera", "b-mic": "microphone"}[ti.ID]
		if ti.Source != want {
			t.Errorf("track %s source %q, want %q", ti.ID, ti.Source, want)
		}
	}

	// Stats from our own counters.
	eventually(t, 3*time.Second, func() bool {
		for _, ps := range room.Stats() {
			if ps.ConnectionState != "connected" || len(ps.Published) != 2 || len(ps.Subscribed) != 2 {
				return false
			}
			for _, ts := range ps.Subscribed {
				if ts.Packets == 0 {
					return false
				}
			}
		}
		return true
	}, "stats show two connected participants forwarding")
	for _, ps := range room.Stats() {
		if ps.Transport != "udp" {
			t.Errorf("%s transport %q, want udp", ps.ID, ps.Transport)
		}
		for _, ts := range ps.Published {
			if ts.Packets == 0 || ts.Codec == "" {
				t.Errorf("%s published %+v", ps.ID, ts)
			}
		}
	}
	a.mu.Lock()
	states := append([]string(nil), a.states...)
	a.mu.Unlock()
	if len(states) == 0 || states[0] != "connected" {
		t.Errorf("alice's connection states %v", states)
	}
}

// Ten participants join one room; renegotiation is server-driven; each ends
// up receiving the nine others' audio and video.
func TestTenParticipants(t *testing.T) {
	s := newTestSFU(t)
	room := s.NewRoom("ten")
	const n = 10
	clients := make([]*client, n)
	for i := range clients {
		c := newClient(t, room, fmt.Sprintf("p%d", i), publishAll)
		defer c.close()
		c.publishVideo(fmt.Sprintf("cam%d", i), "camera", 50*time.Millisecond)
		c.publishAudio(fmt.Sprintf("mic%d", i), 50*time.Millisecond)
		clients[i] = c
	}
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.offer(); err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
		}()
	}
	wg.Wait()
	for _, c := range clients {
		eventually(t, 30*time.Second, func() bool {
			au, vi, _ := c.received(3)
			return au == n-1 && vi == n-1
		}, "%s receives 9 audio and 9 video tracks", c.name)
		if _, _, own := c.received(0); own {
			t.Errorf("%s received its own track", c.name)
		}
	}
	if got := len(room.Tracks()); got != 2*n {
		t.Errorf("room has %d tracks, want %d", got, 2*n)
	}
}

// Participants join and leave while one stays: each joiner receives the
// stayer's track and the server forwards the joiner's track to the stayer
// (on reused transceivers); afterwards nothing is left running and the
// stayer's m-lines have not piled up.
//
// The stayer's reception is checked on the server's counters: under this
// rapid renegotiation Pion's own receiver (the test client, not the SFU)
// sometimes never delivers a track whose SRTP packets it does decrypt;
// TestSlotReuse checks the client side sequentially.
func TestJoinLeaveChurn(t *testing.T) {
	s := newTestSFU(t)
	room := s.NewRoom("churn")
	before := runtime.NumGoroutine()
	stay := newClient(t, room, "stay", publishAll)
	defer stay.close()
	stay.publishAudio("stay-mic", 20*time.Millisecond)
	stay.connect()

	const workers, rounds = 3, 10
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				c := newClient(t, room, fmt.Sprintf("w%d-%d", w, r), publishAll)
				mic := fmt.Sprintf("w%d-%d-mic", w, r)
				c.publishAudio(mic, 20*time.Millisecond)
				if err := c.offer(); err != nil {
					t.Errorf("%s: %v", c.name, err)
				}
				if !within(10*time.Second, func() bool { return c.packetsOf("stay-mic") >= 3 && stay.packetsOf(mic) >= 3 }) {
					t.Errorf("%s received %d packets of stay-mic, stay %d of %s (stay: %s)", c.name, c.packetsOf("stay-mic"), stay.packetsOf(mic), mic, stay.diagnose(mic))
				}
				c.close()
			}
		}()
	}
	wg.Wait()
	eventually(t, 5*time.Second, func() bool { return len(room.Tracks()) == 1 }, "only the stayer's track is left")

	stay.p.mu.Lock()
	slots := len(stay.p.slots)
	stay.p.mu.Unlock()
	if slots > 3*workers {
		t.Errorf("stayer has %d transceivers after %d joins of at most %d at once", slots, workers*rounds, workers)
	}
	stay.close()
	eventually(t, 5*time.Second, func() bool { return runtime.NumGoroutine() <= before+5 }, "goroutines back to %d (now %d)", before, runtime.NumGoroutine())
}

// One participant stays while others come and go one after the other: its
// freed transceivers carry the next subscriptions, and the stayer receives
// every one of them.
func TestSlotReuse(t *testing.T) {
	s := newTestSFU(t)
	room := s.NewRoom("reuse")
	stay := newClient(t, room, "stay", publishAll)
	defer stay.close()
	stay.publishAudio("stay-mic", 20*time.Millisecond)
	stay.connect()
	var prev *client
	for i := 0; i < 6; i++ {
		c := newClient(t, room, fmt.Sprint("c", i), publishAll)
		mic := fmt.Sprint("c", i, "-mic")
		c.publishAudio(mic, 20*time.Millisecond)
		c.connect()
		if prev != nil {
			prev.close()
		}
		prev = c
		eventually(t, 10*time.Second, func() bool { return stay.packetsOf(mic) >= 3 }, "stay receives %s", mic)
	}
	prev.close()
	stay.p.mu.Lock()
	defer stay.p.mu.Unlock()
	if n := len(stay.p.slots); n > 2 {
		t.Errorf("%d transceivers for at most 2 subscriptions at once", n)
	}
}

// A client that adds a track of its own after it received others' may
// put it on a transceiver the server made to send it a subscription (a
// browser's addTrack, and Pion's, reuse such a transceiver): the track is
// published like any other and reaches the others.
func TestPublishOnServerTransceiver(t *testing.T) {
	s := newTestSFU(t)
	room := s.NewRoom("reuse-publish")
	a := newClient(t, room, "a", publishAll)
	defer a.close()
	a.publishVideo("a-cam", "camera", 20*time.Millisecond)
	a.connect()
	b := newClient(t, room, "b", publishAll)
	defer b.close()
	b.publishAudio("b-mic", 20*time.Millisecond)
	b.connect()
	eventually(t, 10*time.Second, func() bool { return b.packetsOf("a-cam") >= 3 }, "b receives a-cam")

	// b's only video transceiver is the server's ("s…"), receiving a-cam.
	cam := b.publishVideo("b-cam", "camera", 20*time.Millisecond)
	mid := ""
	for _, tr := range b.pc.GetTransceivers() {
		if tr.Sender() == cam.sender {
			mid = tr.Mid()
		}
	}
	if !strings.HasPrefix(mid, "s") {
		t.Fatalf("b's camera went on transceiver %q, want one the server made (s…): the test no longer covers reuse", mid)
	}
	if err := b.offer(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() bool { return a.packetsOf("b-cam") >= 10 }, "a receives b-cam, sent on server transceiver %s", mid)
	if n := b.packetsOf("a-cam"); !growsWithin(b, "a-cam", n, 5*time.Second) {
		t.Error("b stopped receiving a-cam on the m-line it now also sends on")
	}
	var info TrackInfo
	for _, ti := range room.Tracks() {
		if ti.ID == "b-cam" {
			info = ti
		}
	}
	if info.Kind != "video" || info.Source != "camera" || info.Participant != b.p.id {
		t.Errorf("b-cam is published as %+v", info)
	}
}

// SetPublish revocation stops the video reaching the others, StopTrack the
// audio; each fires OnTrackUnpublished.
func TestRevokeAndStop(t *testing.T) {
	s := newTestSFU(t)
	room := s.NewRoom("revoke")
	a := newClient(t, room, "a", publishAll)
	defer a.close()
	b := newClient(t, room, "b", publishAll)
	defer b.close()
	a.publishVideo("a-cam", "camera", 20*time.Millisecond)
	a.publishAudio("a-mic", 20*time.Millisecond)
	a.connect()
	b.connect()
	eventually(t, 10*time.Second, func() bool { return b.packetsOf("a-cam") > 10 && b.packetsOf("a-mic") > 10 }, "b receives a's media")

	a.p.SetPublish(Publish{Audio: true})
	eventually(t, 2*time.Second, func() bool { return a.unpublishedCount() == 1 }, "OnTrackUnpublished for the video")
	a.mu.Lock()
	if a.unpublished[0].ID != "a-cam" {
		t.Errorf("unpublished %+v, want a-cam", a.unpublished[0])
	}
	a.mu.Unlock()
	assertStops(t, b, "a-cam")
	if before := b.packetsOf("a-mic"); !growsWithin(b, "a-mic", before, 2*time.Second) {
		t.Errorf("a-mic stopped too")
	}

	a.p.StopTrack("audio")
	eventually(t, 2*time.Second, func() bool { return a.unpublishedCount() == 2 }, "OnTrackUnpublished for the audio")
	assertStops(t, b, "a-mic")
	if got := room.Tracks(); len(got) != 0 {
		t.Errorf("room still lists %+v", got)
	}
}

// assertStops waits for a track's packets to stop arriving.
func assertStops(t *testing.T, c *client, id string) {
	t.Helper()
	time.Sleep(200 * time.Millisecond) // packets in flight
	before := c.packetsOf(id)
	time.Sleep(400 * time.Millisecond)
	if after := c.packetsOf(id); after != before {
		t.Errorf("%s still receives %s: %d → %d packets", c.name, id, before, after)
	}
}

func growsWithin(c *client, id string, from int64, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if c.packetsOf(id) > from+5 {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// Glare: the client offers while a server offer is outstanding; the server
// rolls back, answers, and re-offers; both sides end up negotiated.
func TestGlare(t *testing.T) {
	s := newTestSFU(t)
	room := s.NewRoom("glare")
	a := newClient(t, room, "a", publishAll)
	defer a.close()
	b := newClient(t, room, "b", publishAll)
	defer b.close()
	a.publishAudio("a-mic", 20*time.Millisecond)
	a.connect()
	b.publishAudio("b-mic", 20*time.Millisecond)
	b.connect()
	eventually(t, 10*time.Second, func() bool { return a.packetsOf("b-mic") > 5 && b.packetsOf("a-mic") > 5 }, "initial media")

	// a makes an offer (adding a camera) but does not send it yet.
	a.negMu.Lock()
	a.publishVideo("a-cam", "camera", 20*time.Millisecond)
	offer, err := a.pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	a.negMu.Unlock()

	// Meanwhile b publishes a screen share: the server offers to a.
	b.publishVideo("b-screen", "screen", 20*time.Millisecond)
	if err := b.offer(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() bool { return a.offersIgnored.Load() == 1 }, "a ignores the server offer (glare)")
	a.p.mu.Lock()
	pending := a.p.offerPending
	a.p.mu.Unlock()
	if !pending {
		t.Fatal("the server offer is not outstanding")
	}

	// Now a's offer reaches the server.
	a.negMu.Lock()
	a.mu.Lock()
	sources := map[string]string{"a-cam": "camera", "a-mic": "microphone"}
	a.mu.Unlock()
	answer, err := a.p.HandleOffer(a.pc.LocalDescription().SDP, sources)
	if err != nil {
		a.negMu.Unlock()
		t.Fatalf("HandleOffer during glare: %v", err)
	}
	if err := a.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		a.negMu.Unlock()
		t.Fatal(err)
	}
	a.negMu.Unlock()

	eventually(t, 10*time.Second, func() bool { return a.packetsOf("b-screen") > 5 }, "a receives b's screen share after the re-offer")
	eventually(t, 10*time.Second, func() bool { return b.packetsOf("a-cam") > 5 }, "b receives a's camera")
	for _, c := range []*client{a, b} {
		if st := c.pc.SignalingState(); st != webrtc.SignalingStateStable {
			t.Errorf("%s signaling state %s", c.name, st)
		}
	}
	var srcs []string
	for _, ti := range room.Tracks() {
		if ti.ID == "b-screen" {
			srcs = append(srcs, ti.Source)
		}
	}
	if len(srcs) != 1 || srcs[0] != "screen" {
		t.Errorf("b-screen sources %v", srcs)
	}
}

// A subscriber's PLIs reach the publisher, throttled.
func TestPLIForwarding(t *testing.T) {
	s := newTestSFU(t)
	room := s.NewRoom("pli")
	a := newClient(t, room, "a", publishAll)
	defer a.close()
	b := newClient(t, room, "b", publishAll)
	defer b.close()
	cam := a.publishVideo("a-cam", "camera", 20*time.Millisecond)
	cam.keyEvery.Store(1 << 20) // keyframes only on request
	a.connect()
	b.connect()
	eventually(t, 10*time.Second, func() bool { return b.packetsOf("a-cam") > 10 }, "b receives a-cam")
	// The subscription started with a keyframe request.
	if cam.plis.Load() < 1 {
		t.Errorf("no keyframe request when the subscription started")
	}
	time.Sleep(keyframeInterval + 100*time.Millisecond)
	rt := b.track("a-cam")
	rt.mu.Lock()
	ssrc := rt.log[0].ssrc
	rt.mu.Unlock()

	before := cam.plis.Load()
	start := time.Now()
	for i := 0; i < 30; i++ {
		if err := b.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	got := cam.plis.Load() - before
	maxAllowed := int32(time.Since(start)/keyframeInterval) + 1
	if got < 1 || got > maxAllowed {
		t.Errorf("publisher got %d PLIs for 30 sent over %v; want 1..%d", got, time.Since(start).Round(time.Millisecond), maxAllowed)
	}
	// And the FIR path.
	before = cam.plis.Load()
	time.Sleep(keyframeInterval)
	if err := b.pc.WriteRTCP([]rtcp.Packet{&rtcp.FullIntraRequest{FIR: []rtcp.FIREntry{{SSRC: ssrc, SequenceNumber: 1}}}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, func() bool { return cam.plis.Load() > before }, "a FIR reaches the publisher as a PLI")
}

// A track the client stops sending (removeTrack and a new offer) is
// unpublished; leaving unpublishes the rest, then reports "closed".
func TestTrackEndsAndParticipantLeaves(t *testing.T) {
	s := newTestSFU(t)
	room := s.NewRoom("lifecycle")
	a := newClient(t, room, "a", publishAll)
	defer a.close()
	b := newClient(t, room, "b", publishAll)
	defer b.close()
	cam := a.publishVideo("a-cam", "camera", 20*time.Millisecond)
	a.publishAudio("a-mic", 20*time.Millisecond)
	a.connect()
	b.connect()
	eventually(t, 10*time.Second, func() bool { return b.packetsOf("a-cam") > 5 && b.packetsOf("a-mic") > 5 }, "b receives a")

	cam.paused.Store(true)
	if err := a.pc.RemoveTrack(cam.sender); err != nil {
		t.Fatal(err)
	}
	a.connect()
	eventually(t, 5*time.Second, func() bool { return a.unpublishedCount() == 1 }, "the ended camera is unpublished")
	if got := room.Tracks(); len(got) != 1 || got[0].ID != "a-mic" {
		t.Errorf("room tracks %+v", got)
	}

	a.p.Close()
	eventually(t, 5*time.Second, func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return len(a.states) > 0 && a.states[len(a.states)-1] == "closed"
	}, "a's last state is closed")
	if a.unpublishedCount() != 2 {
		t.Errorf("%d tracks unpublished, want 2", a.unpublishedCount())
	}
	if len(room.Tracks()) != 0 {
		t.Errorf("room still has tracks after a left")
	}
	if _, err := a.p.HandleOffer(a.pc.LocalDescription().SDP, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("HandleOffer after Close: %v, want ErrClosed", err)
	}
	if _, err := room.Join("a", a, publishAll); err != nil {
		t.Errorf("joining again with the same id after leaving: %v", err)
	} else if p, _ := room.Join("a", a, publishAll); p != nil {
		t.Errorf("a duplicate id was accepted")
	}
}

package server

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/parley-meet/parley/config"
	"github.com/parley-meet/parley/signaling"
)

// Ten Pion participants join one after another, each publishing audio
// and video: every one ends up receiving the other nine's media, through
// the server-driven renegotiations each arrival causes.
func TestTenParticipantsRenegotiate(t *testing.T) {
	if testing.Short() {
		t.Skip("ten PeerConnections")
	}
	f := newMeetingFixture(t, false, nil, func(c *config.Config) { c.WSMaxPerUser = 16 })
	ms := f.ms
	api := peerAPI(t)
	const n = 10
	peers := make([]*peer, n)
	for i := range peers {
		peers[i] = newPeer(t, ms.open(t, f.bob, f.room), api)
		peers[i].publish(fmt.Sprintf("p%d", i))
	}
	want := func(i int) []string {
		var ids []string
		for j := 0; j < n; j++ {
			if j != i {
				ids = append(ids, fmt.Sprintf("audio-p%d", j), fmt.Sprintf("video-p%d", j))
			}
		}
		return ids
	}
	waitUntil(t, 60*time.Second, "every participant to receive the nine others", func() bool {
		for i, p := range peers {
			for _, id := range want(i) {
				if p.received(id) == 0 {
					return false
				}
			}
		}
		return true
	})
	for i, p := range peers {
		if got := p.received(fmt.Sprintf("video-p%d", i)); got != 0 {
			t.Errorf("participant %d receives its own video", i)
		}
	}
	// One leaves: the others stop receiving it.
	gone := peers[3]
	gone.s.send(map[string]any{"type": "leave"})
	for i, p := range peers {
		if i != 3 {
			p.expect("participant_left", 5*time.Second)
		}
	}
	time.Sleep(300 * time.Millisecond)
	if flowing := peers[0].flowing(time.Second); flowing["audio-p3"] || flowing["video-p3"] {
		t.Errorf("a departed participant's media still flows: %v", flowing)
	}
}

// Joining and leaving many times leaves no goroutine, socket or room
// behind.
func TestJoinLeaveChurnLeavesNothing(t *testing.T) {
	f := newMeetingFixture(t, false, func(c *signaling.Config) { c.PingInterval = time.Second })
	ms := f.ms
	api := peerAPI(t)
	warm := newPeer(t, ms.open(t, f.bob, f.room), api)
	warm.publish("warm")
	warm.close()
	waitUntil(t, 5*time.Second, "the first meeting to end", func() bool { return ms.hub.Stats() == signaling.Stats{} })
	runtime.GC()
	base := runtime.NumGoroutine()
	for i := 0; i < 20; i++ {
		s := ms.open(t, f.bob, f.room)
		if i%4 == 0 {
			p := newPeer(t, s, api)
			p.publish(fmt.Sprintf("c%d", i))
			p.close()
			continue
		}
		s.join()
		s.send(map[string]any{"type": "leave"})
		s.expectClose(1000, 3*time.Second)
		s.ws.Close()
	}
	waitUntil(t, 10*time.Second, "every socket and room to go", func() bool { return ms.hub.Stats() == signaling.Stats{} })
	waitUntil(t, 15*time.Second, "the goroutines to end", func() bool {
		return runtime.NumGoroutine() <= base+5
	})
}

package server

import (
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/parley-meet/parley/rbac"
)

// Case 19: a member sends host-only commands: each is refused (forbidden),
// the victim is unaffected, nothing is recorded, and each refusal is
// audited.
func TestCase19HostOnlyCommandsRefused(t *testing.T) {
	f := newMeetingFixture(t, false, nil)
	ms := f.ms
	host := ms.open(t, f.host, f.room)
	hw := host.join()
	victim := hw["participant_id"].(string)
	bob := ms.open(t, f.bob, f.room)
	bob.join()
	for _, m := range []map[string]any{
		{"type": "kick", "participant": victim},
		{"type": "mute", "participant": victim, "kind": "audio"},
		{"type": "mute", "participant": victim, "kind": "video"},
		{"type": "admit", "participant": victim},
		{"type": "deny", "participant": victim},
		{"type": "lock", "locked": true},
		{"type": "end"},
		{"type": "record", "action": "start"},
	} {
		bob.send(m)
		if e := bob.expectError("forbidden"); e["request"] != m["type"] {
			t.Errorf("%v: %v", m, e["_raw"])
		}
	}
	// The host heard nothing of it and is still in a working, unlocked,
	// unrecorded meeting.
	host.send(map[string]any{"type": "chat", "text": "still hosting"})
	if c := host.expect("chat"); c["text"] != "still hosting" {
		t.Fatalf("host: %v", c["_raw"])
	}
	for len(host.msgs) > 0 {
		if m := <-host.msgs; m["type"] == "kicked" || m["type"] == "muted" || m["type"] == "ended" || m["type"] == "room_state" {
			t.Errorf("the victim saw %v", m["_raw"])
		}
	}
	late := ms.open(t, f.bob, f.room)
	if w := late.join(); w["room"].(map[string]any)["locked"] != false || w["room"].(map[string]any)["recording"] != false {
		t.Errorf("room after refusals: %v", w["_raw"])
	}
	for _, a := range []string{"kick", "mute", "admit", "deny", "lock", "end", "record"} {
		if !ms.hasAudit(t, "signal."+a+"/denied") {
			t.Errorf("no audit entry signal.%s/denied", a)
		}
	}
	// The host's own commands work and are audited.
	host.send(map[string]any{"type": "lock", "locked": true})
	host.expect("room_state")
	if !ms.hasAudit(t, "signal.lock/success") {
		t.Error("lock not audited")
	}
}

// Case 20: demoting a live participant through the REST API takes effect
// on the open socket within 2 s: privileged messages are refused and the
// tracks they published stop reaching the others.
func TestCase20DemotionReachesLiveSession(t *testing.T) {
	f := newMeetingFixture(t, false, nil)
	ms := f.ms
	api := peerAPI(t)
	host := newPeer(t, ms.open(t, f.host, f.room), api)
	bob := newPeer(t, ms.open(t, f.bob, f.room), api)
	audioID, videoID := bob.publish("bob")
	host.subscribe() // the host publishes nothing
	for _, id := range []string{audioID, videoID} {
		tp := host.expect("track_published", 10*time.Second)
		if tp["participant"] != bob.id {
			t.Fatalf("track_published: %v", tp["_raw"])
		}
		_ = id
	}
	waitUntil(t, 10*time.Second, "bob's media to reach the host", func() bool {
		return host.received(audioID) > 0 && host.received(videoID) > 0
	})
	bob.s.send(map[string]any{"type": "chat", "text": "hello"})
	bob.expect("chat", 5*time.Second)

	start := time.Now()
	expect(t, "demote bob", f.host.do("PUT", "/api/v1/rooms/"+f.room+"/members/bob", map[string]string{"role": rbac.RoleViewer}, nil), 200, "")
	p := bob.expect("permissions", 2*time.Second)
	if p["role"] != rbac.RoleViewer || strings.Contains(p["_raw"].(string), rbac.ActRoomPublish) {
		t.Fatalf("permissions after demotion: %v", p["_raw"])
	}
	host.expect("track_unpublished", 2*time.Second)
	host.expect("track_unpublished", 2*time.Second)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the demotion took %v to stop the tracks", d)
	}
	time.Sleep(300 * time.Millisecond) // packets in flight
	if flowing := host.flowing(time.Second); flowing[audioID] || flowing[videoID] {
		t.Errorf("bob's media still reaches the host: %v", flowing)
	}
	// A new offer that publishes is refused; a viewer still chats.
	bob.s.send(map[string]any{"type": "offer", "sdp": "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendrecv\r\na=msid:s a\r\n"})
	if e := bob.expect("error", 2*time.Second); e["code"] != "forbidden" {
		t.Fatalf("publishing after demotion: %v", e["_raw"])
	}
	if !ms.hasAudit(t, "signal.publish/denied") {
		t.Error("refused publish not audited")
	}

	// Removed from the room: kicked and closed.
	expect(t, "remove bob", f.host.do("DELETE", "/api/v1/rooms/"+f.room+"/members/bob", nil, nil), 204, "")
	bob.expect("kicked", 2*time.Second)
	host.expect("participant_left", 2*time.Second)
}

// The lobby: with it on, members and guests wait; the host admits one and
// denies another; the waiting get no media and no room traffic.
func TestLobbyAdmitDeny(t *testing.T) {
	f := newMeetingFixture(t, true, nil)
	ms := f.ms
	host := ms.open(t, f.host, f.room)
	host.join()
	rf := &roomsFixture{ts: ms.testServer, host: f.host}
	g1, g2 := ms.browser(t), ms.browser(t)
	expect(t, "guest 1", g1.post("/api/v1/invites/redeem", map[string]string{"token": token2(t, rf, f.room), "display_name": "Gwen"}), 200, "")
	expect(t, "guest 2", g2.post("/api/v1/invites/redeem", map[string]string{"token": token2(t, rf, f.room), "display_name": "Gus"}), 200, "")
	s1 := ms.open(t, g1, f.room)
	s1.send(map[string]any{"type": "join"})
	if l := s1.expect("lobby"); l["position"] != 1.0 {
		t.Fatalf("lobby: %v", l["_raw"])
	}
	s2 := ms.open(t, g2, f.room)
	s2.send(map[string]any{"type": "join"})
	s2.expect("lobby")
	a1 := host.expect("participant_joined")["participant"].(map[string]any)
	a2 := host.expect("participant_joined")["participant"].(map[string]any)
	if a1["in_lobby"] != true || a1["name"] != "Gwen" || a2["name"] != "Gus" {
		t.Fatalf("arrivals: %v %v", a1, a2)
	}
	s1.send(map[string]any{"type": "offer", "sdp": "v=0"})
	s1.expectError("in_lobby")
	host.send(map[string]any{"type": "chat", "text": "private"})
	host.expect("chat")

	host.send(map[string]any{"type": "admit", "participant": a1["id"]})
	s1.expect("admitted")
	w := s1.expect("welcome")
	if w["role"] != rbac.RoleGuest {
		t.Errorf("welcome: %v", w["_raw"])
	}
	if c := s1.expect("chat"); c["text"] != "private" {
		t.Errorf("history after admission: %v", c["_raw"])
	}
	if l := s2.expect("lobby"); l["position"] != 1.0 {
		t.Errorf("g2's position: %v", l["_raw"])
	}
	host.send(map[string]any{"type": "deny", "participant": a2["id"]})
	s2.expect("denied")
	s2.expectClose(websocket.CloseNormalClosure, 3*time.Second)
	for len(s2.msgs) > 0 {
		if m := <-s2.msgs; m["type"] == "chat" {
			t.Error("someone in the lobby received chat")
		}
	}
	if !ms.hasAudit(t, "signal.admit/success") || !ms.hasAudit(t, "signal.deny/success") {
		t.Error("lobby decisions not audited")
	}
}

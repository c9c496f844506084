package server

import (
	"testing"
	"time"
)

// The live view and moderation over REST: the host sees the meeting with
// both participants and their tracks, mutes and kicks bob (whose client is
// told), and ends the meeting; a member and an outsider are refused (403
// for the view and for a room they belong to, 404 for one they do not); a
// missing CSRF token is refused; everything is audited.
func TestLiveConsoleAPI(t *testing.T) {
	f := newMeetingFixture(t, false, nil)
	ms := f.ms
	api := peerAPI(t)
	alice := newPeer(t, ms.open(t, f.host, f.room), api)
	alice.publish("alice")
	bob := newPeer(t, ms.open(t, f.bob, f.room), api)
	bob.publish("bob")
	waitUntil(t, 10*time.Second, "alice receives bob's media", func() bool { return alice.received("video-bob") > 5 })

	var view map[string]any
	waitUntil(t, 5*time.Second, "the live view shows bob's published tracks", func() bool {
		r := f.host.get("/api/v1/admin/live")
		rooms, _ := r.body["rooms"].([]any)
		if r.status != 200 || len(rooms) != 1 {
			return false
		}
		view = rooms[0].(map[string]any)
		for _, p := range view["participants"].([]any) {
			pm := p.(map[string]any)
			if pm["id"] == bob.id {
				return len(pm["published"].([]any)) == 2 && pm["connection"] == "connected"
			}
		}
		return false
	})
	if view["id"] != f.room || len(view["participants"].([]any)) != 2 {
		t.Errorf("live room %v", view)
	}
	for _, b := range []*browser{f.bob, f.carol} {
		expect(t, "the live view of a non-moderator", b.get("/api/v1/admin/live"), 403, "forbidden")
	}
	base := "/api/v1/rooms/" + f.room
	expect(t, "bob kicks alice", f.bob.post(base+"/participants/"+alice.id+"/kick", map[string]any{}), 403, "forbidden")
	expect(t, "carol kicks alice", f.carol.post(base+"/participants/"+alice.id+"/kick", map[string]any{}), 404, "not_found")
	expect(t, "carol ends", f.carol.post(base+"/end", map[string]any{}), 404, "not_found")
	expect(t, "a kick without CSRF", f.host.do("POST", base+"/participants/"+bob.id+"/kick", map[string]any{}, map[string]string{"X-CSRF-Token": ""}), 403, "csrf")
	expect(t, "a bad kind", f.host.post(base+"/participants/"+bob.id+"/mute", map[string]string{"kind": "soul"}), 400, "invalid_kind")
	expect(t, "mute nobody", f.host.post(base+"/participants/nobody/mute", map[string]string{"kind": "audio"}), 404, "not_found")

	expect(t, "alice mutes bob", f.host.post(base+"/participants/"+bob.id+"/mute", map[string]string{"kind": "audio"}), 204, "")
	if m := bob.expect("muted", 5*time.Second); m["participant"] != bob.id || m["kind"] != "audio" {
		t.Errorf("muted %v", m)
	}
	expect(t, "alice kicks bob", f.host.post(base+"/participants/"+bob.id+"/kick", map[string]any{}), 204, "")
	bob.expect("kicked", 5*time.Second)
	expect(t, "alice ends the meeting", f.host.post(base+"/end", map[string]any{}), 204, "")
	alice.expect("ended", 5*time.Second)
	waitUntil(t, 5*time.Second, "the meeting to be gone", func() bool {
		r := f.host.get("/api/v1/admin/live")
		return r.status == 200 && len(r.body["rooms"].([]any)) == 0
	})
	expect(t, "end with nobody there", f.host.post(base+"/end", map[string]any{}), 409, "no_meeting")
	for _, e := range []string{"signal.mute/success", "signal.kick/success", "signal.end/success", "authz.denied/denied"} {
		if !ms.hasAudit(t, e) {
			t.Errorf("no audit entry %s", e)
		}
	}
}

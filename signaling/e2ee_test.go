package signaling

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parley-meet/parley/rbac"
	"github.com/parley-meet/parley/store"
)

// Public keys and wrapped keys as a browser sends them: base64url text the
// server never decodes.
const (
	annKey  = "BPr0-xH1DQ_aZ0kq1c6xN3p8J3c7UqH1c3mJv8kq0dYt2c1cWZ0n3cLq5hG9u2k1r0cV7pQ8lT3a9oR2sX4bN6M"
	bobKey  = "BAk3jN8-r2Qm5tV1c9xZ0pL7yH4dS6fG2wE8uI1oP3aT5kR7nM9bC0vX2zQ4jL6hY8gF1dS3aW5eR7tY9uI0oP2"
	wrapped = "AQzMc2V0LXZlcnNpb24tMS1pdi1hbmQtY2lwaGVydGV4dC1ub3QtcmVhZA"
)

// auditDetail reports whether the audit log holds action/outcome whose
// details contain fragment, waiting up to a second for it.
func (h *harness) auditDetail(entry, fragment string) bool {
	for deadline := time.Now().Add(time.Second); ; time.Sleep(20 * time.Millisecond) {
		found := false
		h.store.ScanAudit(context.Background(), func(r store.AuditRecord) error {
			if r.Action+"/"+r.Outcome == entry && strings.Contains(r.Details, fragment) {
				found = true
			}
			return nil
		})
		if found || time.Now().After(deadline) {
			return found
		}
	}
}

// joinWithKey joins with an e2ee_public_key and returns the welcome.
func (c *client) joinWithKey(key string) map[string]any {
	c.t.Helper()
	c.send(map[string]any{"type": "join", "e2ee_public_key": key})
	return c.expect("welcome")
}

// TestE2EEJoinAndKeys: an end-to-end encrypted meeting negotiates VP8, VP9
// and Opus only; join needs a public key, which the others receive in the
// welcome and in participant_joined; a meeting that is not encrypted
// neither asks for keys nor passes them on.
func TestE2EEJoinAndKeys(t *testing.T) {
	h := newHarness(t, nil)
	h.bind("user:ann", room1, rbac.RoleRoomMember)
	h.bind("user:bob", room1, rbac.RoleRoomMember)
	h.bind("user:ann", "plain", rbac.RoleRoomMember)
	h.bind("user:bob", "plain", rbac.RoleRoomMember)

	ann := h.dial("user:ann", room1, "e2ee")
	ann.send(map[string]any{"type": "join"})
	if m := ann.expectError(codeE2EERequired); m["request"] != typeJoin {
		t.Errorf("join without a key: %v", m)
	}
	for _, bad := range []string{"short", strings.Repeat("A", 257), "has spaces in it, which base64url has not", "BPr0+xH1DQ/aZ0kq1c6xN3p8J3c7UqH1"} {
		ann.send(map[string]any{"type": "join", "e2ee_public_key": bad})
		ann.expectError(codeInvalid)
	}
	aw := ann.joinWithKey(annKey)
	if aw["room"].(map[string]any)["e2ee"] != true {
		t.Fatalf("welcome of an end-to-end encrypted meeting: %v", aw["room"])
	}
	h.media.mu.Lock()
	opts := h.media.rooms[0].opts
	h.media.mu.Unlock()
	if !slices.Equal(opts.Codecs, []string{"video/VP8", "video/VP9", "audio/opus"}) {
		t.Errorf("the meeting's media options: %+v", opts)
	}

	bob := h.dial("user:bob", room1, "e2ee")
	bw := bob.joinWithKey(bobKey)
	ps := bw["participants"].([]any)
	if len(ps) != 1 || ps[0].(map[string]any)["e2ee_public_key"] != annKey {
		t.Errorf("bob's welcome lists %v, want ann with her key", ps)
	}
	if j := ann.expect("participant_joined")["participant"].(map[string]any); j["id"] != bw["participant_id"] || j["e2ee_public_key"] != bobKey {
		t.Errorf("participant_joined: %v", j)
	}

	// A meeting that is not end-to-end encrypted: no key needed, none passed on.
	pa := h.dial("user:ann", "plain")
	pw := pa.joinWithKey(annKey)
	if pw["room"].(map[string]any)["e2ee"] != false {
		t.Errorf("a plain meeting's welcome: %v", pw["room"])
	}
	pb := h.dial("user:bob", "plain")
	pbw := pb.join()
	if p := pbw["participants"].([]any)[0].(map[string]any); p["e2ee_public_key"] != nil {
		t.Errorf("a plain meeting passes a key on: %v", p)
	}
	h.media.mu.Lock()
	plainOpts := h.media.rooms[1].opts
	h.media.mu.Unlock()
	if plainOpts.Codecs != nil {
		t.Errorf("a plain meeting restricts codecs: %+v", plainOpts)
	}
	pa.send(map[string]any{"type": "e2ee_key", "keys": map[string]string{pbw["participant_id"].(string): wrapped}})
	pa.expectError(codeBadState)
}

// TestE2EEKeyRelay: e2ee_key reaches its recipients in the same meeting,
// from the sender the server knows, and nobody else: not a participant of
// another room's meeting, not someone in the lobby, not the sender;
// messages of the wrong shape or size are refused, and so are too many.
func TestE2EEKeyRelay(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MessageRate, c.MessageBurst, c.MaxMalformed = 200, 200, 100 })
	for _, s := range []string{"user:ann", "user:bob", "user:cid"} {
		h.bind(s, room1, rbac.RoleRoomMember)
	}
	h.bind("user:host", room1, rbac.RoleHost)
	h.bind("user:eve", "room2", rbac.RoleRoomMember)
	h.bind("guest:gus", room1, rbac.RoleGuest)

	ann := h.dial("user:ann", room1, "e2ee")
	annID := ann.joinWithKey(annKey)["participant_id"].(string)
	bob := h.dial("user:bob", room1, "e2ee")
	bobID := bob.joinWithKey(bobKey)["participant_id"].(string)
	ann.expect("participant_joined")
	eve := h.dial("user:eve", "room2", "e2ee")
	eveID := eve.joinWithKey(annKey)["participant_id"].(string)
	// A guest waits in the lobby (the meeting does not admit guests).
	gus := h.dial("guest:gus", room1, "e2ee", "noguests")
	gus.send(map[string]any{"type": "join", "e2ee_public_key": bobKey})
	gus.expect("lobby")
	host := h.dial("user:host", room1, "e2ee")
	gusID := ""
	for _, v := range host.joinWithKey(bobKey)["participants"].([]any) {
		if p := v.(map[string]any); p["in_lobby"] == true {
			gusID = p["id"].(string)
		}
	}
	if gusID == "" {
		t.Fatal("the host's welcome does not list the guest in the lobby")
	}

	ann.send(map[string]any{"type": "e2ee_key", "keys": map[string]string{bobID: wrapped, eveID: wrapped + "x", gusID: wrapped + "y", annID: wrapped + "z"}})
	if m := bob.expect("e2ee_key"); m["from"] != annID || m["key"] != wrapped || len(m) != 3 {
		t.Errorf("bob received %v", m)
	}
	if m := ann.expectError(codeNoSuch); m["request"] != typeE2EEKey {
		t.Errorf("the sender is told about the recipients not there: %v", m)
	}
	// Nothing reached eve (another room), gus (the lobby) or ann herself.
	for name, c := range map[string]*client{"eve": eve, "gus": gus, "ann": ann} {
		c.send(`{"type":"no_such_type"}`)
		for {
			m := c.expect2()
			if m["type"] == "e2ee_key" {
				t.Errorf("%s received a key not meant for them: %v", name, m)
			}
			if m["type"] == "error" && m["code"] == codeUnknownType {
				break
			}
		}
	}
	// The lobby may not send keys either.
	gus.send(map[string]any{"type": "e2ee_key", "keys": map[string]string{annID: wrapped}})
	gus.expectError(codeInLobby)

	// Shapes and sizes.
	many := map[string]string{}
	for i := 0; i < maxKeyRecipients+1; i++ {
		many["p"+strings.Repeat("x", i%40)+string(rune('a'+i%26))+string(rune('A'+i/26))] = wrapped
	}
	for _, c := range []struct {
		msg  any
		code string
	}{
		{map[string]any{"type": "e2ee_key"}, codeBadMessage},
		{map[string]any{"type": "e2ee_key", "keys": map[string]string{}}, codeBadMessage},
		{map[string]any{"type": "e2ee_key", "keys": map[string]string{bobID: strings.Repeat("A", maxWrappedKeyChars+1)}}, codeInvalid},
		{map[string]any{"type": "e2ee_key", "keys": map[string]string{bobID: "not base64url!"}}, codeInvalid},
		{map[string]any{"type": "e2ee_key", "keys": map[string]string{bobID: "short"}}, codeInvalid},
		{map[string]any{"type": "e2ee_key", "keys": map[string]any{bobID: 7}}, codeBadMessage},
		{map[string]any{"type": "e2ee_key", "keys": map[string]string{"../" + bobID: wrapped}}, codeBadMessage},
		{map[string]any{"type": "e2ee_key", "keys": map[string]string{bobID: wrapped}, "from": bobID}, codeBadMessage},
		{map[string]any{"type": "e2ee_key", "keys": map[string]any{bobID: map[string]string{"k": wrapped}}}, codeBadMessage},
		{map[string]any{"type": "e2ee_key", "keys": many}, codeInvalid},
	} {
		ann.send(c.msg)
		ann.expectError(c.code)
	}

	// The rate: a burst, then refusals.
	for i := 0; i < e2eeKeyBurst+5; i++ {
		ann.send(map[string]any{"type": "e2ee_key", "keys": map[string]string{bobID: wrapped}})
	}
	ann.send(`{"type":"no_such_type"}`)
	limited := 0
	for {
		m := ann.expect2()
		if m["type"] == "error" && m["code"] == codeRateLimited && m["request"] == typeE2EEKey {
			limited++
		}
		if m["type"] == "error" && m["code"] == codeUnknownType {
			break
		}
	}
	if limited == 0 {
		t.Error("e2ee_key is not rate-limited")
	}
}

// expect2 waits for the next message, whatever its type.
func (c *client) expect2() map[string]any {
	c.t.Helper()
	select {
	case m, ok := <-c.msgs:
		if !ok {
			c.t.Fatal("socket closed")
		}
		return m
	case <-time.After(3 * time.Second):
		c.t.Fatal("no message within 3 s")
	}
	return nil
}

// TestE2EERecordingRefused: recording an end-to-end encrypted meeting is
// refused, over the socket and through SetRecording, with a clear message;
// the recorder is never asked; the refusal is audited.
func TestE2EERecordingRefused(t *testing.T) {
	rec := &fakeRecorder{}
	h := newHarness(t, func(c *Config) { c.Recorder = rec })
	h.bind("user:host", room1, rbac.RoleHost)
	h.bind("user:ann", room1, rbac.RoleRoomMember)
	host := h.dial("user:host", room1, "e2ee")
	host.joinWithKey(annKey)
	ann := h.dial("user:ann", room1, "e2ee")
	ann.joinWithKey(bobKey)

	ann.send(map[string]any{"type": "record", "action": "start"})
	ann.expectError(codeForbidden) // rights first: a member may not record anyway

	host.send(map[string]any{"type": "record", "action": "start"})
	m := host.expectError(codeE2EERoom)
	if msg, _ := m["message"].(string); !strings.Contains(msg, "end-to-end encrypted") || m["request"] != typeRecord {
		t.Errorf("the refusal: %v", m)
	}
	if err := h.hub.SetRecording(room1, true, "user:host", "127.0.0.1"); !errors.Is(err, ErrRecordingE2EE) {
		t.Errorf("SetRecording: %v", err)
	}
	if len(rec.log()) != 0 || h.hub.Recording(room1) {
		t.Errorf("the recorder was asked: %v", rec.log())
	}
	if !h.auditDetail("recording.start/denied", `"reason":"e2ee"`) {
		t.Error("the refusal is not audited")
	}
}

// TestE2EEModeFixedPerMeeting: a meeting keeps the mode it started with;
// when the room's setting no longer matches (a change racing a meeting's
// start), the meeting ends (audited) and the next one starts in the
// room's mode.
func TestE2EEModeFixedPerMeeting(t *testing.T) {
	h := newHarness(t, nil)
	h.bind("user:ann", room1, rbac.RoleRoomMember)
	h.bind("user:bob", room1, rbac.RoleRoomMember)
	ann := h.dial("user:ann", room1)
	ann.join()
	if !h.hub.MeetingInProgress(room1) || h.hub.MeetingInProgress("room2") {
		t.Fatal("MeetingInProgress")
	}
	// A socket whose room read says e2ee arrives at the plain meeting.
	bob := h.dial("user:bob", room1, "e2ee")
	ann.expect("ended")
	bw := bob.joinWithKey(bobKey)
	if bw["room"].(map[string]any)["e2ee"] != true || len(bw["participants"].([]any)) != 0 {
		t.Errorf("bob's welcome after the mode changed: %v", bw)
	}
	if !h.auditDetail("signal.end/success", "e2ee setting changed") {
		t.Error("the ended meeting is not audited")
	}
	// The setting goes back while bob meets: RoomChanged ends his meeting.
	h.hub.RoomChanged(RoomInfo{ID: room1, Name: "Room", GuestsAllowed: true})
	bob.expect("ended")
	if h.hub.MeetingInProgress(room1) {
		t.Error("the meeting is still in progress after it ended")
	}
	// A change that keeps the mode keeps the meeting.
	c := h.dial("user:ann", room1)
	c.join()
	h.hub.RoomChanged(RoomInfo{ID: room1, Name: "Renamed", GuestsAllowed: true})
	c.send(map[string]any{"type": "raise_hand", "raised": true})
	if m := c.expect("hand"); m["raised"] != true {
		t.Errorf("after a rename: %v", m)
	}
}

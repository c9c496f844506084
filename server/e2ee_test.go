package server

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/parley-meet/parley/store"
)

// auditDetails returns the details of every audit entry action/outcome.
func (ts *testServer) auditDetails(t *testing.T, entry string) []string {
	t.Helper()
	var out []string
	ts.store.ScanAudit(context.Background(), func(r store.AuditRecord) error {
		if r.Action+"/"+r.Outcome == entry {
			out = append(out, r.Details)
		}
		return nil
	})
	return out
}

func anyContains(list []string, s string) bool {
	for _, v := range list {
		if strings.Contains(v, s) {
			return true
		}
	}
	return false
}

// TestE2EERoomSetting: the e2ee setting of a room, through the REST API:
// set at creation and by hosts only, validated, shown in the room view,
// the console's room list and live view; it changes only while nobody
// meets (409 otherwise, nothing changed); a meeting of the room is
// end-to-end encrypted (the welcome says so, join needs a key); recording
// it is refused over REST and over the socket with a clear message; every
// change and refusal is audited.
func TestE2EERoomSetting(t *testing.T) {
	ms := startRecordingServer(t, nil)
	f := fixtureOn(t, ms, false)
	base := "/api/v1/rooms/" + f.room

	// Created encrypted, shown so.
	r := f.host.post("/api/v1/rooms", map[string]any{"name": "Sealed", "e2ee": true})
	expect(t, "create an end-to-end encrypted room", r, 201, "")
	if r.body["e2ee"] != true {
		t.Errorf("the new room's view: %s", r.raw)
	}
	if !anyContains(ms.auditDetails(t, "room.create/success"), `"e2ee":true`) {
		t.Error("room.create does not record e2ee")
	}
	expect(t, "e2ee of the wrong type", f.host.do("PATCH", base, map[string]any{"e2ee": "yes"}, nil), 400, "")
	expect(t, "a member switches e2ee", f.bob.do("PATCH", base, map[string]any{"e2ee": true}, nil), 403, "forbidden")
	expect(t, "an outsider switches e2ee", f.carol.do("PATCH", base, map[string]any{"e2ee": true}, nil), 404, "not_found")
	if v := f.bob.get(base); v.body["room"].(map[string]any)["e2ee"] != false {
		t.Fatalf("after refused changes: %s", v.raw)
	}

	// The host turns it on between meetings.
	r = f.host.do("PATCH", base, map[string]any{"e2ee": true}, nil)
	expect(t, "the host turns e2ee on", r, 200, "")
	if r.body["e2ee"] != true {
		t.Errorf("the updated view: %s", r.raw)
	}
	if !anyContains(ms.auditDetails(t, "room.update/success"), `"e2ee":true`) {
		t.Error("the change is not audited with e2ee")
	}
	list := f.host.get("/api/v1/rooms")
	found := false
	for _, v := range list.body["rooms"].([]any) {
		if m := v.(map[string]any); m["id"] == f.room {
			found = m["e2ee"] == true
		}
	}
	if !found {
		t.Errorf("the rooms list does not show the room as end-to-end encrypted: %s", list.raw)
	}

	// A meeting of the room is end-to-end encrypted.
	sock := ms.open(t, f.host, f.room)
	sock.send(map[string]any{"type": "join"})
	sock.expectError("e2ee_required")
	sock.send(map[string]any{"type": "join", "e2ee_public_key": "BPr0-xH1DQ_aZ0kq1c6xN3p8J3c7UqH1c3mJv8kq0dYt"})
	w := sock.expect("welcome")
	if w["room"].(map[string]any)["e2ee"] != true {
		t.Fatalf("the welcome: %v", w["room"])
	}
	waitUntil(t, 5*time.Second, "the live view shows the meeting as end-to-end encrypted", func() bool {
		lv := f.host.get("/api/v1/admin/live")
		rooms, _ := lv.body["rooms"].([]any)
		return len(rooms) == 1 && rooms[0].(map[string]any)["e2ee"] == true
	})

	// While people meet, the setting stays.
	expect(t, "turning e2ee off during a meeting", f.host.do("PATCH", base, map[string]any{"e2ee": false, "name": "Renamed"}, nil), 409, "meeting_in_progress")
	if v := f.host.get(base); v.body["room"].(map[string]any)["e2ee"] != true || v.body["room"].(map[string]any)["name"] != "Weekly" {
		t.Errorf("a refused change changed the room: %s", v.raw)
	}
	if !anyContains(ms.auditDetails(t, "room.update/failure"), "meeting in progress") {
		t.Error("the refused change is not audited")
	}
	// Other settings still change, and the same value is no change.
	expect(t, "a rename during the meeting", f.host.do("PATCH", base, map[string]any{"name": "Renamed", "e2ee": true}, nil), 200, "")

	// Recording is refused.
	recPath := base + "/recording"
	rr := f.host.post(recPath, map[string]string{"action": "start"})
	expect(t, "recording over REST", rr, 409, "e2ee_room")
	if !strings.Contains(rr.str("message"), "end-to-end encrypted") {
		t.Errorf("the REST refusal says %q", rr.str("message"))
	}
	expect(t, "a member records", f.bob.post(recPath, map[string]string{"action": "start"}), 403, "forbidden")
	sock.send(map[string]any{"type": "record", "action": "start"})
	if m := sock.expectError("e2ee_room"); !strings.Contains(m["message"].(string), "cannot record") {
		t.Errorf("the socket's refusal: %v", m)
	}
	if n := len(ms.auditDetails(t, "recording.start/denied")); n < 2 {
		t.Errorf("%d recording.start/denied entries, want one per refusal", n)
	}
	if r := f.host.get("/api/v1/recordings"); len(r.body["recordings"].([]any)) != 0 {
		t.Errorf("a recording exists: %s", r.raw)
	}

	// After the meeting, the host may turn it off again.
	sock.send(map[string]any{"type": "leave"})
	waitUntil(t, 5*time.Second, "the meeting to end", func() bool { return !ms.hub.MeetingInProgress(f.room) })
	expect(t, "turning e2ee off after the meeting", f.host.do("PATCH", base, map[string]any{"e2ee": false}, nil), 200, "")
	if !anyContains(ms.auditDetails(t, "room.update/success"), `"e2ee":false`) {
		t.Error("turning it off is not audited")
	}
}

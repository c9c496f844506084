package server

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parley-meet/parley/rbac"
)

// The recording portal's API over a real meeting: only room.record
// starts a recording; the host's recording is invisible (404) to people
// without a right; the media is served decrypted with the right headers
// and byte ranges; a share lets one person view (not download, not
// delete) until it is revoked; a flipped byte in the file is refused with
// 500 and audited; delete removes file and entry. Cases 23, 36, 41.
func TestRecordingPortalAPI(t *testing.T) {
	ms := startRecordingServer(t, nil)
	f := fixtureOn(t, ms, false)
	api := peerAPI(t)
	alice := newPeer(t, ms.open(t, f.host, f.room), api)
	alice.publish("alice")
	recPath := "/api/v1/rooms/" + f.room + "/recording"

	// bob (a member) may not record; nothing appears.
	expect(t, "bob starts a recording", f.bob.post(recPath, map[string]string{"action": "start"}), 403, "forbidden")
	expect(t, "carol starts a recording", f.carol.post(recPath, map[string]string{"action": "start"}), 404, "not_found")
	expect(t, "a bad action", f.host.post(recPath, map[string]string{"action": "pause"}), 400, "invalid_action")
	if r := f.host.get("/api/v1/recordings"); r.status != 200 || len(r.body["recordings"].([]any)) != 0 {
		t.Fatalf("recordings after refused starts: %d %s", r.status, r.raw)
	}
	if entries, _ := os.ReadDir(ms.recDir); len(entries) != 0 {
		t.Fatalf("files in the recordings directory after refused starts: %v", entries)
	}

	// alice records about three seconds.
	expect(t, "alice starts", f.host.post(recPath, map[string]string{"action": "start"}), 200, "")
	if m := alice.expect("room_state", 5*time.Second); m["recording"] != true {
		t.Fatalf("room_state %v", m)
	}
	if r := f.bob.get("/api/v1/rooms/" + f.room); r.body["room"].(map[string]any)["recording"] != true {
		t.Errorf("the room view does not say it is recording: %s", r.raw)
	}
	expect(t, "alice starts again", f.host.post(recPath, map[string]string{"action": "start"}), 409, "recording_state")
	time.Sleep(3 * time.Second)
	expect(t, "alice stops", f.host.post(recPath, map[string]string{"action": "stop"}), 200, "")

	list := f.host.get("/api/v1/recordings")
	recs, _ := list.body["recordings"].([]any)
	if list.status != 200 || len(recs) != 1 {
		t.Fatalf("alice's recordings: %d %s", list.status, list.raw)
	}
	rec := recs[0].(map[string]any)
	id := rec["id"].(string)
	tracks := rec["tracks"].([]any)
	if rec["status"] != "complete" || rec["room_name"] != "Weekly" || len(tracks) != 1 || len(id) < 22 {
		t.Fatalf("recording %s", list.raw)
	}
	track := tracks[0].(map[string]any)
	if track["kind"] != "av" || track["participant_name"] != "alice" || !strings.Contains(strings.Join(anyStrings(track["codecs"]), ","), "video/VP8") {
		t.Errorf("track %v", track)
	}
	if d := track["duration_s"].(float64); d < 2 || d > 4.5 {
		t.Errorf("the track lasts %v s, want about 3", d)
	}
	media := "/api/v1/recordings/" + id + "/tracks/" + track["id"].(string) + "/media"

	// Case 23: without a right, a recording does not exist.
	for _, b := range []*browser{f.bob, f.carol} {
		expect(t, "another user's recording", b.get("/api/v1/recordings/"+id), 404, "not_found")
		expect(t, "another user's media", b.get(media), 404, "not_found")
		expect(t, "another user deletes", b.do("DELETE", "/api/v1/recordings/"+id, nil, nil), 404, "not_found")
		if r := b.get("/api/v1/recordings"); len(r.body["recordings"].([]any)) != 0 {
			t.Errorf("another user lists %s", r.raw)
		}
	}
	expect(t, "an unknown id", f.host.get("/api/v1/recordings/AAAAAAAAAAAAAAAAAAAAAA"), 404, "not_found")

	// Case 36 and ranges.
	full := f.host.get(media)
	if full.status != 200 || !bytes.HasPrefix(full.raw, []byte{0x1a, 0x45, 0xdf, 0xa3}) || len(full.raw) < 1000 {
		t.Fatalf("media: %d, %d bytes, starts % x", full.status, len(full.raw), full.raw[:min(8, len(full.raw))])
	}
	h := full.header
	if h.Get("Content-Type") != "video/webm" || h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Cache-Control") != "no-store" ||
		h.Get("Accept-Ranges") != "bytes" || !strings.HasPrefix(h.Get("Content-Disposition"), `inline; filename="parley-`) {
		t.Errorf("media headers %v", h)
	}
	dl := f.host.do("GET", media+"?download=1", nil, nil)
	cd := dl.header.Get("Content-Disposition")
	if dl.status != 200 || !strings.HasPrefix(cd, `attachment; filename="parley-`) || !strings.HasSuffix(cd, `.webm"`) ||
		strings.ContainsAny(strings.TrimSuffix(strings.TrimPrefix(cd, `attachment; filename="`), `"`), "\"/\\ ;") || !bytes.Equal(dl.raw, full.raw) {
		t.Errorf("download: %d %q", dl.status, cd)
	}
	size := len(full.raw)
	for _, c := range []struct {
		rng        string
		from, to   int // expected bytes [from, to)
		contentRng string
	}{
		{"bytes=10-19", 10, 20, "bytes 10-19/"},
		{"bytes=-5", size - 5, size, "bytes " + itoa(size-5) + "-" + itoa(size-1) + "/"},
		{"bytes=" + itoa(size-3) + "-", size - 3, size, "bytes " + itoa(size-3) + "-" + itoa(size-1) + "/"},
		{"bytes=100-99999999", 100, size, "bytes 100-" + itoa(size-1) + "/"},
	} {
		r := f.host.do("GET", media, nil, map[string]string{"Range": c.rng})
		if r.status != http.StatusPartialContent || !bytes.Equal(r.raw, full.raw[c.from:c.to]) ||
			r.header.Get("Content-Range") != c.contentRng+itoa(size) {
			t.Errorf("Range %s: %d, %d bytes, Content-Range %q", c.rng, r.status, len(r.raw), r.header.Get("Content-Range"))
		}
	}
	if r := f.host.do("GET", media, nil, map[string]string{"Range": "bytes=" + itoa(size) + "-"}); r.status != 416 || r.header.Get("Content-Range") != "bytes */"+itoa(size) {
		t.Errorf("a range past the end: %d %q", r.status, r.header.Get("Content-Range"))
	}

	// Shares: bob may view until it is revoked; nothing more.
	expect(t, "share with nobody", f.host.post("/api/v1/recordings/"+id+"/shares", map[string]any{"username": "zed", "expires_in_s": 3600}), 404, "unknown_user")
	expect(t, "share for a second", f.host.post("/api/v1/recordings/"+id+"/shares", map[string]any{"username": "bob", "expires_in_s": 1}), 400, "invalid_expiry")
	expect(t, "share with bob", f.host.post("/api/v1/recordings/"+id+"/shares", map[string]any{"username": "bob", "expires_in_s": 3600}), 201, "")
	bobView := f.bob.get("/api/v1/recordings/" + id)
	if bobView.status != 200 || strings.Join(anyStrings(bobView.body["recording"].(map[string]any)["permissions"]), ",") != rbac.ActRecordingView {
		t.Fatalf("bob's view of the shared recording: %d %s", bobView.status, bobView.raw)
	}
	if r := f.bob.get(media); r.status != 200 || !bytes.Equal(r.raw, full.raw) {
		t.Errorf("bob plays the shared recording: %d", r.status)
	}
	expect(t, "bob downloads", f.bob.get(media+"?download=1"), 403, "forbidden")
	expect(t, "bob deletes", f.bob.do("DELETE", "/api/v1/recordings/"+id, nil, nil), 403, "forbidden")
	expect(t, "bob shares on", f.bob.post("/api/v1/recordings/"+id+"/shares", map[string]any{"username": "carol", "expires_in_s": 3600}), 403, "forbidden")
	expect(t, "carol still sees nothing", f.carol.get("/api/v1/recordings/"+id), 404, "not_found")
	expect(t, "unshare", f.host.do("DELETE", "/api/v1/recordings/"+id+"/shares/bob", nil, nil), 204, "")
	expect(t, "unshare again", f.host.do("DELETE", "/api/v1/recordings/"+id+"/shares/bob", nil, nil), 404, "not_found")
	expect(t, "bob after the unshare", f.bob.get("/api/v1/recordings/"+id), 404, "not_found")

	// Case 41: a flipped byte is refused, with nothing of the file.
	files, _ := filepath.Glob(filepath.Join(ms.recDir, "*"))
	if len(files) != 1 {
		t.Fatalf("recording files %v", files)
	}
	ct, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(ct, full.raw[len(full.raw)/2:len(full.raw)/2+64]) {
		t.Error("the file on disk contains plaintext of the recording")
	}
	ct[len(ct)/2] ^= 0x01
	if err := os.WriteFile(files[0], ct, 0o600); err != nil {
		t.Fatal(err)
	}
	bad := f.host.get(media)
	if bad.status != 500 || bad.body["error"] != "integrity" || bytes.Contains(bad.raw, []byte{0x1a, 0x45, 0xdf, 0xa3}) {
		t.Errorf("a flipped byte: %d %s", bad.status, bad.raw[:min(200, len(bad.raw))])
	}

	expect(t, "alice deletes", f.host.do("DELETE", "/api/v1/recordings/"+id, nil, nil), 204, "")
	expect(t, "after the delete", f.host.get("/api/v1/recordings/"+id), 404, "not_found")
	if files, _ := filepath.Glob(filepath.Join(ms.recDir, "*")); len(files) != 0 {
		t.Errorf("files left after the delete: %v", files)
	}
	for _, e := range []string{"authz.denied/denied", "recording.start/success", "recording.stop/success", "recording.view/success",
		"recording.download/success", "recording.share/success", "recording.unshare/success", "recording.integrity/failure",
		"recording.delete/success"} {
		if !ms.hasAudit(t, e) {
			t.Errorf("no audit entry %s", e)
		}
	}
}

func anyStrings(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

func itoa(n int) string { return strconv.Itoa(n) }

package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestRecordingPortal: a host and a member meet; the host starts recording
// from the meeting page and the member's page shows the indicator; the
// host stops it, opens the recording portal, plays the recording (the
// video's currentTime advances) and shares it with the member, who then
// finds it in their own list. The member could not see it before.
func TestRecordingPortal(t *testing.T) {
	parleyBin, chromium := environment(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)

	srv := startParley(ctx, t, parleyBin, meetingServerFlags...)
	host, member := browserPage(ctx, t, chromium), browserPage(ctx, t, chromium)
	hostAcct := account{username: "rosa.recorder", displayName: "Rosa Recorder", password: "violet anchor tundra 5521"}
	memberAcct := account{username: "milo.member", displayName: "Milo Member", password: "copper meadow lantern 7340"}
	roomID := hostAndMember(ctx, srv, host, member, hostAcct, memberAcct, "Recorded review")
	// The member was made by another process (parley user add) while the
	// server ran: its global role reaches the server within seconds, and
	// the member may create rooms.
	member.watcher.allowHTTPError("/api/v1/rooms", 403) // until the policy is refreshed
	waitUntil(member, "the member may create a room", 15*time.Second, func() bool {
		status, _ := pageAPI(member, "POST", "/api/v1/rooms", map[string]any{"name": "Milo's own", "lobby": false, "guests_allowed": false})
		return status == 201
	})

	installRecorder(host)
	installRecorder(member)
	host.do("open the meeting", chromedp.Navigate(srv.publicURL+"/rooms/"+roomID))
	member.do("open the meeting", chromedp.Navigate(srv.publicURL+"/rooms/"+roomID))
	joinMeeting(host, "host", hostAcct.displayName, true)
	joinMeeting(member, "member", memberAcct.displayName, true)
	hostID, memberID := selfID(host), selfID(member)
	expectDecodes(member, "member", host, "host", hostID)
	expectDecodes(host, "host", member, "member", memberID)

	// The member has no record button; the host has.
	if eval[bool](member, "member: look for the record button", `!document.getElementById('toggle-recording').hidden`) {
		t.Error("the member's page offers to record")
	}
	host.do("host: start recording", chromedp.WaitVisible(chromedp.ID("toggle-recording")), chromedp.Click(chromedp.ID("toggle-recording")))
	start := time.Now()
	member.waitTrue("member: the recording indicator shows", `!document.getElementById('recording-indicator').hidden`)
	host.waitTrue("host: the recording indicator shows", `!document.getElementById('recording-indicator').hidden`)
	t.Logf("the member's page showed the indicator %v after the click", time.Since(start).Round(10*time.Millisecond))
	host.waitTrue("host: the button offers to stop", `document.getElementById('toggle-recording').getAttribute('aria-pressed') === 'true' && !document.getElementById('toggle-recording').disabled`)
	time.Sleep(4 * time.Second) // something to record
	host.do("host: stop recording", chromedp.Click(chromedp.ID("toggle-recording")))
	member.waitTrue("member: the indicator goes", `document.getElementById('recording-indicator').hidden`)

	// The member sees no recording yet.
	before := evalAwait[string](member, "member: list recordings", `(async () => (await fetch('/api/v1/recordings', {cache: 'no-store'})).text())()`)
	if !strings.Contains(before, `"recordings":[]`) {
		t.Fatalf("the member's recordings before the share: %s", before)
	}

	// The host plays it in the portal.
	host.do("host: open the portal", chromedp.Navigate(srv.publicURL+"/recordings"),
		chromedp.WaitVisible(chromedp.CSS(`#recordings-list li[data-recording-id] a.recording-link`)))
	recID := eval[string](host, "read the recording id", `document.querySelector('#recordings-list li[data-recording-id]').dataset.recordingId`)
	host.do("host: open the recording",
		chromedp.Click(chromedp.CSS(`#recordings-list li[data-recording-id] a.recording-link`)),
		chromedp.WaitVisible(chromedp.CSS(`video.recording-player[data-track-id]`)))
	tracks := eval[int](host, "count the players", `document.querySelectorAll('video.recording-player[data-track-id]').length`)
	if tracks < 2 {
		t.Errorf("%d video players, want one per participant (2)", tracks)
	}
	evalAwait[bool](host, "host: play the first track", `(async () => {
		const v = document.querySelector('video.recording-player[data-track-id]');
		v.muted = true;
		await v.play();
		return true;
	})()`)
	waitUntil(host, "the recording plays (currentTime advances past 1 s)", 20*time.Second, func() bool {
		return eval[float64](host, "read currentTime", `document.querySelector('video.recording-player[data-track-id]').currentTime`) > 1
	})
	dims := eval[map[string]float64](host, "read the video size", `(() => { const v = document.querySelector('video.recording-player[data-track-id]'); return {w: v.videoWidth, h: v.videoHeight}; })()`)
	t.Logf("the recording plays, %vx%v", dims["w"], dims["h"])
	if dims["w"] == 0 {
		t.Error("the played recording has no picture")
	}

	// Share it with the member until tomorrow.
	tomorrow := time.Now().Add(24 * time.Hour).Format("2006-01-02")
	host.do("host: share with the member",
		chromedp.SendKeys(chromedp.ID("share-username"), memberAcct.username),
		chromedp.SetValue(chromedp.ID("share-until"), tomorrow),
		chromedp.Click(chromedp.ID("share-submit")),
		chromedp.WaitVisible(chromedp.CSS(`#shares-list li[data-username=`+js(memberAcct.username)+`]`)))

	member.do("member: open the portal", chromedp.Navigate(srv.publicURL+"/recordings"),
		chromedp.WaitVisible(chromedp.CSS(`#recordings-list li[data-recording-id=`+js(recID)+`]`)))
	memberView := evalAwait[map[string]any](member, "member: read the recording", `(async () => {
		const r = await fetch('/api/v1/recordings/`+recID+`', {cache: 'no-store'});
		return {status: r.status, body: await r.json()};
	})()`)
	rec, _ := memberView["body"].(map[string]any)["recording"].(map[string]any)
	if memberView["status"].(float64) != 200 || rec == nil || rec["shared_with_me"] == nil {
		t.Fatalf("the member's view of the shared recording: %v", memberView)
	}
	perms, _ := rec["permissions"].([]any)
	if len(perms) != 1 || perms[0] != "recording.view" {
		t.Errorf("the member may %v with a share, want only recording.view", perms)
	}
	for _, p := range []*page{host, member} {
		p.watcher.check(t, "recording portal")
	}
}

// TestRecordingSurvivesKill: the server is killed (SIGKILL) while it
// records; after a restart the recording is listed as incomplete and its
// file plays up to the last chunk that was completely written.
func TestRecordingSurvivesKill(t *testing.T) {
	parleyBin, chromium := environment(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)

	srv := startParley(ctx, t, parleyBin, meetingServerFlags...)
	host := browserPage(ctx, t, chromium)
	hostAcct := account{username: "kim.killed", displayName: "Kim Killed", password: "harbor pepper violin 6613"}
	setUpFirstAdmin(ctx, host, srv, hostAcct)
	roomID := createRoom(host, "Crash course")
	installRecorder(host)
	host.do("open the meeting", chromedp.Navigate(srv.publicURL+"/rooms/"+roomID))
	joinMeeting(host, "host", hostAcct.displayName, true)
	selfID(host)
	if status, body := pageAPI(host, "POST", "/api/v1/rooms/"+roomID+"/recording", map[string]string{"action": "start"}); status != 200 {
		t.Fatalf("starting the recording: %d %s", status, body)
	}
	host.waitTrue("the recording indicator shows", `!document.getElementById('recording-indicator').hidden`)
	host.watcher.check(t, "before the crash")
	time.Sleep(6 * time.Second) // several 64 KiB chunks of camera and microphone

	srv.kill()
	srv = srv.restart(ctx, t)
	host.do("open the portal after the restart", chromedp.Navigate(srv.publicURL+"/recordings"),
		chromedp.WaitVisible(chromedp.CSS(`#recordings-list li[data-recording-id][data-status="incomplete"]`)))
	got := evalAwait[map[string]any](host, "read the recording and its media", `(async () => {
		const list = await (await fetch('/api/v1/recordings', {cache: 'no-store'})).json();
		const rec = list.recordings[0];
		const track = rec.tracks[0];
		const r = await fetch('/api/v1/recordings/' + rec.id + '/tracks/' + track.id + '/media', {cache: 'no-store'});
		const bytes = new Uint8Array(await r.arrayBuffer());
		return {status: rec.status, track_size: track.size, media_status: r.status, length: bytes.length,
			magic: Array.from(bytes.slice(0, 4)), recordings: list.recordings.length};
	})()`)
	t.Logf("after the crash: %v", got)
	magic, _ := got["magic"].([]any)
	if got["recordings"].(float64) != 1 || got["status"] != "incomplete" || got["media_status"].(float64) != 200 ||
		got["length"].(float64) < 1000 || len(magic) != 4 || magic[0].(float64) != 0x1a || magic[1].(float64) != 0x45 {
		t.Fatalf("the recording after the crash: %v", got)
	}
}

// browserPage starts a Chromium for one person and returns its page.
func browserPage(ctx context.Context, t *testing.T, chromium string) *page {
	t.Helper()
	b := startBrowser(ctx, t, chromium)
	return &page{t: t, ctx: b.ctx, watcher: b.watcher}
}

// createRoom makes a room without a lobby from p's session and returns
// its id.
func createRoom(p *page, name string) string {
	p.t.Helper()
	status, body := pageAPI(p, "POST", "/api/v1/rooms", map[string]any{"name": name, "lobby": false, "guests_allowed": false})
	if status != 201 {
		p.t.Fatalf("creating the room: %d %s", status, body)
	}
	var room struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(body), &room); err != nil || room.ID == "" {
		p.t.Fatalf("room view %s: %v", body, err)
	}
	return room.ID
}

// hostAndMember sets up two people: the host, the first administrator
// (through the setup link), and a member made by the operator who signs
// in; and a room without a lobby, host's, where the member is a member.
// It returns the room id.
func hostAndMember(ctx context.Context, srv *parleyServer, host, member *page, hostAcct, memberAcct account, roomName string) string {
	host.t.Helper()
	setUpFirstAdmin(ctx, host, srv, hostAcct)
	srv.addUserWithPassword(ctx, host.t, memberAcct)
	signInFirstTime(ctx, member, srv, memberAcct)
	room := createRoom(host, roomName)
	if status, body := pageAPI(host, "PUT", "/api/v1/rooms/"+room+"/members/"+memberAcct.username, map[string]string{"role": "member"}); status != 200 {
		host.t.Fatalf("adding the member: %d %s", status, body)
	}
	return room
}

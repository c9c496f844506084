package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// recorderScript is added to every document of the meeting tabs through
// the DevTools protocol (Page.addScriptToEvaluateOnNewDocument), before the
// page's own modules run. It keeps every RTCPeerConnection the page makes
// in window.__e2e.pcs, so that the test can read getStats() and, on the
// viewer's page, add a track to the page's own connection the way a
// modified client would; and every WebSocket in window.__e2e.sockets, so
// that it can cut the signaling connection. The product ships no test hook: this script exists
// only in the test's browsers, and the page's CSP does not apply to it.
const recorderScript = `(() => {
	const Native = window.RTCPeerConnection;
	if (typeof Native !== 'function' || window.__e2e) return;
	const pcs = [];
	class Recorded extends Native {
		constructor(...args) {
			super(...args);
			pcs.push(this);
		}
	}
	window.RTCPeerConnection = Recorded;
	const NativeWS = window.WebSocket;
	const sockets = [];
	class RecordedWS extends NativeWS {
		constructor(...args) {
			super(...args);
			sockets.push(this);
		}
	}
	window.WebSocket = RecordedWS;
	Object.defineProperty(window, '__e2e', { value: Object.freeze({ pcs, sockets }) });
})();`

// livePC is a JavaScript expression for the page's open RTCPeerConnection.
const livePC = `[...window.__e2e.pcs].reverse().find(pc => pc.connectionState !== 'closed')`

// installRecorder adds recorderScript to every later document of p's tab.
func installRecorder(p *page) {
	p.t.Helper()
	p.do("install the RTCPeerConnection recorder", chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, cdppage.AddScriptToEvaluateOnNewDocument,
			cdppage.AddScriptToEvaluateOnNewDocumentParams{Source: recorderScript})
		return err
	}))
}

// evalAwait evaluates an expression whose value is a promise and decodes
// what it resolves to.
func evalAwait[T any](p *page, step, expr string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		p.fatal(step, err)
	}
	return v
}

// pageAPI calls Parley's API from the page with its session cookie and a
// fresh CSRF token from /api/v1/me, as the pages do, and returns the
// status and the body.
func pageAPI(p *page, method, path string, body any) (int, string) {
	p.t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		p.t.Fatal(err)
	}
	res := evalAwait[map[string]any](p, method+" "+path, `(async () => {
		const me = await (await fetch('/api/v1/me', {cache: 'no-store'})).json();
		const r = await fetch(`+js(path)+`, {
			method: `+js(method)+`,
			headers: {'Content-Type': 'application/json', 'X-CSRF-Token': me.csrf_token},
			body: `+js(string(b))+`,
		});
		return {status: r.status, body: await r.text()};
	})()`)
	status, _ := res["status"].(float64)
	text, _ := res["body"].(string)
	return int(status), text
}

// waitUntil polls cond every 100 ms until it holds or timeout passes, and
// fails the test with what the page shows otherwise.
func waitUntil(p *page, step string, timeout time.Duration, cond func() bool) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			p.fatal(step, fmt.Errorf("not within %v", timeout))
		}
		select {
		case <-p.ctx.Done():
			p.fatal(step, p.ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// tileSel is the CSS selector of a participant's tile in the grid.
func tileSel(participantID string) string {
	return `#grid .tile[data-participant-id=` + js(participantID) + `]`
}

// framesDecoded is the number of frames the page decoded of the camera
// video it shows in participantID's tile, from the inbound-rtp statistics
// of its RTCPeerConnection for that video's track (0 when there is none).
func framesDecoded(p *page, participantID string) int {
	p.t.Helper()
	return evalAwait[int](p, "read framesDecoded", `(async () => {
		const v = document.querySelector(`+js(tileSel(participantID)+` video[data-track-id]`)+`);
		const track = v && v.srcObject && v.srcObject.getVideoTracks()[0];
		const pc = `+livePC+`;
		if (!track || !pc) return 0;
		let n = 0;
		(await pc.getStats()).forEach(s => {
			if (s.type === 'inbound-rtp' && s.kind === 'video' && s.trackIdentifier === track.id) n = Math.max(n, s.framesDecoded || 0);
		});
		return n;
	})()`)
}

// expectDecodes waits until p decoded more than 30 frames of who's camera;
// pub is who's page, described when the wait fails.
func expectDecodes(p *page, viewer string, pub *page, who, whoID string) {
	p.t.Helper()
	start := time.Now()
	last := 0
	deadline := start.Add(45 * time.Second)
	for last = framesDecoded(p, whoID); last <= 30; last = framesDecoded(p, whoID) {
		if time.Now().After(deadline) {
			p.t.Logf("%s's connection: %s", viewer, describeConnection(p))
			p.t.Logf("%s's connection: %s", who, describeConnection(pub))
			p.fatal(viewer+" decodes "+who+"'s video", fmt.Errorf("%d frames decoded after %v", last, time.Since(start)))
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.t.Logf("%s decoded %d frames of %s's video after %v", viewer, last, who, time.Since(start).Round(10*time.Millisecond))
}

// describeConnection tells, for a failure message, what the page's
// RTCPeerConnection and grid hold.
func describeConnection(p *page) string {
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(async () => {
		const pc = `+livePC+`;
		if (!pc) return 'no open RTCPeerConnection';
		const inbound = [];
		(await pc.getStats()).forEach(s => {
			if (s.type === 'inbound-rtp') inbound.push('in ' + s.kind + ' ' + s.trackIdentifier + ' frames=' + (s.framesDecoded ?? '-') + ' packets=' + s.packetsReceived +
				(s.kind === 'video' ? ' width=' + (s.frameWidth ?? '-') + ' keyframes=' + (s.keyFramesDecoded ?? '-') + ' plis=' + (s.pliCount ?? '-') : ''));
			if (s.type === 'outbound-rtp') inbound.push('out ' + s.kind + (s.rid ? ' rid=' + s.rid : '') + ' frames=' + (s.framesSent ?? '-') + ' packets=' + s.packetsSent);
		});
		return JSON.stringify({
			states: [pc.signalingState, pc.iceConnectionState, pc.connectionState],
			transceivers: pc.getTransceivers().map(t => [t.mid, t.direction, t.currentDirection, t.receiver.track.kind, t.receiver.track.id, t.sender.track ? t.sender.track.id : null]),
			rtp: inbound,
			media: [...document.querySelectorAll('#grid [data-track-id]')].map(e => e.closest('.tile').dataset.participantId + ':' + e.tagName + ':' + e.dataset.trackId),
		});
	})()`, chromedp.EvalAwaitPromise))
	if err != nil {
		return "(could not read: " + err.Error() + ")"
	}
	return v
}

// selfID reads the page's own participant id from its own tile.
func selfID(p *page) string {
	p.t.Helper()
	p.waitTrue("the own tile appears", `document.querySelector('#grid .tile.self[data-participant-id]')`)
	id := eval[string](p, "read the own participant id", `document.querySelector('#grid .tile.self').dataset.participantId`)
	if id == "" {
		p.t.Fatal("the own tile has an empty data-participant-id")
	}
	return id
}

// signInFirstTime signs a person made by `parley user add --password-stdin`
// in through /login: password, then the authenticator enrolment that the
// first sign-in asks for, then the recovery codes, ending on the home page.
func signInFirstTime(ctx context.Context, p *page, srv *parleyServer, a account) {
	p.t.Helper()
	p.do("open the sign-in page",
		chromedp.Navigate(srv.publicURL+"/login"),
		chromedp.WaitVisible(chromedp.ID("login-form")))
	p.do("enter username and password",
		chromedp.SendKeys(chromedp.ID("username"), a.username),
		chromedp.SendKeys(chromedp.ID("password"), a.password),
		chromedp.Click(chromedp.ID("login-submit")))
	enrolAuthenticator(ctx, p)
	saveRecoveryCodes(p)
	expectSignedIn(p, "after the first sign-in", a.username, "10")
}

// joinMeeting waits for the pre-join screen and joins.
func joinMeeting(p *page, who, wantName string, publisher bool) {
	p.t.Helper()
	p.do(who+": wait for the pre-join screen",
		chromedp.WaitVisible(chromedp.ID("prejoin")),
		chromedp.WaitVisible(chromedp.ID("join-button")))
	if name := eval[string](p, "read #prejoin-name", `document.getElementById('prejoin-name').value`); name != wantName {
		p.t.Errorf("%s: #prejoin-name is pre-filled with %q, want %q", who, name, wantName)
	}
	if publisher {
		p.waitTrue(who+": the preview shows the camera",
			`(() => { const v = document.getElementById('preview'); return v.srcObject && v.videoWidth > 0; })()`)
		got := eval[map[string]any](p, who+": read the device selects", `({
			cameras: document.querySelectorAll('#camera-select option').length,
			mics: document.querySelectorAll('#mic-select option').length,
			camera: document.getElementById('camera-select').value,
			muted: document.getElementById('preview').muted,
		})`)
		if got["cameras"].(float64) < 1 || got["mics"].(float64) < 1 || got["camera"] == "" || got["muted"] != true {
			t := p.t
			t.Errorf("%s: the pre-join screen shows %v, want a camera and a microphone to choose and a muted preview", who, got)
		}
	} else {
		got := eval[map[string]bool](p, who+": read the pre-join screen", `({
			note: !document.getElementById('prejoin-viewer').hidden,
			devices: !document.getElementById('device-fields').hidden,
			preview: !!document.getElementById('preview').srcObject,
		})`)
		if !got["note"] || got["devices"] || got["preview"] {
			p.t.Errorf("%s: the pre-join screen shows %v, want the viewer's note and no devices or preview", who, got)
		}
	}
	if eval[bool](p, "read #recording-notice", `!document.getElementById('recording-notice').hidden`) {
		p.t.Errorf("%s: #recording-notice shows for a meeting that is not recorded", who)
	}
	p.screenshot("meeting-prejoin-" + who + ".png")
	p.do(who+": join",
		chromedp.Click(chromedp.ID("join-button")),
		chromedp.WaitVisible(chromedp.ID("meeting")))
}

// TestMeeting is the acceptance test of meetings: three people in three
// Chromium processes (fake camera and microphone), a host, a member and a
// viewer, each signed in with a password and TOTP, join one room without a
// lobby. Host and member decode each other's video; the viewer decodes both
// but publishes nothing, and a publish forced into the viewer's page is
// refused; a chat message that looks like markup arrives as text and runs
// nothing; the host mutes the member, who turns the microphone on again;
// the member's screen share reaches the host;
// taking the member's right to publish away through the API takes their
// video off the host's page within 2 s; the host removes the member,
// whose page says so; the viewer's page, its signaling socket cut, rejoins
// and decodes again; in the locked meeting the removed member waits in the
// lobby until the host admits them; a raised hand shows on the host's page;
// and the host ends the meeting for everyone. No page may log an error,
// throw, violate the CSP or open a dialog.
func TestMeeting(t *testing.T) {
	parleyBin, chromium := environment(t)
	began := time.Now()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel) // registered first, so it runs after every other cleanup

	srv := startParley(ctx, t, parleyBin, meetingServerFlags...)
	hostB := startBrowser(ctx, t, chromium)
	memberB := startBrowser(ctx, t, chromium)
	viewerB := startBrowser(ctx, t, chromium)
	browsers := map[string]*browser{"host": hostB, "member": memberB, "viewer": viewerB}
	check := func(step string) {
		t.Helper()
		for _, who := range []string{"host", "member", "viewer"} {
			browsers[who].watcher.check(t, who+": "+step)
		}
	}

	hostAcct := account{username: "hedda.host", displayName: "Hedda Host", password: "saffron glacier minnow 4471"}
	memberAcct := account{username: "mads.member", displayName: "Mads Member", password: "lichen harbour sprocket 9052"}
	viewerAcct := account{username: "vera.viewer", displayName: "Vera Viewer", password: "tinsel quarry bramble 3318"}
	const roomName = "Ward round · 3B"

	host := &page{t: t, ctx: hostB.ctx, watcher: hostB.watcher}
	member := &page{t: t, ctx: memberB.ctx, watcher: memberB.watcher}
	viewer := &page{t: t, ctx: viewerB.ctx, watcher: viewerB.watcher}

	// ---- Accounts: the host is the first administrator; the others are
	// made by the operator and enrol at their first sign-in. ----
	setUpFirstAdmin(ctx, host, srv, hostAcct)
	srv.addUserWithPassword(ctx, t, memberAcct)
	srv.addUserWithPassword(ctx, t, viewerAcct)
	signInFirstTime(ctx, member, srv, memberAcct)
	signInFirstTime(ctx, viewer, srv, viewerAcct)
	check("signing in")
	t.Logf("three people signed in after %v", time.Since(began).Round(100*time.Millisecond))

	// ---- The host makes a room without a lobby and adds the others. ----
	host.do("wait for the rooms list", chromedp.WaitNotVisible(chromedp.ID("rooms-loading")))
	host.do("create a room without a lobby",
		chromedp.SendKeys(chromedp.ID("room-name"), roomName),
		chromedp.Click(chromedp.ID("room-lobby")))
	if eval[bool](host, "read the lobby switch", `document.getElementById('room-lobby').checked`) {
		t.Fatal("#room-lobby is still ticked")
	}
	host.do("submit the room",
		chromedp.Click(chromedp.ID("create-room-submit")),
		chromedp.WaitVisible(chromedp.CSS(`#rooms-list li[data-role="host"] a.item-name`)))
	href := eval[string](host, "read the meeting link", `document.querySelector('#rooms-list li a.item-name').getAttribute('href')`)
	roomID, ok := strings.CutPrefix(href, "/rooms/")
	if !ok || roomID == "" || strings.Contains(roomID, "/") {
		t.Fatalf("the room's name links to %q, want /rooms/{id}", href)
	}
	roomAPI := "/api/v1/rooms/" + roomID
	for _, m := range []struct{ username, role string }{{memberAcct.username, "member"}, {viewerAcct.username, "viewer"}} {
		if status, body := pageAPI(host, "PUT", roomAPI+"/members/"+m.username, map[string]string{"role": m.role}); status != 200 {
			t.Fatalf("adding %s as %s: %d %s", m.username, m.role, status, body)
		}
	}

	// ---- Everyone joins: the host and the member through the rooms list,
	// the viewer by the address. ----
	for _, p := range []*page{host, member, viewer} {
		installRecorder(p)
	}
	host.do("host: open the meeting from the rooms list",
		chromedp.Click(chromedp.CSS(`#rooms-list li a.item-name`)),
		chromedp.WaitVisible(chromedp.ID("prejoin")))
	host.settled("host: the meeting page")
	member.do("member: reload the rooms list and open the meeting",
		chromedp.Reload(),
		chromedp.WaitVisible(chromedp.CSS(`#rooms-list li[data-role="member"] a.join-link`)),
		chromedp.Click(chromedp.CSS(`#rooms-list li[data-role="member"] a.join-link`)),
		chromedp.WaitVisible(chromedp.ID("prejoin")))
	member.settled("member: the meeting page")
	if n := eval[int](member, "member: count settings links", `document.querySelectorAll('#rooms-list a.settings-link').length`); n != 0 {
		t.Errorf("a member's rooms list has %d settings links", n)
	}
	viewer.do("viewer: open the meeting's address", chromedp.Navigate(srv.publicURL+"/rooms/"+roomID))

	joinMeeting(host, "host", hostAcct.displayName, true)
	joinMeeting(member, "member", memberAcct.displayName, true)
	joinMeeting(viewer, "viewer", viewerAcct.displayName, false)
	hostID, memberID, viewerID := selfID(host), selfID(member), selfID(viewer)
	t.Logf("participants: host %s, member %s, viewer %s", hostID, memberID, viewerID)
	if hostID == memberID || hostID == viewerID || memberID == viewerID {
		t.Fatal("two participants have the same id")
	}
	check("joining")

	// ---- Media: host and member decode each other; the viewer both. ----
	expectDecodes(host, "host", member, "member", memberID)
	expectDecodes(member, "member", host, "host", hostID)
	expectDecodes(viewer, "viewer", host, "host", hostID)
	expectDecodes(viewer, "viewer", member, "member", memberID)
	host.screenshot("meeting-host.png")
	viewer.screenshot("meeting-viewer.png")

	// What each page shows of the others and of itself.
	for _, c := range []struct {
		p      *page
		who    string
		others []string
	}{{host, "host", []string{memberID, viewerID}}, {member, "member", []string{hostID, viewerID}}, {viewer, "viewer", []string{hostID, memberID}}} {
		for _, id := range c.others {
			c.p.waitTrue(c.who+" lists "+id, `document.querySelector('#participants li[data-participant-id=`+js(id)+`]') && document.querySelector(`+js(tileSel(id))+`)`)
		}
	}
	// The viewer's tile has no video on any page: the viewer publishes nothing.
	for _, c := range []struct {
		p   *page
		who string
	}{{host, "host"}, {member, "member"}, {viewer, "viewer"}} {
		if eval[bool](c.p, c.who+": look for the viewer's video", `!!document.querySelector(`+js(tileSel(viewerID)+` video`)+`)`) {
			t.Errorf("%s's page shows a video for the viewer", c.who)
		}
	}
	viewerSide := eval[map[string]any](viewer, "viewer: read the connection and the controls", `(() => {
		const pc = `+livePC+`;
		return {
			sending: pc.getSenders().filter(s => s.track).length,
			directions: pc.getTransceivers().map(t => t.currentDirection || t.direction).join(','),
			mic: !document.getElementById('toggle-mic').hidden,
			camera: !document.getElementById('toggle-camera').hidden,
			screen: !document.getElementById('toggle-screen').hidden,
			moderation: !document.getElementById('moderation').hidden,
		};
	})()`)
	t.Logf("the viewer's connection: %v", viewerSide)
	if viewerSide["sending"].(float64) != 0 || viewerSide["mic"] == true || viewerSide["camera"] == true ||
		viewerSide["screen"] == true || viewerSide["moderation"] == true {
		t.Errorf("the viewer's page sends tracks or offers to publish or moderate: %v", viewerSide)
	}
	if strings.Contains(viewerSide["directions"].(string), "send") {
		t.Errorf("the viewer's transceivers are %s, want no sending direction", viewerSide["directions"])
	}
	hostSide := eval[map[string]bool](host, "host: read the controls", `({
		mic: !document.getElementById('toggle-mic').hidden,
		camera: !document.getElementById('toggle-camera').hidden,
		moderation: !document.getElementById('moderation').hidden,
		kick: !!document.querySelector('#participants li[data-participant-id=`+js(memberID)+`] button[data-action="kick"]'),
	})`)
	for k, v := range hostSide {
		if !v {
			t.Errorf("the host's page does not show %s", k)
		}
	}
	if n := eval[int](member, "member: count host controls", `document.querySelectorAll('#participants button[data-action]').length`); n != 0 {
		t.Errorf("the member's page shows %d host controls", n)
	}
	check("media")

	// ---- Simulcast: the host's camera goes out in layers, and the viewer
	// receives the one that fits the width it asks for. ----
	checkSimulcast(t, host, viewer, hostID)
	check("simulcast")

	// ---- The viewer's page is made to publish anyway: a camera track is
	// added to its own RTCPeerConnection (as a modified client would), and
	// the page's negotiation offers it to the server. ----
	forced := evalAwait[string](viewer, "viewer: add a camera track to the page's connection", `(async () => {
		const s = await navigator.mediaDevices.getUserMedia({video: true});
		const track = s.getVideoTracks()[0];
		`+livePC+`.addTrack(track, s);
		return track.id;
	})()`)
	t.Logf("forced a camera track %s into the viewer's connection", forced)
	refusedAt := time.Now()
	waitUntil(viewer, "the server refuses the viewer's track", 15*time.Second, func() bool {
		return eval[string](viewer, "read #meeting-error", `document.getElementById('meeting-error').dataset.code || ''`) == "forbidden"
	})
	t.Logf("the viewer's page shows %q after %v",
		eval[string](viewer, "read #meeting-error", `document.getElementById('meeting-error').textContent`), time.Since(refusedAt).Round(10*time.Millisecond))
	// Whatever the server did, nothing of it reaches the others.
	time.Sleep(2 * time.Second)
	for _, c := range []struct {
		p   *page
		who string
	}{{host, "host"}, {member, "member"}} {
		if eval[bool](c.p, c.who+": look for the viewer's video", `!!document.querySelector(`+js(tileSel(viewerID)+` video`)+`)`) {
			t.Errorf("%s's page shows a video for the viewer after the viewer's forced publish", c.who)
		}
	}
	viewerAfter := eval[map[string]any](viewer, "viewer: read the connection after the refusal", `(() => {
		const pc = `+livePC+`;
		return {state: pc.signalingState, sending: pc.getSenders().filter(s => s.track).length};
	})()`)
	if viewerAfter["state"] != "stable" || viewerAfter["sending"].(float64) != 0 {
		t.Errorf("after the refusal the viewer's connection is %v, want stable and sending nothing", viewerAfter)
	}
	// The viewer still receives: more frames of the host than before.
	before := framesDecoded(viewer, hostID)
	waitUntil(viewer, "the viewer still decodes the host", 10*time.Second, func() bool { return framesDecoded(viewer, hostID) > before+10 })
	check("the viewer's forced publish")

	// ---- Chat: markup from the member is text on the host's page. ----
	const payload = `<img src=x onerror=alert(1)>`
	member.do("member: send a chat message that looks like markup",
		chromedp.SendKeys(chromedp.ID("chat-input"), payload),
		chromedp.Click(chromedp.ID("chat-send")))
	host.waitTrue("the message reaches the host", `[...document.querySelectorAll('#chat-messages li.chat-message')].some(li => li.dataset.from === `+js(memberID)+`)`)
	msg := eval[map[string]any](host, "host: read the message", `(() => {
		const li = [...document.querySelectorAll('#chat-messages li.chat-message')].find(li => li.dataset.from === `+js(memberID)+`);
		return {
			text: li.querySelector('.chat-text').textContent,
			name: li.querySelector('.chat-name').textContent,
			elements: li.querySelector('.chat-text').children.length,
			images: document.querySelectorAll('#chat img, #chat-messages img').length,
		};
	})()`)
	if msg["text"] != payload || msg["name"] != memberAcct.displayName || msg["elements"].(float64) != 0 || msg["images"].(float64) != 0 {
		t.Errorf("the host's page shows the chat message as %v, want the literal text %q from %s", msg, payload, memberAcct.displayName)
	}
	member.waitTrue("the member sees their own message", `[...document.querySelectorAll('#chat-messages .chat-text')].some(e => e.textContent === `+js(payload)+`)`)
	time.Sleep(500 * time.Millisecond) // an alert would open at once
	if n := hostB.watcher.dialogCount() + memberB.watcher.dialogCount() + viewerB.watcher.dialogCount(); n != 0 {
		t.Errorf("%d JavaScript dialog(s) opened", n)
	}
	host.screenshot("meeting-chat.png")
	check("chat")

	// ---- The host mutes the member: the member's sound leaves the host's
	// page; the member turns the microphone on again, and a new track
	// reaches the host. ----
	memberAudio := `document.querySelector(` + js(tileSel(memberID)+` audio[data-track-id]`) + `)`
	host.waitTrue("host: the member's audio is there", `!!`+memberAudio)
	oldAudio := eval[string](host, "host: read the member's audio track", memberAudio+`.dataset.trackId`)
	host.do("host: mute the member",
		chromedp.Click(chromedp.CSS(`#participants li[data-participant-id=`+js(memberID)+`] button[data-action="mute"]`)))
	host.waitTrue("host: the member's audio leaves", `!`+memberAudio)
	member.waitTrue("member: the microphone is off and can be turned on",
		`document.getElementById('toggle-mic').getAttribute('aria-pressed') === 'true' && !`+livePC+`.getSenders().some(s => s.track && s.track.kind === 'audio')`)
	member.do("member: turn the microphone on again", chromedp.Click(chromedp.ID("toggle-mic")))
	host.waitTrue("host: the member's new microphone arrives", memberAudio+` && `+memberAudio+`.dataset.trackId !== `+js(oldAudio))
	if !eval[bool](host, "host: the member's video stayed", `!!document.querySelector(`+js(tileSel(memberID)+` video`)+`)`) {
		t.Error("muting the member's microphone took their video off the host's page")
	}
	check("muting the member")

	// ---- The member shares the screen; the host sees it beside the
	// camera. ----
	member.do("member: share the screen", chromedp.Click(chromedp.ID("toggle-screen")))
	host.waitTrue("host: the member's screen arrives", `document.querySelector(`+js(tileSel(memberID)+` video[data-source="screen"]`)+`)`)
	member.waitTrue("member: the own tile shows the screen", `document.querySelector('#grid .tile.self video[data-source="screen"]') && `+
		`document.getElementById('toggle-screen').getAttribute('aria-pressed') === 'true'`)
	check("sharing the screen")

	// ---- The host takes the member's right to publish away through the
	// API: the member's video leaves the host's page within 2 s. ----
	memberVideo := `document.querySelector(` + js(tileSel(memberID)+` video`) + `)`
	if !eval[bool](host, "host: the member's video is there", `!!`+memberVideo) {
		t.Fatal("the host's page shows no video of the member before the revocation")
	}
	revoked := time.Now() // the 2 s count from before the request
	status, body := pageAPI(host, "PUT", roomAPI+"/members/"+memberAcct.username, map[string]string{"role": "viewer"})
	if status != 200 {
		t.Fatalf("making the member a viewer: %d %s", status, body)
	}
	t.Logf("the role change took %v", time.Since(revoked).Round(time.Millisecond))
	waitUntil(host, "the member's video leaves the host's page", 2*time.Second-time.Since(revoked), func() bool {
		return eval[bool](host, "host: look for the member's video", `!`+memberVideo)
	})
	t.Logf("the member's video left the host's page within %v of the role change request", time.Since(revoked).Round(10*time.Millisecond))
	member.waitTrue("the member's page stops offering camera and microphone",
		`document.getElementById('toggle-camera').hidden && document.getElementById('toggle-mic').hidden && !`+
			`document.querySelector('#grid .tile.self video') && `+livePC+`.getSenders().every(s => !s.track)`)
	check("revoking the member's right to publish")

	// ---- The host removes the member. ----
	kick := `#participants li[data-participant-id=` + js(memberID) + `] button[data-action="kick"]`
	host.do("host: remove the member",
		chromedp.Click(chromedp.CSS(kick)),
		chromedp.WaitNotPresent(chromedp.CSS(tileSel(memberID))))
	member.do("member: the kicked screen", chromedp.WaitVisible(chromedp.ID("kicked-screen")))
	if got := eval[string](member, "member: read the kicked screen", `document.getElementById('kicked-screen').textContent`); !strings.Contains(got, "You were removed from the meeting") {
		t.Errorf("#kicked-screen says %q", got)
	}
	if eval[bool](member, "member: the meeting is gone", `!document.getElementById('meeting').hidden`) {
		t.Error("the member's page still shows the meeting after the kick")
	}
	viewer.waitTrue("the viewer's page drops the member", `!document.querySelector(`+js(tileSel(memberID))+`)`)
	member.screenshot("meeting-kicked.png")
	check("removing the member")

	// ---- The viewer's signaling socket drops: the page says so, connects
	// again, rejoins with a new media connection and decodes the host. ----
	eval[chromedp.Void](viewer, "viewer: cut the signaling socket", `window.__e2e.sockets.at(-1).close()`)
	viewer.do("viewer: the lost-connection screen", chromedp.WaitVisible(chromedp.ID("lost-screen")))
	viewer.do("viewer: back in the meeting", chromedp.WaitVisible(chromedp.ID("meeting")))
	rejoinedID := selfID(viewer)
	t.Logf("the viewer rejoined as %s", rejoinedID)
	expectDecodes(viewer, "viewer (rejoined)", host, "host", hostID)
	host.waitTrue("the host sees the rejoined viewer", `document.querySelector('#participants li[data-participant-id=`+js(rejoinedID)+`]')`)
	if n := eval[int](viewer, "viewer: count open connections", `window.__e2e.pcs.filter(pc => pc.connectionState !== 'closed').length`); n != 1 {
		t.Errorf("after rejoining the viewer's page has %d open RTCPeerConnections, want 1", n)
	}
	check("reconnecting")

	// ---- The host locks the meeting; the removed member comes back and
	// waits in the lobby until the host lets them in. ----
	host.do("host: lock the meeting",
		chromedp.Click(chromedp.ID("lock-room")),
		chromedp.WaitVisible(chromedp.ID("locked-indicator")))
	viewer.do("viewer: the meeting shows as locked", chromedp.WaitVisible(chromedp.ID("locked-indicator")))
	if got := eval[string](host, "host: read the lock button", `document.getElementById('lock-room').getAttribute('aria-pressed')`); got != "true" {
		t.Errorf("#lock-room has aria-pressed=%q in a locked meeting, want true", got)
	}
	member.do("member: open the meeting again",
		chromedp.Navigate(srv.publicURL+"/rooms/"+roomID),
		chromedp.WaitVisible(chromedp.ID("join-button")),
		chromedp.Click(chromedp.ID("join-button")),
		chromedp.WaitVisible(chromedp.ID("lobby-screen")))
	if pos := eval[string](member, "member: read the lobby position", `document.getElementById('lobby-position').textContent`); !strings.Contains(pos, "1") {
		t.Errorf("#lobby-position says %q, want the first place", pos)
	}
	admit := `#participants li[data-in-lobby="true"] button[data-action="admit"]`
	host.do("host: the member waits in the lobby", chromedp.WaitVisible(chromedp.CSS(admit)))
	if n := eval[int](viewer, "viewer: count lobby entries", `document.querySelectorAll('#participants li[data-in-lobby="true"]').length`); n != 0 {
		t.Errorf("the viewer's page lists %d people in the lobby; only moderators see the lobby", n)
	}
	host.do("host: admit the member", chromedp.Click(chromedp.CSS(admit)))
	member.do("member: in the meeting", chromedp.WaitVisible(chromedp.ID("meeting")))
	backID := selfID(member)
	host.waitTrue("host: the member's tile is back", `document.querySelector(`+js(tileSel(backID))+`)`)
	check("the lobby")

	// ---- The member raises a hand; the host sees it. ----
	member.do("member: raise a hand", chromedp.Click(chromedp.ID("raise-hand")))
	host.waitTrue("host: the raised hand shows", `document.querySelector(`+js(tileSel(backID)+`.hand`)+`) && `+
		`document.querySelector('#participants li[data-participant-id=`+js(backID)+`] .badge.hand')`)
	member.waitTrue("member: the button lowers the hand now", `document.getElementById('raise-hand').getAttribute('aria-pressed') === 'true'`)
	check("raising a hand")

	// ---- The host ends the meeting for everyone. ----
	host.do("host: end the meeting",
		chromedp.Click(chromedp.ID("end-meeting")),
		chromedp.WaitVisible(chromedp.ID("end-meeting-confirm")),
		chromedp.Click(chromedp.ID("end-meeting-confirm")),
		chromedp.WaitVisible(chromedp.ID("ended-screen")))
	member.do("member: the meeting ended", chromedp.WaitVisible(chromedp.ID("ended-screen")))
	viewer.do("viewer: the meeting ended", chromedp.WaitVisible(chromedp.ID("ended-screen")))
	for _, c := range []struct {
		p   *page
		who string
	}{{host, "host"}, {member, "member"}, {viewer, "viewer"}} {
		if n := eval[int](c.p, c.who+": count open connections", `window.__e2e.pcs.filter(pc => pc.connectionState !== 'closed').length`); n != 0 {
			t.Errorf("%s's page keeps %d RTCPeerConnection(s) open after the meeting ended", c.who, n)
		}
	}
	check("ending the meeting")
	t.Logf("TestMeeting took %v", time.Since(began).Round(100*time.Millisecond))
}

// meetingServerFlags are the media options of `parley serve` for the test
// besides the harness's (a free UDP port on 127.0.0.1, no ICE-TCP): the
// browsers' loopback candidates are allowed, since the SFU refuses loopback
// peers unless told otherwise.
var meetingServerFlags = []string{"--media-allowed-remote", "127.0.0.0/8"}

// sentLayers reads, from the publisher's statistics, the simulcast layers
// its camera sends: rid → frame width (0 while a layer sends nothing).
func sentLayers(p *page) map[string]float64 {
	p.t.Helper()
	return evalAwait[map[string]float64](p, "read the outbound layers", `(async () => {
		const out = {};
		(await `+livePC+`.getStats()).forEach(s => {
			if (s.type === 'outbound-rtp' && s.kind === 'video' && s.rid) out[s.rid] = s.frameWidth || 0;
		});
		return out;
	})()`)
}

// receivedWidth is the width of the frames p last decoded of who's camera.
func receivedWidth(p *page, whoID string) int {
	p.t.Helper()
	return evalAwait[int](p, "read the received frame width", `(async () => {
		const v = document.querySelector(`+js(tileSel(whoID)+` video[data-track-id]`)+`);
		const track = v && v.srcObject && v.srcObject.getVideoTracks()[0];
		const pc = `+livePC+`;
		if (!track || !pc) return 0;
		let w = 0;
		(await pc.getStats()).forEach(s => {
			if (s.type === 'inbound-rtp' && s.kind === 'video' && s.trackIdentifier === track.id) w = s.frameWidth || 0;
		});
		return w;
	})()`)
}

// checkSimulcast: the publisher's camera sends at least two layers of
// different widths; a subscriber asking for at most the narrowest width
// gets the narrowest layer, and asking for more gets the widest.
// The subscriber's request goes over its page's own signaling socket, as
// the page's resize observer would send it.
func checkSimulcast(t *testing.T, pub, sub *page, pubID string) {
	t.Helper()
	var layers map[string]float64
	widths := map[float64]bool{}
	waitUntil(pub, "the camera sends two simulcast layers of different widths", 20*time.Second, func() bool {
		layers = sentLayers(pub)
		clear(widths)
		for _, w := range layers {
			if w > 0 {
				widths[w] = true
			}
		}
		return len(widths) >= 2
	})
	narrow, wide := 1e9, 0.0
	for w := range widths {
		narrow, wide = min(narrow, w), max(wide, w)
	}
	t.Logf("the camera sends layers %v", layers)
	trackID := eval[string](sub, "read the publisher's track id", `document.querySelector(`+js(tileSel(pubID)+` video[data-track-id]`)+`).dataset.trackId`)
	ask := func(maxWidth float64) {
		ok := eval[bool](sub, "send a layer request", `(() => {
			const ws = [...window.__e2e.sockets].reverse().find(s => s.readyState === WebSocket.OPEN);
			if (!ws) return false;
			ws.send(JSON.stringify({type: 'layer', track_id: `+js(trackID)+`, max_width: `+fmt.Sprint(int(maxWidth))+`}));
			return true;
		})()`)
		if !ok {
			t.Fatal("the subscriber's page has no open signaling socket")
		}
	}
	// The page asked for the width of its tile; first the widest layer,
	// then the narrowest: two switches, each on a keyframe.
	for _, want := range []float64{wide, narrow} {
		start := time.Now()
		ask(map[bool]float64{true: 4096, false: narrow}[want == wide])
		deadline := start.Add(10 * time.Second)
		for w := receivedWidth(sub, pubID); float64(w) != want; w = receivedWidth(sub, pubID) {
			if time.Now().After(deadline) {
				// Whether frames of the new layer arrive, decode, or are
				// still sent: a switch the server did not make and one the
				// subscriber did not decode look alike from here.
				t.Logf("the subscriber's connection: %s", describeConnection(sub))
				t.Logf("the camera sends layers %v", sentLayers(pub))
				sub.fatal(fmt.Sprintf("the subscriber receives the %v-pixel layer", want),
					fmt.Errorf("still %d pixels wide after %v", w, time.Since(start).Round(10*time.Millisecond)))
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("receiving the %v-pixel layer %v after the request", want, time.Since(start).Round(10*time.Millisecond))
	}
	before := framesDecoded(sub, pubID)
	waitUntil(sub, "decoding goes on after the switches", 5*time.Second, func() bool {
		return framesDecoded(sub, pubID) > before+10
	})
}

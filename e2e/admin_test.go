package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestAdminConsole: the first administrator runs the console. Two Pion
// participants (API tokens minted from the administrator's session,
// relay-only ICE) meet in a room. On /admin the administrator adds a
// person and reads the one-time enrolment link; sees the meeting with both
// participants and their tracks under Live, removes one with its Kick
// button (that participant receives "kicked", the other stays); and finds
// the kick and the new account in the audit log, whose hash chain checks
// out. The page reports no error throughout.
func TestAdminConsole(t *testing.T) {
	parleyBin, chromium := environment(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)

	srv := startParley(ctx, t, parleyBin, relayServerFlags...)
	admin := browserPage(ctx, t, chromium)
	adminAcct := account{username: "alma.admin", displayName: "Alma Admin", password: "saffron glacier tulip 4471"}
	setUpFirstAdmin(ctx, admin, srv, adminAcct)
	roomID := createRoom(admin, "Console check")

	var bots [2]*relayBot
	for i := range bots {
		bots[i] = joinRelayBot(ctx, t, srv, roomID, mintToken(admin))
		defer bots[i].close()
	}

	// The home page links the console for an administrator.
	admin.do("the home page links the console",
		chromedp.Navigate(srv.publicURL+"/"),
		chromedp.WaitVisible(chromedp.ID("console-link")))
	if href := eval[string](admin, "read the console link", `document.getElementById('console-link').getAttribute('href')`); href != "/admin" {
		t.Errorf("the console link goes to %q, want /admin", href)
	}
	admin.do("the console opens on People",
		chromedp.Navigate(srv.publicURL+"/admin"),
		chromedp.WaitVisible(chromedp.CSS(`#tab-people[aria-selected="true"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#people-list tr[data-username=`+js(adminAcct.username)+`]`)))

	// People: add someone and read the one-time link.
	const newUser, newName = "nico.new", "Nico New"
	admin.do("add a person",
		chromedp.SendKeys(chromedp.ID("create-username"), newUser),
		chromedp.SendKeys(chromedp.ID("create-display-name"), newName),
		chromedp.Click(chromedp.ID("create-submit")),
		chromedp.WaitVisible(chromedp.ID("new-user-link")),
		chromedp.WaitVisible(chromedp.CSS(`#people-list tr[data-username=`+js(newUser)+`]`)))
	link := eval[string](admin, "read the enrolment link", `document.getElementById('new-user-link').value`)
	if !strings.HasPrefix(link, srv.publicURL+"/enroll#") || len(link) <= len(srv.publicURL+"/enroll#") {
		t.Errorf("the enrolment link is %q, want %s/enroll#<token>", link, srv.publicURL)
	}
	admin.screenshot("admin-people.png")
	admin.do("search for the new person", chromedp.SendKeys(chromedp.ID("people-search"), "nico"))
	admin.waitTrue("the search leaves only the new person", `(() => {
		const rows = [...document.querySelectorAll('#people-list tr[data-username]')];
		return rows.length === 1 && rows[0].dataset.username === `+js(newUser)+`;
	})()`)
	if eval[bool](admin, "the new person's actions", `!document.querySelector('#people-list tr[data-username=`+js(newUser)+`] button[data-action="disable"]')`) {
		t.Error("the new person's row has no Disable button")
	}

	// Live: the meeting with both participants and what they send.
	roomSel := `#live-list [data-room-id=` + js(roomID) + `]`
	admin.do("open Live", chromedp.Click(chromedp.ID("tab-live")), chromedp.WaitVisible(chromedp.CSS(roomSel)))
	// Both bots publish the track id "bot-camera", and the SFU refuses a
	// second track with an id already published in the room: one of them
	// sends video, which the other receives.
	waitUntil(admin, "Live shows both participants and the video", 30*time.Second, func() bool {
		return eval[bool](admin, "count the participants", `(() => {
			const ps = [...document.querySelectorAll(`+js(roomSel+` [data-participant-id]`)+`)];
			return ps.length === 2 && ps.some(p => p.querySelector('.live-tracks [data-track-kind="video"]')) &&
				ps.every(p => p.dataset.connection === 'connected');
		})()`)
	})
	ids := eval[[]string](admin, "read the participant ids",
		`[...document.querySelectorAll(`+js(roomSel+` [data-participant-id]`)+`)].map(p => p.dataset.participantId)`)
	t.Logf("live participants: %v; first: %s", ids, eval[string](admin, "describe the first participant",
		`document.querySelector(`+js(roomSel+` [data-participant-id]`)+`).textContent.replace(/\s+/g, ' ').slice(0, 300)`))
	admin.screenshot("admin-live.png")
	kicked := ids[0]
	admin.do("kick the first participant",
		chromedp.Click(chromedp.CSS(roomSel+` [data-participant-id=`+js(kicked)+`] button[data-action="kick"]`)))
	waitUntil(admin, "a bot receives kicked", 15*time.Second, func() bool {
		return bots[0].gotType("kicked") || bots[1].gotType("kicked")
	})
	if bots[0].gotType("kicked") && bots[1].gotType("kicked") {
		t.Fatal("both participants were kicked, want one")
	}
	stayed := bots[0]
	if bots[0].gotType("kicked") {
		stayed = bots[1]
	}
	admin.waitTrue("Live shows only the other participant", `(() => {
		const ps = [...document.querySelectorAll(`+js(roomSel+` [data-participant-id]`)+`)];
		return ps.length === 1 && ps[0].dataset.participantId === `+js(ids[1])+`;
	})()`)
	if err := stayed.failure(); err != nil {
		t.Errorf("the participant who stayed: %v", err)
	}

	// Audit: the kick, the new account, and an intact chain.
	admin.do("open Audit", chromedp.Click(chromedp.ID("tab-audit")),
		chromedp.WaitVisible(chromedp.CSS(`#audit-verify[data-ok]`)))
	if ok := eval[string](admin, "read the check", `document.getElementById('audit-verify').dataset.ok`); ok != "true" {
		t.Errorf("the audit check says %q: %s", ok, eval[string](admin, "read the check's text", `document.getElementById('audit-verify').textContent`))
	}
	if hash := eval[string](admin, "read the head hash", `(document.querySelector('#audit-verify [data-field="head_hash"]') || {}).textContent || ''`); len(hash) < 32 {
		t.Errorf("the audit check shows the head hash %q", hash)
	}
	admin.do("filter the kicks",
		chromedp.SendKeys(chromedp.ID("audit-action"), "signal.kick"),
		chromedp.Click(chromedp.ID("audit-submit")))
	admin.waitTrue("the log shows only the kick", `(() => {
		const rows = [...document.querySelectorAll('#audit-table tbody tr[data-seq]')];
		return rows.length === 1 && rows[0].querySelector('[data-field="action"]').textContent === 'signal.kick' &&
			rows[0].querySelector('[data-field="outcome"]').textContent === 'success';
	})()`)
	kickRow := eval[map[string]string](admin, "read the kick", auditRowJS(`#audit-table tbody tr[data-seq]`))
	t.Logf("the kick in the log: %v", kickRow)
	if !strings.Contains(kickRow["details"], kicked) && !strings.Contains(kickRow["target"], roomID) {
		t.Errorf("the kick's entry names neither the room nor the participant: %v", kickRow)
	}
	if export := eval[string](admin, "read the export link", `document.getElementById('audit-export').getAttribute('href')`); export != "/api/v1/admin/audit/export?action=signal.kick" {
		t.Errorf("the export link is %q, want the filter's export", export)
	}

	eval[bool](admin, "clear the action filter", `(document.getElementById('audit-action').value = '') === ''`)
	admin.do("filter the new accounts",
		chromedp.SendKeys(chromedp.ID("audit-action"), "user.create"),
		chromedp.Click(chromedp.ID("audit-submit")))
	admin.waitTrue("the log shows the new account", `[...document.querySelectorAll('#audit-table tbody tr[data-seq]')].some(r =>
		r.querySelector('[data-field="action"]').textContent === 'user.create' &&
		r.querySelector('[data-field="target"]').textContent.includes(`+js(newUser)+`))`)
	admin.screenshot("admin-audit.png")
	createRow := eval[map[string]string](admin, "read the creation", auditRowJS(`#audit-table tbody tr[data-seq]`))
	t.Logf("the new account in the log: %v", createRow)
	if !strings.Contains(createRow["actor"], adminAcct.username) {
		t.Errorf("the new account's entry does not name the administrator as its actor: %v", createRow)
	}

	// Rooms: the room, with its settings.
	admin.do("open Rooms", chromedp.Click(chromedp.ID("tab-rooms")),
		chromedp.WaitVisible(chromedp.CSS(`#rooms-list [data-room-id=`+js(roomID)+`] a[href=`+js("/rooms/"+roomID+"/settings")+`]`)))

	// Security: a failed sign-in shows in the chart.
	failSignIn(ctx, t, srv, newUser)
	admin.do("open Security", chromedp.Click(chromedp.ID("tab-security")),
		chromedp.WaitVisible(chromedp.CSS(`#security-chart svg`)))
	if n := eval[string](admin, "read the failures", `document.getElementById('security-chart').dataset.failed`); n == "" || n == "0" {
		t.Errorf("the chart counts %q failed sign-ins, want at least 1", n)
	}
	if n := eval[int](admin, "count the bars", `document.querySelectorAll('#security-chart svg rect.bar.failed').length`); n != 24 {
		t.Errorf("the chart has %d bars of failed sign-ins, want 24", n)
	}
	if label := eval[string](admin, "read the chart's name", `document.querySelector('#security-chart svg').getAttribute('aria-label')`); !strings.Contains(label, "failed sign-in") {
		t.Errorf("the chart's text alternative is %q", label)
	}

	admin.screenshot("admin-security.png")
	if n := admin.watcher.dialogCount(); n != 0 {
		t.Errorf("%d JavaScript dialogs opened", n)
	}
	admin.watcher.check(t, "admin console")
}

// failSignIn tries to sign in as username with a wrong password.
func failSignIn(ctx context.Context, t *testing.T, srv *parleyServer, username string) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"username": username, "password": "not the password 0000"})
	req, err := http.NewRequestWithContext(ctx, "POST", srv.publicURL+"/api/v1/auth/login", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", srv.publicURL)
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // the test server's self-signed certificate
	}}
	defer client.CloseIdleConnections()
	res, err := client.Do(req)
	if err != nil {
		t.Fatalf("signing in with a wrong password: %v", err)
	}
	_ = res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("signing in with a wrong password: HTTP %d, want 401", res.StatusCode)
	}
}

// mintToken mints an API token from p's session.
func mintToken(p *page) string {
	p.t.Helper()
	status, body := pageAPI(p, "POST", "/api/v1/auth/token", map[string]any{})
	if status != 200 {
		p.t.Fatalf("minting an API token: %d %s", status, body)
	}
	var tok struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal([]byte(body), &tok); err != nil || tok.Token == "" {
		p.t.Fatalf("token answer %s: %v", body, err)
	}
	return tok.Token
}

// auditRowJS is a JavaScript expression for the fields of the first audit
// row that sel matches.
func auditRowJS(sel string) string {
	return `(() => {
		const r = document.querySelector(` + js(sel) + `);
		const f = {seq: r.dataset.seq};
		for (const td of r.querySelectorAll('[data-field]')) f[td.dataset.field] = td.textContent;
		return f;
	})()`
}

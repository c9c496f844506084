package e2e

import (
	"context"
	"encoding/json"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

var settingsPath = regexp.MustCompile(`^/rooms/([A-Za-z0-9_-]+)/settings$`)

// js quotes s as a JavaScript string literal.
func js(s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err) // a Go string always marshals
	}
	return string(b)
}

// TestRoomsAndGuestInvite walks rooms and invitations in a real browser
// against the real binary: a host creates a room that admits guests, adds a
// member made by `parley user add --password-stdin`, and creates invitation
// links; people in other browser contexts (no cookies, no storage) join
// through them as guests. A link for one use works once, a revoked link not
// at all; a member link takes its person through sign-in and back; a room
// that does not exist is "No such room", and a deleted room takes its guests
// with it. No page may log an error, throw or violate the Content Security
// Policy, beyond the failed requests that are how the pages learn things
// (each one allowed by path and status below).
func TestRoomsAndGuestInvite(t *testing.T) {
	parleyBin, chromium := environment(t)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel) // registered first, so it runs after every other cleanup

	srv := startParley(ctx, t, parleyBin)
	b := startBrowser(ctx, t, chromium)

	hostAcct := account{username: "hana.host", displayName: "Hana Host", password: "gravel orchid tundra 5521"}
	memberAcct := account{username: "milo.member", displayName: "Milo Member", password: "copper meadow falcon 8830"}
	const roomName = "Case review · Room 7"
	const guestName = "Gwen Guest"

	host := &page{t: t, ctx: b.ctx, watcher: b.watcher}
	setUpFirstAdmin(ctx, host, srv, hostAcct)
	srv.addUserWithPassword(ctx, t, memberAcct)
	b.watcher.check(t, "setup")

	// The join page asks /api/v1/me whether its visitor is signed in: for a
	// guest the answer is 401.
	b.watcher.allowHTTPError("/api/v1/me", 401)

	// ---- The host creates a room that admits guests. ----
	host.do("wait for the rooms list", chromedp.WaitNotVisible(chromedp.ID("rooms-loading")))
	if n := eval[int](host, "count rooms", `document.querySelectorAll('#rooms-list li').length`); n != 0 {
		t.Fatalf("a new server lists %d rooms, want none", n)
	}
	host.do("create a room",
		chromedp.SendKeys(chromedp.ID("room-name"), roomName),
		chromedp.Click(chromedp.ID("room-guests")))
	if !eval[bool](host, "read the switches", `document.getElementById('room-guests').checked && document.getElementById('room-lobby').checked`) {
		t.Fatal("#room-guests and #room-lobby are not both ticked before creating the room")
	}
	host.do("submit the new room",
		chromedp.Click(chromedp.ID("create-room-submit")),
		chromedp.WaitVisible(chromedp.CSS(`#rooms-list li[data-role="host"] a.settings-link`)))
	link := eval[map[string]string](host, "read the room in the list", `(() => {
		const li = document.querySelector('#rooms-list li');
		const a = li.querySelector('a.settings-link');
		return {name: li.querySelector('.item-name').textContent, href: a.getAttribute('href'),
			meeting: li.querySelector('a.item-name').getAttribute('href'), role: li.dataset.role, text: li.textContent};
	})()`)
	if link["name"] != roomName {
		t.Errorf("the list names the room %q, want %q", link["name"], roomName)
	}
	m := settingsPath.FindStringSubmatch(link["href"])
	if m == nil {
		t.Fatalf("the room links to %q, want /rooms/{id}/settings", link["href"])
	}
	roomID := m[1]
	if link["meeting"] != "/rooms/"+roomID {
		t.Errorf("the room's name links to %q, want its meeting /rooms/%s", link["meeting"], roomID)
	}
	if !strings.Contains(link["text"], "Host") {
		t.Errorf("the room's entry %q does not show the role Host", link["text"])
	}
	if !strings.Contains(eval[string](host, "read the status", `document.getElementById('create-room-status').textContent`), roomName) {
		t.Error("#create-room-status does not confirm the new room by name")
	}
	host.screenshot("rooms.png")
	b.watcher.check(t, "creating a room")

	// ---- A second room, end-to-end encrypted from the start. ----
	const sealedName = "Sealed consult"
	host.do("create an end-to-end encrypted room",
		chromedp.SendKeys(chromedp.ID("room-name"), sealedName),
		chromedp.Click(chromedp.ID("room-e2ee")),
		chromedp.Click(chromedp.ID("create-room-submit")))
	host.waitTrue("the second room is listed", `document.querySelectorAll('#rooms-list li').length === 2`)
	facts := eval[map[string]string](host, "read the rooms' facts", `Object.fromEntries([...document.querySelectorAll('#rooms-list li')].map(
		li => [li.querySelector('.item-name').textContent, li.querySelector('.item-facts').textContent]))`)
	if !strings.Contains(facts[sealedName], "end-to-end encrypted") || strings.Contains(facts[roomName], "end-to-end encrypted") {
		t.Errorf("the list's facts %q: want only %q marked end-to-end encrypted", facts, sealedName)
	}
	body := evalAwait[string](host, "GET /api/v1/rooms", `fetch('/api/v1/rooms', {cache: 'no-store'}).then(r => r.text())`)
	if strings.Count(body, `"e2ee":true`) != 1 || !strings.Contains(body, `"e2ee":false`) {
		t.Errorf("GET /api/v1/rooms: %s; want one room with e2ee true and one with false", body)
	}
	// (Deleted again: the rest of this test follows the first room alone.)
	sealedID := eval[string](host, "read the sealed room's id", `[...document.querySelectorAll('#rooms-list li')].find(
		li => li.querySelector('.item-name').textContent === `+js(sealedName)+`).dataset.roomId`)
	if status, body := pageAPI(host, "DELETE", "/api/v1/rooms/"+sealedID, nil); status != 204 {
		t.Fatalf("DELETE the sealed room: %d %s", status, body)
	}
	host.do("reload the rooms list", chromedp.Reload(), chromedp.WaitNotVisible(chromedp.ID("rooms-loading")))
	host.waitTrue("one room is listed again", `document.querySelectorAll('#rooms-list li').length === 1`)
	b.watcher.check(t, "creating an end-to-end encrypted room")

	// ---- Its settings: a member and two guest links. ----
	host.do("open the room's settings",
		chromedp.Click(chromedp.CSS(`#rooms-list li[data-room-id="`+roomID+`"] a.settings-link`)),
		chromedp.WaitVisible(chromedp.ID("settings-form")),
		chromedp.WaitVisible(chromedp.CSS(`#members-list tbody tr[data-username="hana.host"]`)))
	host.settled("the room's settings")
	if path := pathOf(host.location()); path != "/rooms/"+roomID+"/settings" {
		t.Errorf("settings at %s, want /rooms/%s/settings", path, roomID)
	}
	settings := eval[map[string]any](host, "read the settings form", `({
		name: document.getElementById('settings-name').value,
		lobby: document.getElementById('settings-lobby').checked,
		guests: document.getElementById('settings-guests').checked,
		hostRole: document.querySelector('#members-list tbody tr[data-username="hana.host"] select').value,
	})`)
	if settings["name"] != roomName || settings["lobby"] != true || settings["guests"] != true || settings["hostRole"] != "host" {
		t.Errorf("the settings page shows %v, want the name %q, lobby and guests on, and hana.host as host", settings, roomName)
	}

	host.do("add the member",
		chromedp.SendKeys(chromedp.ID("add-member-username"), memberAcct.username),
		chromedp.SetValue(chromedp.ID("add-member-role"), "member"),
		chromedp.Click(chromedp.ID("add-member-submit")),
		chromedp.WaitVisible(chromedp.CSS(`#members-list tbody tr[data-username="milo.member"][data-role="member"]`)))
	if who := eval[string](host, "read the member's row",
		`document.querySelector('#members-list tbody tr[data-username="milo.member"]').textContent`); !strings.Contains(who, memberAcct.displayName) {
		t.Errorf("the member's row says %q, want it to name %s", who, memberAcct.displayName)
	}

	createInvite := func(role, maxUses, after string) (inviteURL, inviteID string) {
		t.Helper()
		host.do("create a "+role+" link for "+maxUses+" use(s)",
			chromedp.SetValue(chromedp.ID("invite-role"), role),
			chromedp.SetValue(chromedp.ID("invite-expires"), "3600"),
			chromedp.SetValue(chromedp.ID("invite-max-uses"), maxUses),
			chromedp.Click(chromedp.ID("invite-submit")))
		host.waitTrue("the new link is shown", `(() => {
			const u = document.getElementById('invite-url');
			return u.value !== '' && u.dataset.inviteId && u.dataset.inviteId !== `+js(after)+` &&
				document.querySelector('#invites-list li[data-invite-id="' + u.dataset.inviteId + '"]');
		})()`)
		inviteURL = eval[string](host, "read #invite-url", `document.getElementById('invite-url').value`)
		inviteID = eval[string](host, "read the invite id", `document.getElementById('invite-url').dataset.inviteId`)
		if want := srv.publicURL + "/join/" + roomID + "#"; !strings.HasPrefix(inviteURL, want) || len(inviteURL) < len(want)+20 {
			t.Fatalf("#invite-url is %q, want %s<token>", inviteURL, want)
		}
		if !eval[bool](host, "the link field is read-only", `document.getElementById('invite-url').readOnly`) {
			t.Error("#invite-url is not read-only")
		}
		return inviteURL, inviteID
	}
	onceURL, onceID := createInvite("guest", "1", "")
	host.do("press Copy", chromedp.Click(chromedp.ID("invite-copy")))
	host.waitTrue("Copy says what it did", `/cop/i.test(document.getElementById('invite-status').textContent)`)
	spareURL, spareID := createInvite("guest", "5", onceID)
	if onceURL == spareURL {
		t.Fatal("two invitation links are the same")
	}
	for _, id := range []string{onceID, spareID} {
		if st := eval[string](host, "read the state of invite "+id,
			`document.querySelector('#invites-list li[data-invite-id=`+js(id)+`]').dataset.state`); st != "live" {
			t.Errorf("invite %s is %q in the list, want live", id, st)
		}
	}
	host.screenshot("room-settings.png")
	b.watcher.check(t, "room settings")

	// ---- A guest joins through the one-use link in a browser context of
	// their own. ----
	guest := &page{t: t, ctx: b.newIncognitoTab(t), watcher: b.watcher}
	guest.do("open the one-use link",
		chromedp.Navigate(onceURL),
		chromedp.WaitVisible(chromedp.ID("join-form")))
	if loc := guest.location(); strings.Contains(loc, "#") {
		t.Errorf("the invitation token stays in the address bar: %s", loc)
	}
	guest.do("give a name and join",
		chromedp.SendKeys(chromedp.ID("join-name"), guestName),
		chromedp.Click(chromedp.ID("join-submit")),
		chromedp.WaitVisible(chromedp.ID("join-room-name")))
	expectJoined(guest, roomName, guestName)
	if left := eval[string](guest, "read sessionStorage", `sessionStorage.getItem('parley.invite') || ''`); left != "" {
		t.Errorf("the token stays in sessionStorage after joining: %q", left)
	}
	guest.screenshot("join.png")

	// The guest session, not the token, keeps them in: the page again
	// without a token shows the room.
	guest.do("open the room's join page without a token",
		chromedp.Navigate(srv.publicURL+"/join/"+roomID),
		chromedp.WaitVisible(chromedp.ID("join-room-name")))
	expectJoined(guest, roomName, guestName)
	b.watcher.check(t, "a guest joins")

	// ---- The one-use link does not work twice. ----
	b.watcher.allowHTTPError("/api/v1/invites/redeem", 404)
	late := &page{t: t, ctx: b.newIncognitoTab(t), watcher: b.watcher}
	tryLink(late, "the used-up link", onceURL, "Ivo Late")
	late.screenshot("join-used.png")
	b.watcher.check(t, "a used-up link")

	// ---- A revoked link does not work. ----
	host.do("revoke the spare link",
		chromedp.Click(chromedp.CSS(`#invites-list li[data-invite-id=`+js(spareID)+`] button.revoke`)),
		chromedp.WaitVisible(chromedp.CSS(`#invites-list li[data-invite-id=`+js(spareID)+`][data-state="revoked"]`)))
	if st := eval[string](host, "read the state of the used link",
		`document.querySelector('#invites-list li[data-invite-id=`+js(onceID)+`]').dataset.state`); st != "used" {
		t.Errorf("the one-use link is %q in the list after its use, want used", st)
	}
	if eval[int](host, "count revoke buttons", `document.querySelectorAll('#invites-list button.revoke').length`) != 0 {
		t.Error("a used-up or revoked link still has a Revoke button")
	}
	revoked := &page{t: t, ctx: b.newIncognitoTab(t), watcher: b.watcher}
	tryLink(revoked, "the revoked link", spareURL, "Rita Revoked")
	b.watcher.check(t, "a revoked link")

	// ---- A member link sends a person who is not signed in to sign in
	// (here with a first enrolment on the way) and back to the join page,
	// which then adds their account. The host removes the member first, so
	// that the link is what brings them back. ----
	host.do("remove the member",
		chromedp.Click(chromedp.CSS(`#members-list tbody tr[data-username="milo.member"] button`)),
		chromedp.WaitNotPresent(chromedp.CSS(`#members-list tbody tr[data-username="milo.member"]`)))
	memberURL, _ := createInvite("member", "1", spareID)
	b.watcher.allowHTTPError("/api/v1/invites/redeem", 401) // sign_in_required
	mp := &page{t: t, ctx: b.newIncognitoTab(t), watcher: b.watcher}
	mp.do("open the member link",
		chromedp.Navigate(memberURL),
		chromedp.WaitVisible(chromedp.ID("join-form")))
	mp.do("try to join without signing in",
		chromedp.SendKeys(chromedp.ID("join-name"), "Milo"),
		chromedp.Click(chromedp.ID("join-submit")),
		chromedp.WaitVisible(chromedp.ID("login-form")))
	mp.settled("the sign-in page")
	if loc, _ := url.Parse(mp.location()); loc == nil || loc.Path != "/login" || loc.Query().Get("next") != "/join/"+roomID {
		t.Errorf("a member link sent the person to %s, want /login?next=/join/%s", mp.location(), roomID)
	}
	if kept := eval[string](mp, "read sessionStorage", `sessionStorage.getItem('parley.invite') || ''`); !strings.Contains(kept, roomID) {
		t.Errorf("the token did not wait in sessionStorage during the sign-in detour: %q", kept)
	}
	mp.do("sign in",
		chromedp.SendKeys(chromedp.ID("username"), memberAcct.username),
		chromedp.SendKeys(chromedp.ID("password"), memberAcct.password),
		chromedp.Click(chromedp.ID("login-submit")))
	enrolAuthenticator(ctx, mp) // the account's first sign-in
	saveRecoveryCodes(mp)       // Continue leads back to the join page
	mp.do("back on the join page", chromedp.WaitVisible(chromedp.ID("join-room-name")))
	expectJoined(mp, roomName, memberAcct.displayName)
	if !eval[bool](mp, "the joined state links home", `!document.getElementById('join-home').hidden`) {
		t.Error("a signed-in person's joined state has no link to their rooms")
	}
	if left := eval[string](mp, "read sessionStorage", `sessionStorage.getItem('parley.invite') || ''`); left != "" {
		t.Errorf("the token stays in sessionStorage after joining: %q", left)
	}
	b.watcher.check(t, "a member link with a sign-in detour")

	// The host sees the guest among the people of the room, and the member
	// back in it.
	host.do("reload the settings",
		chromedp.Reload(),
		chromedp.WaitVisible(chromedp.CSS(`#members-list tbody tr[data-member-kind="guest"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#members-list tbody tr[data-username="milo.member"][data-role="member"]`)))
	if who := eval[string](host, "read the guest's row",
		`document.querySelector('#members-list tbody tr[data-member-kind="guest"]').textContent`); !strings.Contains(who, guestName) {
		t.Errorf("the guest's row says %q, want it to name %s", who, guestName)
	}
	b.watcher.check(t, "the people of the room")

	// ---- A room that is not there (or hidden) is "No such room". ----
	const nowhere = "AAAAAAAAAAAAAAAA"
	b.watcher.allowHTTPError("/api/v1/rooms/"+nowhere, 404)
	host.do("open the settings of a room that does not exist",
		chromedp.Navigate(srv.publicURL+"/rooms/"+nowhere+"/settings"),
		chromedp.WaitVisible(chromedp.ID("no-room")))
	if eval[bool](host, "the room panel stays hidden", `!document.getElementById('room').hidden`) {
		t.Error("the settings panel shows for a room that does not exist")
	}
	b.watcher.check(t, "no such room")

	// ---- Deleting the room, with a confirmation step, ends the guest's
	// place in it. ----
	host.do("open the settings again",
		chromedp.Navigate(srv.publicURL+"/rooms/"+roomID+"/settings"),
		chromedp.WaitVisible(chromedp.ID("settings-form")))
	host.do("ask to delete the room",
		chromedp.Click(chromedp.ID("delete-room")),
		chromedp.WaitVisible(chromedp.ID("delete-room-confirm")))
	host.do("cancel once",
		chromedp.Click(chromedp.ID("delete-room-cancel")),
		chromedp.WaitVisible(chromedp.ID("delete-room")),
		chromedp.WaitNotVisible(chromedp.ID("delete-room-confirm")))
	host.do("delete the room for good",
		chromedp.Click(chromedp.ID("delete-room")),
		chromedp.WaitVisible(chromedp.ID("delete-room-confirm")),
		chromedp.Click(chromedp.ID("delete-room-confirm")),
		chromedp.WaitVisible(chromedp.ID("whoami")),
		chromedp.WaitVisible(chromedp.ID("rooms-empty")))
	if n := eval[int](host, "count rooms", `document.querySelectorAll('#rooms-list li').length`); n != 0 {
		t.Errorf("the home page lists %d rooms after the only one was deleted", n)
	}
	// The guest's session may end with the room (401) or outlive it (404).
	b.watcher.allowHTTPError("/api/v1/rooms/"+roomID, 401)
	b.watcher.allowHTTPError("/api/v1/rooms/"+roomID, 404)
	guest.do("the guest reloads the join page",
		chromedp.Reload(),
		chromedp.WaitVisible(chromedp.ID("join-missing")))
	if eval[bool](guest, "the joined state stays hidden", `!document.getElementById('join-joined').hidden`) {
		t.Error("the join page still shows the deleted room")
	}
	b.watcher.check(t, "deleting the room")
}

// expectJoined checks the joined state of the join page.
func expectJoined(p *page, roomName, displayName string) {
	p.t.Helper()
	got := eval[map[string]string](p, "read the joined state", `({
		room: document.getElementById('join-room-name').textContent,
		waiting: document.getElementById('join-waiting').textContent,
		as: document.getElementById('join-as').textContent,
		error: document.getElementById('join-error').textContent,
		meeting: (document.getElementById('join-meeting') || {getAttribute: () => ''}).getAttribute('href') || '',
	})`)
	if got["room"] != roomName {
		p.t.Errorf("#join-room-name says %q, want %q", got["room"], roomName)
	}
	if !strings.Contains(got["waiting"], "lobby") || !strings.Contains(got["waiting"], roomName) {
		p.t.Errorf("#join-waiting says %q, want the lobby of %q", got["waiting"], roomName)
	}
	if !strings.Contains(got["as"], displayName) {
		p.t.Errorf("#join-as says %q, want it to name %s", got["as"], displayName)
	}
	if got["error"] != "" {
		p.t.Errorf("#join-error says %q in the joined state", got["error"])
	}
	if !strings.HasPrefix(got["meeting"], "/rooms/") || strings.Count(got["meeting"], "/") != 2 {
		p.t.Errorf("the joined state's #join-meeting links to %q, want /rooms/{id}", got["meeting"])
	}
	if path := pathOf(p.location()); !strings.HasPrefix(path, "/join/") {
		p.t.Errorf("joined at %s, want /join/…", path)
	}
}

// tryLink opens an invitation link that must not work in a fresh browser
// context, gives a name, and expects the refusal in #join-error.
func tryLink(p *page, what, link, name string) {
	p.t.Helper()
	p.do("open "+what,
		chromedp.Navigate(link),
		chromedp.WaitVisible(chromedp.ID("join-form")))
	p.do("try to join through "+what,
		chromedp.SendKeys(chromedp.ID("join-name"), name),
		chromedp.Click(chromedp.ID("join-submit")))
	p.waitTrue(what+" is refused in #join-error", `document.getElementById('join-error').textContent.trim() !== ''`)
	got := eval[map[string]any](p, "read the refusal", `({
		error: document.getElementById('join-error').textContent,
		joined: !document.getElementById('join-joined').hidden,
		form: !document.getElementById('join-form').hidden,
	})`)
	if got["joined"] == true {
		p.t.Errorf("%s: the page shows the joined state", what)
	}
	if got["form"] == true {
		p.t.Errorf("%s: the form stays open, inviting another try that cannot work", what)
	}
	p.t.Logf("%s: #join-error says %q", what, got["error"])
	if u, err := url.Parse(p.location()); err == nil && u.Fragment != "" {
		p.t.Errorf("%s: the token stays in the address bar", what)
	}
}

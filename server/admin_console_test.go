package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/parley-meet/parley/audit"
	"github.com/parley-meet/parley/auth"
	"github.com/parley-meet/parley/rbac"
	"github.com/parley-meet/parley/store"
	"github.com/parley-meet/parley/store/storetest"
)

// consoleFixture: an admin (root) and a member (bob), both signed in.
type consoleFixture struct {
	ts               *testServer
	admin, bob       *browser
	adminAcct, bobAc account
}

func newConsoleFixture(t *testing.T) *consoleFixture {
	t.Helper()
	ts := startServer(t, nil, generous)
	f := &consoleFixture{ts: ts}
	ts.createUser(t, "root", goodPassword, rbac.RoleAdmin)
	ts.createUser(t, "bob", goodPassword, rbac.RoleMember)
	f.admin, f.bob = ts.browser(t), ts.browser(t)
	f.adminAcct = f.admin.enroll("root", goodPassword)
	f.bobAc = f.bob.enroll("bob", goodPassword)
	return f
}

// countAudit counts the entries with action/outcome.
func (ts *testServer) countAudit(t *testing.T, entry string) int {
	t.Helper()
	n := 0
	for _, a := range ts.auditActions(t) {
		if a == entry {
			n++
		}
	}
	return n
}

// auditText is every stored audit row, printed.
func (ts *testServer) auditText(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	ts.store.ScanAudit(context.Background(), func(r store.AuditRecord) error {
		fmt.Fprintf(&b, "%+v\n", r)
		return nil
	})
	return b.String()
}

// userOf is the "user" object of a console answer.
func userOf(t *testing.T, r reply) map[string]any {
	t.Helper()
	u, ok := r.body["user"].(map[string]any)
	if !ok {
		t.Fatalf("no user in %s", r.raw)
	}
	return u
}

var consoleEndpoints = []struct {
	method, path, right string
}{
	{"GET", "/api/v1/admin/users", rbac.ActAdminUsers},
	{"GET", "/api/v1/admin/users?q=bo", rbac.ActAdminUsers},
	{"POST", "/api/v1/admin/users", rbac.ActAdminUsers},
	{"PUT", "/api/v1/admin/users/bob/roles", rbac.ActAdminUsers},
	{"POST", "/api/v1/admin/users/bob/enrollment-link", rbac.ActAdminUsers},
	{"POST", "/api/v1/admin/users/bob/disable", rbac.ActAdminUsers},
	{"POST", "/api/v1/admin/users/bob/enable", rbac.ActAdminUsers},
	{"POST", "/api/v1/admin/users/bob/reset-mfa", rbac.ActAdminUsers},
	{"POST", "/api/v1/admin/users/bob/unlock", rbac.ActAdminUsers},
	{"POST", "/api/v1/admin/users/bob/revoke-sessions", rbac.ActAdminUsers},
	{"GET", "/api/v1/admin/audit", rbac.ActAdminAudit},
	{"GET", "/api/v1/admin/audit/verify", rbac.ActAdminAudit},
	{"GET", "/api/v1/admin/audit/export", rbac.ActAdminAudit},
	{"GET", "/api/v1/admin/security", rbac.ActAdminAudit},
}

// Every console endpoint: 401 without a session, 403 for a member (audited
// as authz.denied, nothing done), 403 csrf for a cookie POST without the
// token, and the member's refusals change nothing.
func TestConsoleRefusals(t *testing.T) {
	f := newConsoleFixture(t)
	ts := f.ts
	tok := f.bob.post("/api/v1/auth/token", map[string]string{}).str("token")
	if tok == "" {
		t.Fatal("no token")
	}
	anon := ts.browser(t)
	body := map[string]any{"username": "mallory", "display_name": "M"}
	for _, e := range consoleEndpoints {
		var b any
		if e.method != "GET" {
			b = body
			if strings.HasSuffix(e.path, "/roles") {
				b = map[string]any{"roles": []string{"admin"}}
			}
		}
		what := e.method + " " + e.path
		r := anon.do(e.method, e.path, b, nil)
		expect(t, what+" anonymous", r, 401, "unauthenticated")
		checkJSONErrorReply(t, what+" anonymous", r)

		before := ts.countAudit(t, "authz.denied/denied")
		r = f.bob.do(e.method, e.path, b, nil)
		expect(t, what+" member", r, 403, "forbidden")
		checkJSONErrorReply(t, what+" member", r)
		if ts.countAudit(t, "authz.denied/denied") != before+1 {
			t.Errorf("%s: the member's refusal was not audited", what)
		}
		// A member's API token is no better.
		expect(t, what+" member token", anon.do(e.method, e.path, b, map[string]string{"Authorization": "Bearer " + tok}), 403, "forbidden")

		if e.method != "GET" {
			expect(t, what+" admin without CSRF token", f.admin.do(e.method, e.path, b, map[string]string{"X-CSRF-Token": ""}), 403, "csrf")
			expect(t, what+" admin with a wrong CSRF token", f.admin.do(e.method, e.path, b, map[string]string{"X-CSRF-Token": "nope"}), 403, "csrf")
			expect(t, what+" admin from another origin", f.admin.do(e.method, e.path, b, map[string]string{"Origin": "https://evil.example"}), 403, "csrf")
		}
	}
	// The denied entry names the right asked for.
	denied, err := ts.Server.audit.Query(context.Background(), audit.Filter{Action: "authz.denied", Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	rights := map[string]bool{}
	for _, e := range denied {
		var d map[string]string
		json.Unmarshal(e.Details, &d)
		rights[d["action"]] = true
	}
	if !rights[rbac.ActAdminUsers] || !rights[rbac.ActAdminAudit] {
		t.Errorf("denied rights %v", rights)
	}
	// Nothing the refused requests asked for happened.
	if _, err := ts.store.UserByUsername(context.Background(), "mallory"); err == nil {
		t.Error("a refused request created an account")
	}
	expect(t, "bob still signed in", f.bob.get("/api/v1/me"), 200, "")
	if strings.Contains(string(f.bob.get("/api/v1/me").raw), `"admin"`) {
		t.Error("a refused request changed bob's roles")
	}
}

func checkJSONErrorReply(t *testing.T, what string, r reply) {
	t.Helper()
	if !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") || r.str("message") == "" || r.header.Get("Cache-Control") != "no-store" {
		t.Errorf("%s: %v %s", what, r.header, r.raw)
	}
}

// linkToken is the fragment of an enrolment link.
func linkToken(t *testing.T, link string) string {
	t.Helper()
	const prefix = "https://localhost:8443/enroll#"
	if !strings.HasPrefix(link, prefix) || len(link) < len(prefix)+40 {
		t.Fatalf("enrolment link %q", link)
	}
	return strings.TrimPrefix(link, prefix)
}

// activate follows an enrolment link in a fresh browser: password, TOTP.
func (ts *testServer) activate(t *testing.T, token, username string) *browser {
	t.Helper()
	b := ts.browser(t)
	r := b.post("/api/v1/auth/activate", map[string]string{"token": token, "password": goodPassword})
	expect(t, "activate "+username, r, 200, "")
	if r.str("username") != username || r.str("next") != "enroll" {
		t.Fatalf("activate: %s", r.raw)
	}
	ch := r.str("challenge")
	r = b.post("/api/v1/auth/enroll", map[string]string{"challenge": ch})
	expect(t, "enroll "+username, r, 200, "")
	r = b.post("/api/v1/auth/enroll/confirm", map[string]string{"challenge": ch, "code": totpCode(t, r.str("secret"), ts.clock.Now())})
	expect(t, "confirm "+username, r, 200, "")
	b.csrf = r.str("csrf_token")
	return b
}

func TestConsoleCreateUserAndEnrolmentLinks(t *testing.T) {
	f := newConsoleFixture(t)
	ts := f.ts
	r := f.admin.post("/api/v1/admin/users", map[string]string{"username": "Dana", "display_name": "Dana <b>D</b>"})
	expect(t, "create", r, 201, "")
	u := userOf(t, r)
	if u["username"] != "dana" || u["display_name"] != "Dana <b>D</b>" || u["activated"] != false || u["mfa_enabled"] != false ||
		u["disabled"] != false || u["last_login_at"] != nil || u["id"] == "" || fmt.Sprint(u["roles"]) != "[member]" {
		t.Errorf("created user: %s", r.raw)
	}
	link := r.str("enrollment_url")
	tok := linkToken(t, link)
	ts.expectAudit(t, "user.create/success")
	ts.expectAudit(t, "user.enroll_link/success")

	// Refusals, each audited as a failure.
	for _, c := range []struct {
		name   string
		body   any
		status int
		code   string
	}{
		{"taken", map[string]string{"username": "dana", "display_name": "Other"}, 409, "username_taken"},
		{"bad username", map[string]string{"username": "a, admin", "display_name": "X"}, 400, "invalid_username"},
		{"bad display name", map[string]string{"username": "ellen", "display_name": "bad\x00name"}, 400, "invalid_display_name"},
		{"unknown role", map[string]string{"username": "ellen", "display_name": "E", "role": "host"}, 400, "invalid_role"},
		{"a password is not for the console", map[string]string{"username": "ellen", "password": goodPassword}, 400, "bad_json"},
	} {
		expect(t, c.name, f.admin.post("/api/v1/admin/users", c.body), c.status, c.code)
	}
	if n := ts.countAudit(t, "user.create/failure"); n != 4 {
		t.Errorf("%d user.create failures audited, want 4", n)
	}

	// The link works once: Dana chooses a password and enrols.
	dana := ts.activate(t, tok, "dana")
	me := dana.get("/api/v1/me")
	expect(t, "dana signed in", me, 200, "")
	if me.str("username") != "dana" {
		t.Errorf("me: %s", me.raw)
	}
	expect(t, "link used twice", ts.browser(t).post("/api/v1/auth/activate", map[string]string{"token": tok, "password": goodPassword}), 401, "invalid_token")
	// Enrolled: no new link (it would set a password past the second factor).
	expect(t, "link for an enrolled account", f.admin.post("/api/v1/admin/users/dana/enrollment-link", map[string]string{}), 409, "already_enrolled")
	expect(t, "link for nobody", f.admin.post("/api/v1/admin/users/nobody/enrollment-link", nil), 404, "not_found")

	// A new link replaces the old one of an account that has not enrolled.
	r = f.admin.post("/api/v1/admin/users", map[string]string{"username": "erin", "display_name": "Erin"})
	expect(t, "create erin", r, 201, "")
	old := linkToken(t, r.str("enrollment_url"))
	r = f.admin.post("/api/v1/admin/users/erin/enrollment-link", nil)
	expect(t, "new link", r, 200, "")
	fresh := linkToken(t, r.str("enrollment_url"))
	if fresh == old || userOf(t, r)["username"] != "erin" {
		t.Errorf("new link: %s", r.raw)
	}
	expect(t, "old link", ts.browser(t).post("/api/v1/auth/activate", map[string]string{"token": old, "password": goodPassword}), 401, "invalid_token")
	ts.activate(t, fresh, "erin")

	// After reset-mfa an enrolled account can be given a link again.
	expect(t, "reset dana", f.admin.post("/api/v1/admin/users/dana/reset-mfa", nil), 200, "")
	r = f.admin.post("/api/v1/admin/users/dana/enrollment-link", nil)
	expect(t, "link after reset", r, 200, "")
	ts.clock.Advance(30 * time.Second)
	ts.activate(t, linkToken(t, r.str("enrollment_url")), "dana")
	// Not for a disabled account.
	expect(t, "disable erin", f.admin.post("/api/v1/admin/users/erin/disable", nil), 200, "")
	expect(t, "reset erin", f.admin.post("/api/v1/admin/users/erin/reset-mfa", nil), 200, "")
	expect(t, "link for a disabled account", f.admin.post("/api/v1/admin/users/erin/enrollment-link", nil), 409, "account_disabled")

	// No link, and no token in one, reaches the log or the audit log.
	for _, secret := range []string{tok, old, fresh} {
		if strings.Contains(ts.logs.String(), secret) || strings.Contains(ts.auditText(t), secret) {
			t.Error("an enrolment link token was logged or audited")
		}
	}
}

func TestConsoleDisableEnableRevoke(t *testing.T) {
	f := newConsoleFixture(t)
	ts := f.ts
	tok := f.bob.post("/api/v1/auth/token", map[string]string{}).str("token")
	bearer := map[string]string{"Authorization": "Bearer " + tok}
	expect(t, "bob's token", ts.browser(t).do("GET", "/api/v1/me", nil, bearer), 200, "")

	r := f.admin.post("/api/v1/admin/users/bob/disable", map[string]string{})
	expect(t, "disable", r, 200, "")
	if userOf(t, r)["disabled"] != true {
		t.Errorf("disable: %s", r.raw)
	}
	expect(t, "bob's session after disable", f.bob.get("/api/v1/me"), 401, "unauthenticated")
	// The account service's entry carries the admin's address.
	dis, err := ts.Server.audit.Query(context.Background(), audit.Filter{Action: "user.disable", Limit: 10})
	if err != nil || len(dis) != 1 || dis[0].ClientIP == "" || !strings.HasPrefix(dis[0].Target, "user:") {
		t.Errorf("user.disable audit entries: %+v %v", dis, err)
	}
	expect(t, "bob's token after disable", ts.browser(t).do("GET", "/api/v1/me", nil, bearer), 401, "unauthenticated")
	expect(t, "bob signs in while disabled", ts.browser(t).post("/api/v1/auth/login", map[string]string{"username": "bob", "password": goodPassword}), 403, "account_disabled")
	ts.expectAudit(t, "user.disable/success")

	r = f.admin.post("/api/v1/admin/users/bob/enable", nil)
	expect(t, "enable", r, 200, "")
	if userOf(t, r)["disabled"] != false {
		t.Errorf("enable: %s", r.raw)
	}
	ts.expectAudit(t, "user.enable/success")
	ts.clock.Advance(30 * time.Second)
	b1, b2 := ts.browser(t), ts.browser(t)
	expect(t, "bob signs in again", b1.signIn(f.bobAc), 200, "")
	ts.clock.Advance(30 * time.Second)
	expect(t, "and elsewhere", b2.signIn(f.bobAc), 200, "")
	tok = b2.post("/api/v1/auth/token", map[string]string{}).str("token")
	bearer = map[string]string{"Authorization": "Bearer " + tok}

	r = f.admin.post("/api/v1/admin/users/bob/revoke-sessions", nil)
	expect(t, "revoke", r, 200, "")
	if r.body["sessions_ended"] != float64(2) || userOf(t, r)["disabled"] != false {
		t.Errorf("revoke: %s", r.raw)
	}
	expect(t, "first session after revoke", b1.get("/api/v1/me"), 401, "unauthenticated")
	expect(t, "second session after revoke", b2.get("/api/v1/me"), 401, "unauthenticated")
	expect(t, "token after revoke", ts.browser(t).do("GET", "/api/v1/me", nil, bearer), 401, "unauthenticated")
	ts.expectAudit(t, "user.sessions_revoked/success")
	// Revoking is not disabling: bob signs in again.
	ts.clock.Advance(30 * time.Second)
	expect(t, "sign in after revoke", ts.browser(t).signIn(f.bobAc), 200, "")
	expect(t, "the admin's own session is untouched", f.admin.get("/api/v1/me"), 200, "")

	// The last enabled admin stays.
	expect(t, "disable the last admin", f.admin.post("/api/v1/admin/users/root/disable", nil), 409, "last_admin")
	expect(t, "still signed in", f.admin.get("/api/v1/me"), 200, "")
	ts.expectAudit(t, "user.disable/failure")
	for _, action := range []string{"disable", "enable", "reset-mfa", "unlock", "revoke-sessions"} {
		expect(t, action+" nobody", f.admin.post("/api/v1/admin/users/nobody/"+action, nil), 404, "not_found")
		expect(t, action+" with a body", f.admin.post("/api/v1/admin/users/bob/"+action, map[string]any{"force": true}), 400, "bad_json")
	}
	expect(t, "encoded path", f.admin.post("/api/v1/admin/users/b%6fb/disable", nil), 404, "not_found")
	// Nothing was done to the name that has no account: five failures.
	about, _ := ts.Server.audit.Query(context.Background(), audit.Filter{Target: "username:nobody", Limit: 100})
	for _, e := range about {
		if e.Outcome != audit.Failure || e.Actor == "" {
			t.Errorf("entry about nobody: %+v", e)
		}
	}
	if len(about) != 5 {
		t.Errorf("%d entries about nobody, want 5", len(about))
	}
	// With a second admin, the first may be disabled.
	expect(t, "promote bob", f.admin.do("PUT", "/api/v1/admin/users/bob/roles", map[string]any{"roles": []string{"admin"}}, nil), 200, "")
	expect(t, "disable root now", f.admin.post("/api/v1/admin/users/root/disable", nil), 200, "")
	expect(t, "root's own session ended", f.admin.get("/api/v1/me"), 401, "unauthenticated")
}

// Revoking sessions closes the user's meeting sockets (the keep-alive).
func TestConsoleRevokeClosesSockets(t *testing.T) {
	f := newMeetingFixture(t, false, nil)
	ms := f.ms
	ms.createUser(t, "root", goodPassword, rbac.RoleAdmin)
	admin := ms.browser(t)
	admin.enroll("root", goodPassword)
	s := ms.open(t, f.bob, f.room)
	s.join()
	expect(t, "revoke", admin.post("/api/v1/admin/users/bob/revoke-sessions", nil), 200, "")
	s.expectClose(websocket.ClosePolicyViolation, 2*time.Second)
}

func TestConsoleResetMFA(t *testing.T) {
	f := newConsoleFixture(t)
	ts := f.ts
	r := f.admin.post("/api/v1/admin/users/bob/reset-mfa", nil)
	expect(t, "reset", r, 200, "")
	if u := userOf(t, r); u["mfa_enabled"] != false || u["activated"] != true {
		t.Errorf("reset: %s", r.raw)
	}
	ts.expectAudit(t, "user.reset_mfa/success")
	expect(t, "bob's session after reset", f.bob.get("/api/v1/me"), 401, "unauthenticated")
	r = ts.browser(t).post("/api/v1/auth/login", map[string]string{"username": "bob", "password": goodPassword})
	expect(t, "bob signs in", r, 200, "")
	if r.str("next") != "enroll" {
		t.Errorf("after reset the next step is %q, want enroll", r.str("next"))
	}
	// The old authenticator no longer finishes a sign-in.
	b := ts.browser(t)
	ch := b.post("/api/v1/auth/login", map[string]string{"username": "bob", "password": goodPassword}).str("challenge")
	expect(t, "old code", b.post("/api/v1/auth/mfa", map[string]string{"challenge": ch, "code": totpCode(t, f.bobAc.secret, ts.clock.Now())}), 401, "invalid_challenge")
}

// lookupUser finds one account in the console's list.
func lookupUser(t *testing.T, b *browser, username string) map[string]any {
	t.Helper()
	r := b.get("/api/v1/admin/users?q=" + url.QueryEscape(username))
	expect(t, "list "+username, r, 200, "")
	for _, v := range r.body["users"].([]any) {
		if u := v.(map[string]any); u["username"] == username {
			return u
		}
	}
	t.Fatalf("%s not listed: %s", username, r.raw)
	return nil
}

func TestConsoleUnlock(t *testing.T) {
	f := newConsoleFixture(t)
	ts := f.ts
	ts.createUser(t, "dave", goodPassword, rbac.RoleMember)
	b := ts.browser(t)
	wrong := map[string]string{"username": "dave", "password": "not the password at all"}
	throttled := false
	for i := 0; i < 10 && !throttled; i++ {
		r := b.post("/api/v1/auth/login", wrong)
		throttled = r.status == 429
	}
	if !throttled {
		t.Fatal("wrong passwords did not throttle the account")
	}
	expect(t, "right password while throttled", b.post("/api/v1/auth/login", map[string]string{"username": "dave", "password": goodPassword}), 429, "rate_limited")
	u := lookupUser(t, f.admin, "dave")
	if u["throttled"] != true || u["locked"] != false || u["failed_sign_ins"].(float64) < 5 {
		t.Errorf("throttled dave: %v", u)
	}
	r := f.admin.post("/api/v1/admin/users/dave/unlock", nil)
	expect(t, "unlock", r, 200, "")
	if u := userOf(t, r); r.body["was_throttled"] != true || u["throttled"] != false || u["failed_sign_ins"] != float64(0) {
		t.Errorf("unlock: %s", r.raw)
	}
	ts.expectAudit(t, "user.unlock/success")
	expect(t, "right password after unlock", b.post("/api/v1/auth/login", map[string]string{"username": "dave", "password": goodPassword}), 200, "")

	// Twenty failures lock the name; the list says so and unlock lifts it.
	locked := false
	for i := 0; i < 40 && !locked; i++ {
		r := b.post("/api/v1/auth/login", wrong)
		if r.status == 429 {
			if r.str("error") == "account_locked" {
				locked = true
				break
			}
			secs, _ := strconv.Atoi(r.header.Get("Retry-After"))
			ts.clock.Advance(time.Duration(secs) * time.Second)
		}
	}
	if !locked {
		t.Fatal("twenty failures did not lock the account")
	}
	// The admin's session idled out meanwhile.
	expect(t, "admin signs in again", f.admin.signIn(f.adminAcct), 200, "")
	if u := lookupUser(t, f.admin, "dave"); u["locked"] != true || u["throttled"] != true {
		t.Errorf("locked dave: %v", u)
	}
	expect(t, "unlock again", f.admin.post("/api/v1/admin/users/dave/unlock", nil), 200, "")
	expect(t, "right password after the second unlock", b.post("/api/v1/auth/login", map[string]string{"username": "dave", "password": goodPassword}), 200, "")
	r = f.admin.post("/api/v1/admin/users/dave/unlock", nil)
	expect(t, "unlock a name that is not throttled", r, 200, "")
	if r.body["was_throttled"] != false {
		t.Errorf("unlock twice: %s", r.raw)
	}
}

func TestConsoleUserList(t *testing.T) {
	f := newConsoleFixture(t)
	ts := f.ts
	for _, a := range []auth.NewAccount{
		{Username: "alice", DisplayName: "Alice Liddell"},
		{Username: "zed", DisplayName: "Ålex Salo"},
		{Username: "carl", DisplayName: "Carl Palmer"},
	} {
		a.Role = rbac.RoleMember
		if _, _, err := ts.auth.CreateAccount(context.Background(), a, "test"); err != nil {
			t.Fatal(err)
		}
	}
	names := func(q string) string {
		r := f.admin.get("/api/v1/admin/users?q=" + url.QueryEscape(q))
		expect(t, "search "+q, r, 200, "")
		var out []string
		for _, v := range r.body["users"].([]any) {
			out = append(out, v.(map[string]any)["username"].(string))
		}
		return strings.Join(out, ",")
	}
	for q, want := range map[string]string{
		"":           "alice,bob,carl,root,zed",
		"AL":         "alice,carl,zed", // username alice, display names "Carl Palmer" and "Ålex Salo"
		"liddell":    "alice",
		"ÅLEX":       "zed",
		"  bob ":     "bob",
		"nobody":     "",
		"%":          "",
		"_":          "",
		"' OR 1=1 -": "",
	} {
		if got := names(q); got != want {
			t.Errorf("q=%q: %s, want %s", q, got, want)
		}
	}
	expect(t, "long search", f.admin.get("/api/v1/admin/users?q="+strings.Repeat("a", 65)), 400, "invalid_query")
	r := f.admin.get("/api/v1/admin/users?q=bob")
	u := r.body["users"].([]any)[0].(map[string]any)
	for _, k := range []string{"id", "username", "display_name", "roles", "disabled", "mfa_enabled", "activated", "locked", "throttled", "failed_sign_ins", "last_login_at", "created_at"} {
		if _, ok := u[k]; !ok {
			t.Errorf("user lacks %s: %v", k, u)
		}
	}
	if at, _ := time.Parse(time.RFC3339, u["last_login_at"].(string)); !at.Equal(ts.clock.Now()) {
		t.Errorf("last_login_at %v, want %v", u["last_login_at"], ts.clock.Now())
	}
	if a := lookupUser(t, f.admin, "alice"); a["last_login_at"] != nil || a["activated"] != false {
		t.Errorf("alice: %v", a)
	}
}

// recordAt records a test event at a time of the test clock.
func (ts *testServer) recordAt(t *testing.T, e audit.Event) int64 {
	t.Helper()
	en, err := ts.Server.audit.Record(context.Background(), e)
	if err != nil {
		t.Fatal(err)
	}
	return en.Seq
}

func entrySeqs(t *testing.T, r reply) []int64 {
	t.Helper()
	var out []int64
	for _, v := range r.body["entries"].([]any) {
		out = append(out, int64(v.(map[string]any)["seq"].(float64)))
	}
	return out
}

func TestConsoleAuditList(t *testing.T) {
	f := newConsoleFixture(t)
	ts := f.ts
	t0 := ts.clock.Now()
	var seqs []int64
	for i := 0; i < 5; i++ {
		outcome := audit.Success
		if i%2 == 1 {
			outcome = audit.Denied
		}
		seqs = append(seqs, ts.recordAt(t, audit.Event{Actor: "user:x", Action: fmt.Sprintf("test.step%d", i), Target: "room:r",
			Outcome: outcome, ClientIP: "192.0.2.9", Details: map[string]any{"n": i, "note": "<script>"}}))
		ts.clock.Advance(time.Hour)
	}
	seqY := ts.recordAt(t, audit.Event{Actor: "user:y", Action: "test.step0", Outcome: audit.Success})
	seqOther := ts.recordAt(t, audit.Event{Actor: "user:x", Action: "tests.other", Outcome: audit.Success})
	// The admin's session idled out meanwhile.
	expect(t, "admin signs in again", f.admin.signIn(f.adminAcct), 200, "")
	get := func(q string) reply {
		t.Helper()
		r := f.admin.get("/api/v1/admin/audit?" + q)
		expect(t, "audit "+q, r, 200, "")
		return r
	}
	// An entry comes back whole, details as an object.
	r := get("actor=user:x&action=test.step0")
	if len(r.body["entries"].([]any)) != 1 || r.body["next_before_seq"] != nil {
		t.Fatalf("one entry: %s", r.raw)
	}
	e := r.body["entries"].([]any)[0].(map[string]any)
	d, _ := e["details"].(map[string]any)
	if e["seq"] != float64(seqs[0]) || e["actor"] != "user:x" || e["action"] != "test.step0" || e["target"] != "room:r" ||
		e["outcome"] != "success" || e["client_ip"] != "192.0.2.9" || d["note"] != "<script>" || d["n"] != float64(0) {
		t.Errorf("entry: %v", e)
	}
	if at, err := time.Parse(time.RFC3339, e["at"].(string)); err != nil || !at.Equal(t0) {
		t.Errorf("at %v, want %v", e["at"], t0)
	}
	if bytes.Contains(r.raw, []byte("<script>")) {
		t.Error("the answer carries markup unescaped")
	}

	// Paging, newest first.
	var got []int64
	q := "actor=user:x&action=test.*&limit=2"
	for page := 0; page < 5; page++ {
		r := get(q)
		got = append(got, entrySeqs(t, r)...)
		next, ok := r.body["next_before_seq"].(float64)
		if !ok {
			break
		}
		if int64(next) != got[len(got)-1] {
			t.Errorf("next_before_seq %v, last entry %d", next, got[len(got)-1])
		}
		q = "actor=user:x&action=test.*&limit=2&before_seq=" + strconv.FormatInt(int64(next), 10)
	}
	if fmt.Sprint(got) != fmt.Sprint([]int64{seqs[4], seqs[3], seqs[2], seqs[1], seqs[0]}) {
		t.Errorf("paged %v, want %v reversed", got, seqs)
	}

	for _, c := range []struct {
		q    string
		want []int64
	}{
		{"action=test.step0", []int64{seqY, seqs[0]}},
		{"action=test.step0&actor=user:y", []int64{seqY}},
		{"actor=user:x&outcome=denied", []int64{seqs[3], seqs[1]}},
		{"actor=user:x&action=test*", []int64{seqOther, seqs[4], seqs[3], seqs[2], seqs[1], seqs[0]}},
		{"actor=user:x&from=" + url.QueryEscape(t0.Add(time.Hour).Format(time.RFC3339)) + "&to=" + url.QueryEscape(t0.Add(3*time.Hour).Format(time.RFC3339)), []int64{seqs[2], seqs[1]}},
		{"actor=user:x&action=test.*&from=2036-11-26T11:00:10%2B02:00", []int64{seqs[4], seqs[3], seqs[2], seqs[1], seqs[0]}},
		{"target=room:r&limit=1", []int64{seqs[4]}},
		{"actor=USER:X", nil},
	} {
		if g := entrySeqs(t, get(c.q)); fmt.Sprint(g) != fmt.Sprint(c.want) {
			t.Errorf("%s: %v, want %v", c.q, g, c.want)
		}
	}
	// The default page is 100 entries.
	for i := 0; i < 110; i++ {
		ts.recordAt(t, audit.Event{Actor: "system", Action: "test.bulk", Outcome: audit.Success})
	}
	r = get("")
	if n := len(r.body["entries"].([]any)); n != 100 || r.body["next_before_seq"] == nil {
		t.Errorf("default page: %d entries, next %v", n, r.body["next_before_seq"])
	}
	if n := len(get("limit=500").body["entries"].([]any)); n < 110 {
		t.Errorf("limit 500: %d", n)
	}
	for _, bad := range []string{"limit=0", "limit=501", "limit=x", "from=yesterday", "to=2036-11-26", "outcome=maybe",
		"before_seq=0", "before_seq=-4", "from=2036-11-27T00:00:00Z&to=2036-11-26T00:00:00Z", "action=*", "actor=" + strings.Repeat("a", 300)} {
		r := f.admin.get("/api/v1/admin/audit?" + bad)
		expect(t, bad, r, 400, "invalid_query")
		checkJSONErrorReply(t, bad, r)
	}
}

func TestConsoleAuditVerify(t *testing.T) {
	f := newConsoleFixture(t)
	ts := f.ts
	r := f.admin.get("/api/v1/admin/audit/verify")
	expect(t, "verify", r, 200, "")
	head, _ := ts.store.AuditHead(context.Background())
	// The verify entry itself comes after the walk.
	if r.body["ok"] != true || r.body["entries"] != float64(head.Seq-1) || r.body["head_seq"] != float64(head.Seq-1) ||
		len(r.str("head_hash")) != 64 || r.body["broken_at"] != nil || r.body["reason"] != nil {
		t.Errorf("verify: %s (head %d)", r.raw, head.Seq)
	}
	ts.expectAudit(t, "audit.verify/success")

	db := storetest.DB(t, store.Options{DataDir: ts.Server.cfg.DataDir})
	if _, err := db.Exec(`UPDATE audit_log SET actor = 'user:someone-else' WHERE seq = 3`); err != nil {
		t.Fatal(err)
	}
	r = f.admin.get("/api/v1/admin/audit/verify")
	expect(t, "verify after tampering", r, 200, "")
	head, _ = ts.store.AuditHead(context.Background())
	if r.body["ok"] != false || r.body["broken_at"] != float64(3) || r.str("reason") == "" ||
		r.body["head_seq"] != float64(head.Seq-1) || r.body["entries"] != float64(head.Seq-1) {
		t.Errorf("verify after tampering: %s", r.raw)
	}
	ts.expectAudit(t, "audit.verify/failure")
	// A deleted row: the entries are fewer than the head says.
	if _, err := db.Exec(`DELETE FROM audit_log WHERE seq = 2`); err != nil {
		t.Fatal(err)
	}
	r = f.admin.get("/api/v1/admin/audit/verify")
	head, _ = ts.store.AuditHead(context.Background())
	if r.body["ok"] != false || r.body["broken_at"] != float64(2) || r.body["entries"] != float64(head.Seq-2) {
		t.Errorf("verify after a deletion: %s (head %d)", r.raw, head.Seq)
	}
	// A row that is no JSON object is shown with null details.
	if _, err := db.Exec(`UPDATE audit_log SET details = 'not json' WHERE seq = 4`); err != nil {
		t.Fatal(err)
	}
	r = f.admin.get("/api/v1/admin/audit?before_seq=5&limit=1")
	expect(t, "list a broken row", r, 200, "")
	if e := r.body["entries"].([]any)[0].(map[string]any); e["seq"] != float64(4) || e["details"] != nil {
		t.Errorf("broken row: %s", r.raw)
	}
}

// exportLines reads a JSON Lines export.
func exportLines(t *testing.T, raw []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

func TestConsoleAuditExport(t *testing.T) {
	f := newConsoleFixture(t)
	ts := f.ts
	for i := 0; i < 1100; i++ {
		ts.recordAt(t, audit.Event{Actor: "system", Action: "test.bulk", Outcome: audit.Success, Details: map[string]any{"i": i}})
	}
	ts.recordAt(t, audit.Event{Actor: "user:x", Action: "test.special", Outcome: audit.Denied})
	r := f.admin.get("/api/v1/admin/audit/export")
	expect(t, "export", r, 200, "")
	if ct := r.header.Get("Content-Type"); ct != "application/x-ndjson" {
		t.Errorf("content type %q", ct)
	}
	if cd := r.header.Get("Content-Disposition"); cd != `attachment; filename="parley-audit-2036-11-26.jsonl"` {
		t.Errorf("content disposition %q", cd)
	}
	lines := exportLines(t, r.raw)
	head, _ := ts.store.AuditHead(context.Background())
	// Every entry up to and including the export's own, oldest first, and
	// the chain links hold line to line.
	if int64(len(lines)) != head.Seq {
		t.Fatalf("%d lines, head %d", len(lines), head.Seq)
	}
	prev := audit.GenesisHash
	for i, l := range lines {
		if l["seq"] != float64(i+1) || l["prev_hash"] != prev || len(l["hash"].(string)) != 64 {
			t.Fatalf("line %d: %v", i, l)
		}
		if _, ok := l["details"].(map[string]any); !ok {
			t.Fatalf("line %d details: %v", i, l["details"])
		}
		prev = l["hash"].(string)
	}
	if last := lines[len(lines)-1]; last["action"] != "audit.export" || last["outcome"] != "success" {
		t.Errorf("last line %v, want the export's own entry", last)
	}

	// Filters as in the list.
	r = f.admin.get("/api/v1/admin/audit/export?action=test.*&outcome=denied")
	expect(t, "filtered export", r, 200, "")
	lines = exportLines(t, r.raw)
	if len(lines) != 1 || lines[0]["action"] != "test.special" || lines[0]["actor"] != "user:x" {
		t.Errorf("filtered export: %s", r.raw)
	}
	expect(t, "bad filter", f.admin.get("/api/v1/admin/audit/export?outcome=maybe"), 400, "invalid_query")
	expect(t, "limit", f.admin.get("/api/v1/admin/audit/export?limit=5"), 400, "invalid_query")
	if n := ts.countAudit(t, "audit.export/success"); n != 2 {
		t.Errorf("%d exports audited, want 2", n)
	}
	exports, _ := ts.Server.audit.Query(context.Background(), audit.Filter{Action: "audit.export", Limit: 1})
	if string(exports[0].Details) != `{"action":"test.*","outcome":"denied"}` {
		t.Errorf("export details %s", exports[0].Details)
	}
}

func TestConsoleSecurityOverview(t *testing.T) {
	f := newConsoleFixture(t)
	ts := f.ts
	ctx := context.Background()
	ts.createUser(t, "fay", goodPassword, rbac.RoleMember)
	fay := ts.browser(t).enroll("fay", goodPassword)
	if _, _, err := ts.auth.CreateAccount(ctx, auth.NewAccount{Username: "ghost", DisplayName: "Ghost", Role: rbac.RoleMember}, "test"); err != nil {
		t.Fatal(err)
	}
	login := func(name, password string) int {
		return ts.browser(t).post("/api/v1/auth/login", map[string]string{"username": name, "password": password}).status
	}
	// 09:00 hour: two wrong passwords.
	for i := 0; i < 2; i++ {
		if s := login("fay", "wrong password number "+strconv.Itoa(i)); s != 401 {
			t.Fatalf("wrong password: %d", s)
		}
	}
	// 10:00 hour: a wrong password for a name that does not exist, a wrong
	// code, five wrong passwords and a throttled attempt, and a recovery
	// code used.
	ts.clock.Advance(time.Hour)
	expect(t, "admin signs in again", f.admin.signIn(f.adminAcct), 200, "")
	if s := login("nobody-at-all", "whatever password"); s != 401 {
		t.Fatalf("unknown user: %d", s)
	}
	b := ts.browser(t)
	ch := b.post("/api/v1/auth/login", map[string]string{"username": "fay", "password": goodPassword}).str("challenge")
	wrong := "000000"
	if wrong == totpCode(t, fay.secret, ts.clock.Now()) {
		wrong = "111111"
	}
	expect(t, "wrong code", b.post("/api/v1/auth/mfa", map[string]string{"challenge": ch, "code": wrong}), 401, "invalid_code")
	expect(t, "recovery code", b.post("/api/v1/auth/mfa", map[string]string{"challenge": ch, "recovery_code": fay.recovery[0]}), 200, "")
	failures, throttled := 0, 0
	for i := 0; i < 6; i++ {
		switch s := login("bob", "not bob's password"); s {
		case 401:
			failures++
		case 429:
			throttled++
		default:
			t.Fatalf("bob: %d", s)
		}
	}
	if failures != 5 || throttled != 1 {
		t.Fatalf("%d failures, %d throttled", failures, throttled)
	}

	r := f.admin.get("/api/v1/admin/security")
	expect(t, "overview", r, 200, "")
	hours := r.body["hours"].([]any)
	if len(hours) != 24 {
		t.Fatalf("%d hours", len(hours))
	}
	bucket := func(i int) (time.Time, float64, float64) {
		h := hours[i].(map[string]any)
		start, err := time.Parse(time.RFC3339, h["start"].(string))
		if err != nil {
			t.Fatal(err)
		}
		return start, h["failed_sign_ins"].(float64), h["throttled"].(float64)
	}
	start, failed, thr := bucket(23)
	if !start.Equal(time.Date(2036, 11, 26, 10, 0, 0, 0, time.UTC)) || failed != 7 || thr != 1 {
		t.Errorf("10:00 bucket: %v", hours[23])
	}
	start, failed, thr = bucket(22)
	if !start.Equal(time.Date(2036, 11, 26, 9, 0, 0, 0, time.UTC)) || failed != 2 || thr != 0 {
		t.Errorf("09:00 bucket: %v", hours[22])
	}
	if start, failed, _ = bucket(0); !start.Equal(time.Date(2036, 11, 25, 11, 0, 0, 0, time.UTC)) || failed != 0 {
		t.Errorf("first bucket: %v", hours[0])
	}
	used := r.body["recovery_codes_used"].([]any)
	if len(used) != 1 || used[0].(map[string]any)["username"] != "fay" || used[0].(map[string]any)["at"] != ts.clock.Now().Format(time.RFC3339) {
		t.Errorf("recovery codes used: %v", used)
	}
	if n := len(r.body["inactive_accounts"].([]any)); n != 0 {
		t.Errorf("inactive accounts on the first day: %v", r.body["inactive_accounts"])
	}
	r = f.admin.get("/api/v1/admin/security?hours=2")
	if h := r.body["hours"].([]any); len(h) != 2 || h[1].(map[string]any)["failed_sign_ins"] != float64(7) {
		t.Errorf("two hours: %s", r.raw)
	}
	for _, bad := range []string{"0", "169", "x", "-1"} {
		expect(t, "hours="+bad, f.admin.get("/api/v1/admin/security?hours="+bad), 400, "invalid_query")
	}

	// A month on: the accounts nobody used are inactive; the recovery code
	// is too old to list.
	ts.clock.Advance(31 * 24 * time.Hour)
	expect(t, "admin signs in a month on", f.admin.signIn(f.adminAcct), 200, "")
	expect(t, "disable bob", f.admin.post("/api/v1/admin/users/bob/disable", nil), 200, "")
	r = f.admin.get("/api/v1/admin/security")
	expect(t, "overview a month on", r, 200, "")
	var inactive []string
	for _, v := range r.body["inactive_accounts"].([]any) {
		a := v.(map[string]any)
		inactive = append(inactive, fmt.Sprintf("%s:%v", a["username"], a["last_login_at"] != nil))
	}
	// fay signed in (with the recovery code); ghost never did; root just
	// did; bob is disabled.
	if got := strings.Join(inactive, ","); got != "fay:true,ghost:false" {
		t.Errorf("inactive accounts: %s", got)
	}
	if used := r.body["recovery_codes_used"].([]any); len(used) != 0 {
		t.Errorf("recovery codes a month ago listed: %v", used)
	}
	for _, v := range r.body["hours"].([]any) {
		if h := v.(map[string]any); h["failed_sign_ins"] != float64(0) {
			t.Errorf("old failures counted a month on: %v", h)
		}
	}
}

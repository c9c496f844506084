package server

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/parley-meet/parley/auth"
	"github.com/parley-meet/parley/config"
	"github.com/parley-meet/parley/rbac"
	"github.com/parley-meet/parley/store"
)

const goodPassword = "correct horse battery staple"

// browser is one client with its own cookie jar.
type browser struct {
	t      *testing.T
	ts     *testServer
	client *http.Client
	csrf   string
}

func (ts *testServer) browser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, ts: ts, client: &http.Client{Jar: jar, Timeout: 10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ts.pool, ServerName: "localhost"}}}}
}

type reply struct {
	status int
	header http.Header
	body   map[string]any
	raw    []byte
}

func (r reply) str(k string) string { s, _ := r.body[k].(string); return s }

func (b *browser) do(method, path string, body any, hdr map[string]string) reply {
	b.t.Helper()
	var rd io.Reader
	if body != nil {
		if s, ok := body.(string); ok {
			rd = strings.NewReader(s)
		} else {
			j, _ := json.Marshal(body)
			rd = bytes.NewReader(j)
		}
	}
	req, _ := http.NewRequest(method, b.ts.base+path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if b.csrf != "" && method != "GET" {
		req.Header.Set("X-CSRF-Token", b.csrf)
	}
	for k, v := range hdr {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := b.client.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := reply{status: resp.StatusCode, header: resp.Header, raw: raw}
	json.Unmarshal(raw, &r.body)
	return r
}

func (b *browser) post(path string, body any) reply { return b.do("POST", path, body, nil) }
func (b *browser) get(path string) reply            { return b.do("GET", path, nil, nil) }

func expect(t *testing.T, what string, r reply, status int, code string) {
	t.Helper()
	if r.status != status || code != "" && r.str("error") != code {
		t.Fatalf("%s: %d %s, want %d %s", what, r.status, r.raw, status, code)
	}
}

func totpCode(t *testing.T, secret string, at time.Time) string {
	t.Helper()
	c, err := totp.GenerateCodeCustom(secret, at, totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// account is a user enrolled through the API.
type account struct {
	username, password, secret string
	recovery                   []string
}

func (ts *testServer) createUser(t *testing.T, username, password, role string) {
	t.Helper()
	if _, _, err := ts.auth.CreateAccount(context.Background(), auth.NewAccount{Username: username, Password: password, Role: role}, "test"); err != nil {
		t.Fatal(err)
	}
}

// enroll signs a new user in for the first time and confirms TOTP.
func (b *browser) enroll(username, password string) account {
	b.t.Helper()
	r := b.post("/api/v1/auth/login", map[string]string{"username": username, "password": password})
	expect(b.t, "login before enrolment", r, 200, "")
	if r.str("next") != "enroll" {
		b.t.Fatalf("next = %q, want enroll", r.str("next"))
	}
	ch := r.str("challenge")
	r = b.post("/api/v1/auth/enroll", map[string]string{"challenge": ch})
	expect(b.t, "enroll", r, 200, "")
	secret := r.str("secret")
	if len(secret) != 32 || !strings.HasPrefix(r.str("otpauth_uri"), "otpauth://totp/") || !strings.HasPrefix(r.str("qr_png"), "data:image/png;base64,") {
		b.t.Fatalf("enrolment: %s", r.raw)
	}
	r = b.post("/api/v1/auth/enroll/confirm", map[string]string{"challenge": ch, "code": totpCode(b.t, secret, b.ts.clock.Now())})
	expect(b.t, "confirm", r, 200, "")
	b.csrf = r.str("csrf_token")
	var codes []string
	for _, c := range r.body["recovery_codes"].([]any) {
		codes = append(codes, c.(string))
	}
	if len(codes) != 10 {
		b.t.Fatalf("%d recovery codes", len(codes))
	}
	return account{username: username, password: password, secret: secret, recovery: codes}
}

// signIn signs an enrolled user in with the code of the clock's step.
func (b *browser) signIn(a account) reply {
	b.t.Helper()
	r := b.post("/api/v1/auth/login", map[string]string{"username": a.username, "password": a.password})
	expect(b.t, "login", r, 200, "")
	r = b.post("/api/v1/auth/mfa", map[string]string{"challenge": r.str("challenge"), "code": totpCode(b.t, a.secret, b.ts.clock.Now())})
	if r.status == 200 {
		b.csrf = r.str("csrf_token")
	}
	return r
}

// auditActions lists "action/outcome" of every audit entry.
func (ts *testServer) auditActions(t *testing.T) []string {
	t.Helper()
	var out []string
	ts.store.ScanAudit(context.Background(), func(r store.AuditRecord) error {
		out = append(out, r.Action+"/"+r.Outcome)
		return nil
	})
	return out
}

func (ts *testServer) expectAudit(t *testing.T, entry string) {
	t.Helper()
	for _, a := range ts.auditActions(t) {
		if a == entry {
			return
		}
	}
	t.Errorf("no audit entry %s in %v", entry, ts.auditActions(t))
}

func generous(c *config.Config) { c.LoginBurst = 10000 }

func TestEnrolSignInAndMe(t *testing.T) {
	ts := startServer(t, nil, generous)
	ts.createUser(t, "alice", goodPassword, rbac.RoleMember)
	b := ts.browser(t)
	a := b.enroll("alice", goodPassword)
	me := b.get("/api/v1/me")
	expect(t, "me", me, 200, "")
	if me.str("username") != "alice" || me.str("csrf_token") == "" || me.header.Get("Cache-Control") != "no-store" {
		t.Errorf("me: %s %v", me.raw, me.header)
	}
	// Case 9: the secret is never returned again.
	if bytes.Contains(me.raw, []byte(a.secret)) {
		t.Error("/me returns the TOTP secret")
	}
	ts.expectAudit(t, "auth.enroll/success")

	ts.clock.Advance(30 * time.Second)
	b2 := ts.browser(t)
	expect(t, "sign in", b2.signIn(a), 200, "")
	expect(t, "me after sign-in", b2.get("/api/v1/me"), 200, "")
	ts.expectAudit(t, "auth.login/success")
	ts.expectAudit(t, "auth.mfa/success")
}

// Case 1: many wrong passwords against one account, with forged
// X-Forwarded-For headers, are throttled long before 100 failures; after the
// window the right password works.
func TestCase01AccountThrottling(t *testing.T) {
	ts := startServer(t, nil, generous)
	ts.createUser(t, "bob", goodPassword, rbac.RoleMember)
	b := ts.browser(t)
	failures, first429 := 0, -1
	var retry string
	for i := 0; i < 110; i++ {
		r := b.do("POST", "/api/v1/auth/login", map[string]string{"username": "bob", "password": fmt.Sprintf("wrong-%d-password", i)},
			map[string]string{"X-Forwarded-For": fmt.Sprintf("198.51.100.%d", i%250)})
		switch r.status {
		case 401:
			failures++
		case 429:
			if first429 < 0 {
				first429, retry = i, r.header.Get("Retry-After")
			}
		default:
			t.Fatalf("attempt %d: %d %s", i, r.status, r.raw)
		}
	}
	if first429 < 0 || first429 > 10 || failures > 10 {
		t.Errorf("first 429 at attempt %d after %d failures; want throttling within 10", first429, failures)
	}
	if retry == "" || retry == "0" {
		t.Errorf("429 without a Retry-After: %q", retry)
	}
	// The forged header was ignored: every entry names the real peer.
	var ips []string
	ts.store.ScanAudit(context.Background(), func(r store.AuditRecord) error {
		if r.ClientIP != "" && r.ClientIP != "127.0.0.1" {
			ips = append(ips, r.ClientIP)
		}
		return nil
	})
	if len(ips) > 0 {
		t.Errorf("untrusted X-Forwarded-For reached the audit log: %v", ips)
	}
	ts.expectAudit(t, "auth.throttled/denied")
	// While throttled even the right password is refused...
	expect(t, "right password while throttled", b.post("/api/v1/auth/login", map[string]string{"username": "bob", "password": goodPassword}), 429, "")
	// ...and after the window it works.
	ts.clock.Advance(16 * time.Minute)
	r := b.post("/api/v1/auth/login", map[string]string{"username": "bob", "password": goodPassword})
	expect(t, "right password after the window", r, 200, "")
}

// Case 1, lock: 20 failures lock the account until the lock ends or an
// operator unlocks it.
func TestAccountLockAndUnlock(t *testing.T) {
	ts := startServer(t, nil, generous)
	ts.createUser(t, "carol", goodPassword, rbac.RoleMember)
	b := ts.browser(t)
	locked := false
	for i := 0; i < 40 && !locked; i++ {
		r := b.post("/api/v1/auth/login", map[string]string{"username": "carol", "password": "not the password at all"})
		if r.status == 429 {
			if r.str("error") == "account_locked" {
				locked = true
				break
			}
			// Wait out the growing delay, as a patient attacker would.
			secs, _ := strconv.Atoi(r.header.Get("Retry-After"))
			ts.clock.Advance(time.Duration(secs) * time.Second)
		}
	}
	if !locked {
		t.Fatal("20 failures did not lock the account")
	}
	ts.expectAudit(t, "auth.locked/success")
	expect(t, "locked", b.post("/api/v1/auth/login", map[string]string{"username": "carol", "password": goodPassword}), 429, "account_locked")
	if _, err := ts.auth.Unlock(context.Background(), "carol", "test"); err != nil {
		t.Fatal(err)
	}
	expect(t, "after unlock", b.post("/api/v1/auth/login", map[string]string{"username": "carol", "password": goodPassword}), 200, "")
	ts.expectAudit(t, "user.unlock/success")
}

// Case 2: one password against 300 usernames is throttled per address, and
// unknown and known users get the same answer.
func TestCase02AddressThrottlingAndSameAnswer(t *testing.T) {
	ts := startServer(t, nil)
	ts.createUser(t, "dave", goodPassword, rbac.RoleMember)
	b := ts.browser(t)
	known := b.post("/api/v1/auth/login", map[string]string{"username": "dave", "password": "Summer2026!!"})
	unknown := b.post("/api/v1/auth/login", map[string]string{"username": "nobody-here", "password": "Summer2026!!"})
	if known.status != 401 || unknown.status != 401 || !bytes.Equal(known.raw, unknown.raw) {
		t.Errorf("known %d %s vs unknown %d %s", known.status, known.raw, unknown.status, unknown.raw)
	}
	throttled := -1
	for i := 0; i < 300 && throttled < 0; i++ {
		r := b.post("/api/v1/auth/login", map[string]string{"username": fmt.Sprintf("user%03d", i), "password": "Summer2026!!"})
		if r.status == 429 {
			throttled = i
			if r.header.Get("Retry-After") == "" {
				t.Error("429 without Retry-After")
			}
		}
	}
	if throttled < 0 || throttled > 25 {
		t.Errorf("address throttled after %d usernames; want within the burst of 20", throttled)
	}
}

// Cases 3, 4, 5: replay, the last step only moves forward, the window.
func TestCases03to05TOTPReplayAndWindow(t *testing.T) {
	ts := startServer(t, nil, generous)
	ts.createUser(t, "erin", goodPassword, rbac.RoleMember)
	a := ts.browser(t).enroll("erin", goodPassword)
	login := func(b *browser) string {
		r := b.post("/api/v1/auth/login", map[string]string{"username": "erin", "password": goodPassword})
		expect(t, "login", r, 200, "")
		return r.str("challenge")
	}
	mfa := func(ch, code string) reply {
		return ts.browser(t).post("/api/v1/auth/mfa", map[string]string{"challenge": ch, "code": code})
	}
	b := ts.browser(t)
	ts.clock.Advance(60 * time.Second)
	now := ts.clock.Now()
	code := totpCode(t, a.secret, now)
	expect(t, "first use", mfa(login(b), code), 200, "")
	// Case 3: the same code again, within its step.
	expect(t, "replay", mfa(login(b), code), 401, "invalid_code")
	ts.expectAudit(t, "auth.mfa_replay/denied")
	// Case 4: the previous step's code, still inside the window.
	expect(t, "older step", mfa(login(b), totpCode(t, a.secret, now.Add(-30*time.Second))), 401, "invalid_code")
	// Case 5: two steps ahead is outside the window; one ahead is inside.
	expect(t, "two steps ahead", mfa(login(b), totpCode(t, a.secret, now.Add(60*time.Second))), 401, "invalid_code")
	expect(t, "one step ahead", mfa(login(b), totpCode(t, a.secret, now.Add(30*time.Second))), 200, "")
	ts.clock.Advance(5 * time.Minute)
	now = ts.clock.Now()
	expect(t, "two steps back", mfa(login(b), totpCode(t, a.secret, now.Add(-60*time.Second))), 401, "invalid_code")
	expect(t, "one step back", mfa(login(b), totpCode(t, a.secret, now.Add(-30*time.Second))), 200, "")
	expect(t, "current after one back", mfa(login(b), totpCode(t, a.secret, now)), 200, "")
}

// Case 6: five wrong codes destroy the challenge.
func TestCase06FiveWrongCodesDestroyChallenge(t *testing.T) {
	ts := startServer(t, nil, generous)
	ts.createUser(t, "frank", goodPassword, rbac.RoleMember)
	a := ts.browser(t).enroll("frank", goodPassword)
	ts.clock.Advance(30 * time.Second)
	b := ts.browser(t)
	r := b.post("/api/v1/auth/login", map[string]string{"username": "frank", "password": goodPassword})
	ch := r.str("challenge")
	right := totpCode(t, a.secret, ts.clock.Now())
	wrong := "000000"
	if wrong == right {
		wrong = "111111"
	}
	for i := 1; i <= 4; i++ {
		expect(t, fmt.Sprintf("wrong code %d", i), b.post("/api/v1/auth/mfa", map[string]string{"challenge": ch, "code": wrong}), 401, "invalid_code")
	}
	expect(t, "fifth wrong code", b.post("/api/v1/auth/mfa", map[string]string{"challenge": ch, "code": wrong}), 401, "invalid_challenge")
	expect(t, "right code on the destroyed challenge", b.post("/api/v1/auth/mfa", map[string]string{"challenge": ch, "code": right}), 401, "invalid_challenge")
	ts.expectAudit(t, "auth.challenge_destroyed/denied")
	expect(t, "no session", b.get("/api/v1/me"), 401, "unauthenticated")
}

// Cases 7 and 8: a challenge grants nothing else, and cannot finish the
// sign-in of another user.
func TestCases07and08HalfAuthenticated(t *testing.T) {
	ts := startServer(t, nil, generous)
	ts.createUser(t, "gina", goodPassword, rbac.RoleMember)
	ts.createUser(t, "hank", goodPassword, rbac.RoleMember)
	gina := ts.browser(t).enroll("gina", goodPassword)
	hank := ts.browser(t).enroll("hank", goodPassword)
	ts.clock.Advance(30 * time.Second)

	b := ts.browser(t)
	ch := b.post("/api/v1/auth/login", map[string]string{"username": "gina", "password": goodPassword}).str("challenge")
	for _, req := range []struct{ method, path string }{
		{"GET", "/api/v1/me"}, {"POST", "/api/v1/auth/token"}, {"POST", "/api/v1/auth/logout"},
		{"POST", "/api/v1/me/recovery-codes"}, {"POST", "/api/v1/me/mfa"},
	} {
		for name, hdr := range map[string]map[string]string{
			"no credential":        nil,
			"challenge as bearer":  {"Authorization": "Bearer " + ch},
			"challenge as cookie":  {"Cookie": auth.CookieName + "=" + ch},
			"challenge as session": {"Cookie": "challenge=" + ch},
		} {
			var body any
			if req.method == "POST" {
				body = map[string]string{}
			}
			r := b.do(req.method, req.path, body, hdr)
			if r.status != 401 {
				t.Errorf("%s %s with %s: %d %s", req.method, req.path, name, r.status, r.raw)
			}
		}
	}
	// Case 8: Hank's valid code does not finish Gina's challenge, and no
	// user id can be slipped in.
	expect(t, "other user's code", b.post("/api/v1/auth/mfa", map[string]string{"challenge": ch, "code": totpCode(t, hank.secret, ts.clock.Now())}), 401, "invalid_code")
	expect(t, "user id in body", b.post("/api/v1/auth/mfa", map[string]string{"challenge": ch, "code": "123456", "user_id": "x"}), 400, "bad_json")
	hb := ts.browser(t)
	hch := hb.post("/api/v1/auth/login", map[string]string{"username": "hank", "password": goodPassword}).str("challenge")
	r := b.post("/api/v1/auth/mfa", map[string]string{"challenge": hch, "code": totpCode(t, gina.secret, ts.clock.Now())})
	expect(t, "Gina's code on Hank's challenge", r, 401, "invalid_code")
	// An enrolment challenge is not an MFA challenge and the reverse.
	expect(t, "mfa challenge used to enrol", b.post("/api/v1/auth/enroll", map[string]string{"challenge": ch}), 401, "invalid_challenge")
}

// Case 9: changing MFA or recovery codes needs the password and a code.
func TestCase09ReauthenticationForMFAChanges(t *testing.T) {
	ts := startServer(t, nil, generous)
	ts.createUser(t, "ivy", goodPassword, rbac.RoleMember)
	b := ts.browser(t)
	a := b.enroll("ivy", goodPassword)
	ts.clock.Advance(30 * time.Second)
	code := totpCode(t, a.secret, ts.clock.Now())
	expect(t, "no password", b.post("/api/v1/me/mfa", map[string]string{"password": "", "code": code}), 401, "invalid_credentials")
	expect(t, "wrong code", b.post("/api/v1/me/mfa", map[string]string{"password": goodPassword, "code": "12345x"}), 401, "invalid_code")
	r := b.post("/api/v1/me/mfa", map[string]string{"password": goodPassword, "code": code})
	expect(t, "replace MFA", r, 200, "")
	if r.str("next") != "enroll" || r.str("challenge") == "" || bytes.Contains(r.raw, []byte(a.secret)) {
		t.Errorf("replace MFA: %s", r.raw)
	}
	ts.clock.Advance(30 * time.Second)
	r = b.post("/api/v1/me/recovery-codes", map[string]string{"password": goodPassword, "code": totpCode(t, a.secret, ts.clock.Now())})
	expect(t, "regenerate codes", r, 200, "")
	if n := len(r.body["recovery_codes"].([]any)); n != 10 {
		t.Errorf("%d new codes", n)
	}
	// The old codes no longer work.
	ts.clock.Advance(30 * time.Second)
	b2 := ts.browser(t)
	ch := b2.post("/api/v1/auth/login", map[string]string{"username": "ivy", "password": goodPassword}).str("challenge")
	expect(t, "old recovery code", b2.post("/api/v1/auth/mfa", map[string]string{"challenge": ch, "recovery_code": a.recovery[0]}), 401, "invalid_code")
}

// Recovery codes: single use, visible to the user, audited.
func TestRecoveryCodes(t *testing.T) {
	ts := startServer(t, nil, generous)
	ts.createUser(t, "jack", goodPassword, rbac.RoleMember)
	a := ts.browser(t).enroll("jack", goodPassword)
	use := func(code string) reply {
		b := ts.browser(t)
		ch := b.post("/api/v1/auth/login", map[string]string{"username": "jack", "password": goodPassword}).str("challenge")
		r := b.post("/api/v1/auth/mfa", map[string]string{"challenge": ch, "recovery_code": code})
		if r.status == 200 {
			b.csrf = r.str("csrf_token")
			r = b.get("/api/v1/me")
		}
		return r
	}
	// Typed loosely: upper case, no dashes.
	r := use(strings.ToUpper(strings.ReplaceAll(a.recovery[3], "-", "")))
	expect(t, "recovery code", r, 200, "")
	mfa := r.body["mfa"].(map[string]any)
	if mfa["recovery_codes_left"].(float64) != 9 || mfa["recovery_code_last_used_at"] == nil {
		t.Errorf("me after a recovery code: %s", r.raw)
	}
	expect(t, "same code twice", use(a.recovery[3]), 401, "invalid_code")
	ts.expectAudit(t, "auth.recovery_code/success")
}

// Case 10: password rules.
func TestCase10PasswordRules(t *testing.T) {
	ts := startServer(t, nil, generous, func(c *config.Config) { c.PasswordMinLength = 8 })
	ctx := context.Background()
	for _, c := range []struct {
		pw string
		ok bool
	}{
		{"7chars!", false},
		{"8chars!x", true},
		{strings.Repeat("x", 64) + "y", true},
		{"Grüße aus Köln 🐎 日本語", true},
		{"password1234", false}, // common
		{strings.Repeat("ab", 64), true},
		{strings.Repeat("ab", 64) + "c", false}, // 129: refused, not truncated
	} {
		name := fmt.Sprintf("u%d", len(c.pw)+len(c.pw)%7)
		_, _, err := ts.auth.CreateAccount(ctx, auth.NewAccount{Username: name + "x", Password: c.pw, Role: rbac.RoleMember}, "test")
		if (err == nil) != c.ok {
			t.Errorf("password %q (%d chars): err = %v, want ok=%v", c.pw, len([]rune(c.pw)), err, c.ok)
		}
	}
	// No silent truncation: a 128-character password does not accept its
	// 127-character prefix.
	long := strings.Repeat("ab", 64)
	ts.createUser(t, "longpw", long, rbac.RoleMember)
	b := ts.browser(t)
	expect(t, "prefix", b.post("/api/v1/auth/login", map[string]string{"username": "longpw", "password": long[:127]}), 401, "invalid_credentials")
	expect(t, "whole", b.post("/api/v1/auth/login", map[string]string{"username": "longpw", "password": long}), 200, "")
	// Over the API, a refused password is a clear 400.
	link, _ := ts.auth.SetupLink(ctx)
	tok := link[strings.Index(link, "#")+1:]
	r := b.post("/api/v1/setup", map[string]string{"token": tok, "username": "root", "display_name": "Root", "password": "qwerty123456"})
	expect(t, "common password at setup", r, 400, "invalid_password")
}

// Case 11: a cookie planted before sign-in is never the session.
func TestCase11SessionFixation(t *testing.T) {
	ts := startServer(t, nil, generous)
	ts.createUser(t, "kim", goodPassword, rbac.RoleMember)
	b := ts.browser(t)
	u, _ := url.Parse(ts.base)
	planted := "attacker-chosen-session-value-0123456789abcdef"
	b.client.Jar.SetCookies(u, []*http.Cookie{{Name: auth.CookieName, Value: planted, Path: "/"}})
	b.enroll("kim", goodPassword)
	var got string
	for _, c := range b.client.Jar.Cookies(u) {
		if c.Name == auth.CookieName {
			got = c.Value
		}
	}
	if got == "" || got == planted {
		t.Fatalf("session cookie after sign-in = %q", got)
	}
	attacker := ts.browser(t)
	expect(t, "planted cookie", attacker.do("GET", "/api/v1/me", nil, map[string]string{"Cookie": auth.CookieName + "=" + planted}), 401, "")
}

// Cases 12 and 14: logout and disabling end every session of the user.
func TestCases12and14LogoutAndDisable(t *testing.T) {
	ts := startServer(t, nil, generous)
	ts.createUser(t, "lee", goodPassword, rbac.RoleMember)
	b1 := ts.browser(t)
	a := b1.enroll("lee", goodPassword)
	ts.clock.Advance(30 * time.Second)
	b2 := ts.browser(t)
	expect(t, "second sign-in", b2.signIn(a), 200, "")
	tok := b2.post("/api/v1/auth/token", map[string]string{}).str("token")
	if tok == "" {
		t.Fatal("no token")
	}
	bearer := map[string]string{"Authorization": "Bearer " + tok}
	expect(t, "token works", b2.do("GET", "/api/v1/me", nil, bearer), 200, "")
	expect(t, "logout", b1.post("/api/v1/auth/logout", map[string]string{}), 204, "")
	expect(t, "old cookie after logout", b1.get("/api/v1/me"), 401, "unauthenticated")
	expect(t, "other session after logout", b2.get("/api/v1/me"), 401, "unauthenticated")
	expect(t, "token after logout", b2.do("GET", "/api/v1/me", nil, bearer), 401, "unauthenticated")
	ts.expectAudit(t, "auth.logout/success")

	ts.clock.Advance(30 * time.Second)
	b3 := ts.browser(t)
	expect(t, "sign in again", b3.signIn(a), 200, "")
	if err := ts.auth.SetDisabled(context.Background(), "lee", true, "test"); err != nil {
		t.Fatal(err)
	}
	expect(t, "session of a disabled user", b3.get("/api/v1/me"), 401, "unauthenticated")
	expect(t, "sign-in of a disabled user", b3.post("/api/v1/auth/login", map[string]string{"username": "lee", "password": goodPassword}), 403, "account_disabled")
	ts.expectAudit(t, "user.disable/success")
}

// Case 13: idle and absolute session timeouts.
func TestCase13SessionTimeouts(t *testing.T) {
	ts := startServer(t, nil, generous)
	ts.createUser(t, "max", goodPassword, rbac.RoleMember)
	b := ts.browser(t)
	a := b.enroll("max", goodPassword)
	ts.clock.Advance(29 * time.Minute)
	expect(t, "within idle timeout", b.get("/api/v1/me"), 200, "")
	ts.clock.Advance(31 * time.Minute)
	expect(t, "idle timeout", b.get("/api/v1/me"), 401, "")

	expect(t, "sign in", b.signIn(a), 200, "")
	for i := 0; i < 35; i++ { // active every 20 minutes for 11h40m
		ts.clock.Advance(20 * time.Minute)
		expect(t, "active session", b.get("/api/v1/me"), 200, "")
	}
	ts.clock.Advance(21 * time.Minute)
	expect(t, "absolute timeout", b.get("/api/v1/me"), 401, "")
}

// Case 15: the cookie's attributes and entropy.
func TestCase15CookieAttributes(t *testing.T) {
	ts := startServer(t, nil, generous)
	ts.createUser(t, "nia", goodPassword, rbac.RoleMember)
	b := ts.browser(t)
	r := b.post("/api/v1/auth/login", map[string]string{"username": "nia", "password": goodPassword})
	ch := r.str("challenge")
	secret := b.post("/api/v1/auth/enroll", map[string]string{"challenge": ch}).str("secret")
	r = b.post("/api/v1/auth/enroll/confirm", map[string]string{"challenge": ch, "code": totpCode(t, secret, ts.clock.Now())})
	set := r.header.Values("Set-Cookie")
	if len(set) != 1 {
		t.Fatalf("Set-Cookie: %v", set)
	}
	c := set[0]
	lc := strings.ToLower(c)
	for _, want := range []string{"secure", "httponly", "samesite=strict", "path=/"} {
		if !strings.Contains(lc, want) {
			t.Errorf("cookie %q lacks %s", c, want)
		}
	}
	if !strings.HasPrefix(c, auth.CookieName+"=") || strings.Contains(lc, "domain=") {
		t.Errorf("cookie %q: want the __Host- prefix and no Domain", c)
	}
	val := strings.SplitN(strings.TrimPrefix(c, auth.CookieName+"="), ";", 2)[0]
	if raw, err := base64.RawURLEncoding.DecodeString(val); err != nil || len(raw) < 16 {
		t.Errorf("session id %q: %d bytes, %v; want >= 128 random bits", val, len(raw), err)
	}
}

// Case 16: forged, expired and misdirected JWTs are all 401.
func TestCase16JWTAttacks(t *testing.T) {
	ts := startServer(t, nil, generous)
	ts.createUser(t, "oli", goodPassword, rbac.RoleAdmin)
	b := ts.browser(t)
	b.enroll("oli", goodPassword)
	r := b.post("/api/v1/auth/token", map[string]string{})
	expect(t, "mint", r, 200, "")
	good := r.str("token")
	if exp := r.body["expires_in"].(float64); exp <= 0 || exp > 900 {
		t.Errorf("expires_in %v", exp)
	}
	// Decode what was minted, and get our own signing key to forge with.
	parts := strings.Split(good, ".")
	var hdr map[string]any
	var claims jwt.MapClaims
	hb, _ := base64.RawURLEncoding.DecodeString(parts[0])
	cb, _ := base64.RawURLEncoding.DecodeString(parts[1])
	json.Unmarshal(hb, &hdr)
	json.Unmarshal(cb, &claims)
	if hdr["alg"] != "EdDSA" || hdr["typ"] != "at+jwt" || hdr["kid"] == nil {
		t.Fatalf("header %v", hdr)
	}
	for _, k := range []string{"iss", "aud", "sub", "exp", "nbf", "iat", "jti", "sid"} {
		if claims[k] == nil {
			t.Errorf("claim %s missing: %v", k, claims)
		}
	}
	keys, _ := ts.store.SigningKeys(context.Background())
	seed, err := ts.keys.Open(keys[0].PrivateKey, "signing-key:"+keys[0].KID)
	if err != nil {
		t.Fatal(err)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	now := ts.clock.Now()
	sign := func(mod func(h map[string]any, c jwt.MapClaims)) string {
		c := jwt.MapClaims{}
		for k, v := range claims {
			c[k] = v
		}
		tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c)
		tok.Header["kid"], tok.Header["typ"] = hdr["kid"], hdr["typ"]
		mod(tok.Header, c)
		s, err := tok.SignedString(priv)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// Sanity: our forger makes tokens the server accepts.
	if r := b.do("GET", "/api/v1/me", nil, map[string]string{"Authorization": "Bearer " + sign(func(map[string]any, jwt.MapClaims) {})}); r.status != 200 {
		t.Fatalf("re-signed valid token refused: %d %s", r.status, r.raw)
	}
	flipped := []byte(good)
	flipped[len(flipped)-5] ^= 0x01
	noneTok := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"at+jwt","kid":"`+hdr["kid"].(string)+`"}`)) + "." + parts[1] + "."
	hs := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
	hs.Header["kid"], hs.Header["typ"] = hdr["kid"], hdr["typ"]
	hsTok, _ := hs.SignedString([]byte(priv.Public().(ed25519.PublicKey)))
	cases := map[string]string{
		"alg none":           noneTok,
		"flipped signature":  string(flipped),
		"HS256 with pub key": hsTok,
		"expired": sign(func(_ map[string]any, c jwt.MapClaims) {
			c["iat"], c["nbf"], c["exp"] = now.Add(-20*time.Minute).Unix(), now.Add(-20*time.Minute).Unix(), now.Add(-5*time.Minute).Unix()
		}),
		"not yet valid": sign(func(_ map[string]any, c jwt.MapClaims) { c["nbf"] = now.Add(5 * time.Minute).Unix() }),
		"missing exp":   sign(func(_ map[string]any, c jwt.MapClaims) { delete(c, "exp") }),
		"missing nbf":   sign(func(_ map[string]any, c jwt.MapClaims) { delete(c, "nbf") }),
		"wrong aud":     sign(func(_ map[string]any, c jwt.MapClaims) { c["aud"] = "something-else" }),
		"wrong iss":     sign(func(_ map[string]any, c jwt.MapClaims) { c["iss"] = "https://evil.example" }),
		"wrong typ":     sign(func(h map[string]any, _ jwt.MapClaims) { h["typ"] = "JWT" }),
		"unknown kid":   sign(func(h map[string]any, _ jwt.MapClaims) { h["kid"] = "../../etc/passwd" }),
		"kid as URL":    sign(func(h map[string]any, _ jwt.MapClaims) { h["kid"] = "https://evil.example/jwks" }),
		"too long life": sign(func(_ map[string]any, c jwt.MapClaims) { c["exp"] = now.Add(2 * time.Hour).Unix() }),
		"other session": sign(func(_ map[string]any, c jwt.MapClaims) { c["sid"] = "0123456789abcdef0123456789abcdef" }),
		"other subject": sign(func(_ map[string]any, c jwt.MapClaims) { c["sub"] = "someone-else" }),
		"garbage":       "not.a.jwt",
		"in a cookie":   "",
	}
	for name, tok := range cases {
		hdrs := map[string]string{"Authorization": "Bearer " + tok}
		if name == "in a cookie" {
			// Case 17: a token is not a session cookie.
			hdrs = map[string]string{"Cookie": auth.CookieName + "=" + good}
		}
		anon := ts.browser(t)
		if r := anon.do("GET", "/api/v1/me", nil, hdrs); r.status != 401 {
			t.Errorf("%s: %d %s", name, r.status, r.raw)
		}
	}
	// A token cannot mint tokens, nor change credentials.
	expect(t, "token minting a token", b.do("POST", "/api/v1/auth/token", map[string]string{}, map[string]string{"Authorization": "Bearer " + good}), 403, "session_required")
}

// Case 18 (over the auth endpoints): a 1 MB token is refused quickly; and
// case 38: CSRF.
func TestCase38CSRF(t *testing.T) {
	ts := startServer(t, nil, generous)
	ts.createUser(t, "pat", goodPassword, rbac.RoleMember)
	b := ts.browser(t)
	b.enroll("pat", goodPassword)
	csrf := b.csrf
	b.csrf = ""
	expect(t, "logout without CSRF token", b.post("/api/v1/auth/logout", map[string]string{}), 403, "csrf")
	expect(t, "logout with a wrong CSRF token", b.do("POST", "/api/v1/auth/logout", map[string]string{}, map[string]string{"X-CSRF-Token": "nope"}), 403, "csrf")
	expect(t, "foreign origin", b.do("POST", "/api/v1/auth/logout", map[string]string{}, map[string]string{"X-CSRF-Token": csrf, "Origin": "https://evil.example"}), 403, "csrf")
	expect(t, "null origin", b.do("POST", "/api/v1/auth/logout", map[string]string{}, map[string]string{"X-CSRF-Token": csrf, "Origin": "null"}), 403, "csrf")
	expect(t, "cross-site fetch", b.do("POST", "/api/v1/auth/logout", map[string]string{}, map[string]string{"X-CSRF-Token": csrf, "Sec-Fetch-Site": "cross-site"}), 403, "csrf")
	expect(t, "form post", b.do("POST", "/api/v1/auth/logout", "a=b", map[string]string{"X-CSRF-Token": csrf, "Content-Type": "application/x-www-form-urlencoded"}), 415, "")
	expect(t, "login from a foreign origin", b.do("POST", "/api/v1/auth/login", map[string]string{"username": "pat", "password": goodPassword}, map[string]string{"Origin": "https://evil.example"}), 403, "csrf")
	expect(t, "still signed in", b.get("/api/v1/me"), 200, "")
	// CORS: a foreign origin is never reflected.
	r := b.do("GET", "/api/v1/me", nil, map[string]string{"Origin": "https://evil.example"})
	if r.header.Get("Access-Control-Allow-Origin") != "" || r.header.Get("Access-Control-Allow-Credentials") != "" {
		t.Errorf("CORS headers for a foreign origin: %v", r.header)
	}
	expect(t, "logout with everything right", b.do("POST", "/api/v1/auth/logout", map[string]string{}, map[string]string{"X-CSRF-Token": csrf, "Origin": ts.Server.cfg.PublicOrigin()}), 204, "")
}

// First-run setup and operators' enrolment links.
func TestSetupAndActivationLinks(t *testing.T) {
	ts := startServer(t, nil, generous)
	ctx := context.Background()
	link, err := ts.auth.SetupLink(ctx)
	if err != nil || !strings.HasPrefix(link, "https://localhost:8443/setup#") {
		t.Fatalf("setup link %q, %v", link, err)
	}
	tok := link[strings.Index(link, "#")+1:]
	if raw, _ := base64.RawURLEncoding.DecodeString(tok); len(raw) < 16 {
		t.Errorf("setup token has %d bytes", len(raw))
	}
	b := ts.browser(t)
	expect(t, "bad token", b.post("/api/v1/setup", map[string]string{"token": "nope", "username": "root", "display_name": "Root", "password": goodPassword}), 401, "invalid_token")
	expect(t, "bad username", b.post("/api/v1/setup", map[string]string{"token": tok, "username": "a, admin", "display_name": "Root", "password": goodPassword}), 400, "invalid_username")
	r := b.post("/api/v1/setup", map[string]string{"token": tok, "username": "Root", "display_name": "<b>Root</b>", "password": goodPassword})
	expect(t, "setup", r, 200, "")
	if r.str("next") != "enroll" {
		t.Errorf("setup: %s", r.raw)
	}
	expect(t, "setup twice", b.post("/api/v1/setup", map[string]string{"token": tok, "username": "root2", "display_name": "R", "password": goodPassword}), 409, "setup_complete")
	if l, _ := ts.auth.SetupLink(ctx); l != "" {
		t.Errorf("a setup link after the admin exists: %q", l)
	}
	ts.expectAudit(t, "setup.admin_created/success")

	// An expired setup link does not work: a second deployment, an hour on.
	ts2 := startServer(t, nil, generous)
	link2, _ := ts2.auth.SetupLink(ctx)
	ts2.clock.Advance(61 * time.Minute)
	expect(t, "expired setup link", ts2.browser(t).post("/api/v1/setup", map[string]string{"token": link2[strings.Index(link2, "#")+1:], "username": "root", "display_name": "R", "password": goodPassword}), 401, "invalid_token")

	// Enrolment link: the user chooses a password, then enrols.
	_, elink, err := ts.auth.CreateAccount(ctx, auth.NewAccount{Username: "quinn", Role: rbac.RoleMember}, "test")
	if err != nil || !strings.Contains(elink, "/enroll#") {
		t.Fatalf("enrolment link %q, %v", elink, err)
	}
	etok := elink[strings.Index(elink, "#")+1:]
	expect(t, "activate with a weak password", b.post("/api/v1/auth/activate", map[string]string{"token": etok, "password": "quinn"}), 400, "invalid_password")
	r = b.post("/api/v1/auth/activate", map[string]string{"token": etok, "password": goodPassword})
	expect(t, "activate", r, 200, "")
	if r.str("username") != "quinn" || r.str("next") != "enroll" {
		t.Errorf("activate: %s", r.raw)
	}
	expect(t, "link used twice", b.post("/api/v1/auth/activate", map[string]string{"token": etok, "password": goodPassword}), 401, "invalid_token")
}

// Case 44 (for this secrets): none reaches the log or the audit log.
func TestNoSecretsInLogsOrAudit(t *testing.T) {
	ts := startServer(t, nil, generous)
	ts.createUser(t, "rae", goodPassword, rbac.RoleMember)
	b := ts.browser(t)
	a := b.enroll("rae", goodPassword)
	tok := b.post("/api/v1/auth/token", map[string]string{}).str("token")
	u, _ := url.Parse(ts.base)
	var session string
	for _, c := range b.client.Jar.Cookies(u) {
		if c.Name == auth.CookieName {
			session = c.Value
		}
	}
	b.post("/api/v1/auth/logout", map[string]string{})
	var auditText strings.Builder
	ts.store.ScanAudit(context.Background(), func(r store.AuditRecord) error {
		fmt.Fprintf(&auditText, "%+v\n", r)
		return nil
	})
	for name, secret := range map[string]string{
		"password": goodPassword, "TOTP secret": a.secret, "recovery code": a.recovery[0],
		"token": tok, "session": session, "CSRF token": b.csrf,
	} {
		if secret == "" {
			t.Fatalf("%s is empty", name)
		}
		if strings.Contains(ts.logs.String(), secret) {
			t.Errorf("the log contains the %s", name)
		}
		if strings.Contains(auditText.String(), secret) {
			t.Errorf("the audit log contains the %s", name)
		}
	}
}

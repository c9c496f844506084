package e2e

import (
	"context"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// account is a person the test signs up and in.
type account struct {
	username    string
	displayName string
	password    string
}

var base32Secret = regexp.MustCompile(`^[A-Z2-7]{16,}$`)

// TestEnrollAndSignIn walks the account pages in a real browser against the
// real binary: the first administrator through the setup link, a second
// person through an operator's enrolment link, sign-out, and sign-in with an
// authenticator code and with a recovery code. No page may log an error, throw
// or violate the Content Security Policy on the way.
func TestEnrollAndSignIn(t *testing.T) {
	parleyBin, chromium := environment(t)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel) // registered first, so it runs after every other cleanup

	srv := startParley(ctx, t, parleyBin)
	b := startBrowser(ctx, t, chromium)

	admin := account{username: "ada.admin", displayName: "Ada Admin", password: "plinth marmalade voyage 7419"}
	member := account{username: "bo.member", password: "quarry lantern osprey 2286"}

	t.Run("first administrator through the setup link", func(t *testing.T) {
		p := &page{t: t, ctx: b.ctx, watcher: b.watcher}

		secret, step := setUpFirstAdmin(ctx, p, srv, admin)
		b.watcher.check(t, "setup and enrolment")

		signOut(p)
		// The code used to enrol was accepted in step `step`; the server
		// refuses that step again, so sign in with the next one.
		code, _ := freshTOTP(ctx, t, secret, step)
		signIn(p, admin, func() {
			p.do("enter the authenticator code",
				chromedp.SendKeys(chromedp.ID("code"), code),
				chromedp.Click(chromedp.ID("mfa-submit")))
		})
		expectSignedIn(p, "after signing in with a TOTP code", admin.username, "10")
		p.screenshot("landing.png")
		b.watcher.check(t, "sign-out and sign-in with a TOTP code")
	})

	t.Run("second person through an operator enrolment link", func(t *testing.T) {
		link := srv.addUser(ctx, t, member.username)
		p := &page{t: t, ctx: b.newIncognitoTab(t), watcher: b.watcher}

		p.do("open the enrolment link",
			chromedp.Navigate(link),
			chromedp.WaitVisible(chromedp.ID("activate-form")))
		p.do("choose a password",
			chromedp.SendKeys(chromedp.ID("new-password"), member.password),
			chromedp.SendKeys(chromedp.ID("new-password2"), member.password),
			chromedp.Click(chromedp.ID("activate-submit")))

		enrolAuthenticator(ctx, p)
		codes := saveRecoveryCodes(p)
		expectSignedIn(p, "after enrolment", member.username, "10")
		b.watcher.check(t, "activation and enrolment")

		signOut(p)
		signIn(p, member, func() {
			p.do("switch to a recovery code",
				chromedp.Click(chromedp.ID("use-recovery")),
				chromedp.WaitVisible(chromedp.ID("recovery-code")))
			p.do("enter a recovery code",
				chromedp.SendKeys(chromedp.ID("recovery-code"), codes[3]),
				chromedp.Click(chromedp.ID("mfa-submit")))
		})
		expectSignedIn(p, "after signing in with a recovery code", member.username, "9")
		p.waitTrue("the page warns that a recovery code was used",
			`!document.getElementById('recovery-warning').hidden`)
		p.screenshot("landing-recovery.png")
		b.watcher.check(t, "sign-out and sign-in with a recovery code")

		// The checks above are only worth something if the watcher hears of
		// a CSP violation and of an uncaught exception at all: cause one of
		// each and expect to hear of it.
		eval[chromedp.Void](p, "cause a CSP violation",
			`document.head.append(Object.assign(document.createElement('script'), {textContent: 'window.__inline = 1'}))`)
		if got := b.watcher.expect(isCSPText); got == "" {
			t.Error("an inline script caused no CSP violation report: either the page has no CSP " +
				"or the console watcher is deaf to it, and the checks above prove nothing")
		} else {
			t.Logf("canary CSP violation reported as: %s", got)
		}
		if eval[bool](p, "read the canary", `window.__inline === 1`) {
			t.Error("an inline script ran: the Content Security Policy does not block inline scripts")
		}
		eval[chromedp.Void](p, "throw an uncaught exception",
			`setTimeout(() => { throw new Error('e2e canary exception'); }, 0)`)
		if got := b.watcher.expect(func(s string) bool { return strings.Contains(s, "e2e canary exception") }); got == "" {
			t.Error("an uncaught exception was not reported: the console watcher is deaf to exceptions")
		} else {
			t.Logf("canary exception reported as: %s", got)
		}
		b.watcher.check(t, "after the canaries")
	})
}

// setUpFirstAdmin creates the first administrator through the setup link in
// p: the setup form, the authenticator and the recovery codes, ending
// signed in on the home page. It returns the TOTP secret and the step of the
// code it confirmed.
func setUpFirstAdmin(ctx context.Context, p *page, srv *parleyServer, admin account) (secret string, step int64) {
	p.t.Helper()
	p.do("open the setup link",
		chromedp.Navigate(srv.setupLink),
		chromedp.WaitVisible(chromedp.ID("setup-form")))
	if loc := p.location(); strings.Contains(loc, "#") {
		p.t.Errorf("the setup token stays in the address bar: %s", loc)
	}
	p.do("fill in the setup form",
		chromedp.SendKeys(chromedp.ID("setup-username"), admin.username),
		chromedp.SendKeys(chromedp.ID("setup-display-name"), admin.displayName),
		chromedp.SendKeys(chromedp.ID("setup-password"), admin.password),
		chromedp.SendKeys(chromedp.ID("setup-password2"), admin.password),
		chromedp.Click(chromedp.ID("setup-submit")))

	secret, step = enrolAuthenticator(ctx, p)
	saveRecoveryCodes(p)
	expectSignedIn(p, "after setup", admin.username, "10")
	return secret, step
}

// enrolAuthenticator runs the authenticator step that follows setup and
// activation: it reads the key, checks the QR code, and confirms a code. It
// returns the secret and the TOTP step of the accepted code.
func enrolAuthenticator(ctx context.Context, p *page) (secret string, step int64) {
	p.t.Helper()
	p.do("wait for the authenticator step", chromedp.WaitVisible(chromedp.ID("totp-secret")))
	p.settled("the authenticator step")
	secret = eval[string](p, "read the key", `document.getElementById('totp-secret').dataset.secret`)
	if !base32Secret.MatchString(secret) {
		p.t.Fatalf("data-secret %q is not an unpadded base32 key", secret)
	}
	p.waitTrue("the QR code image loads",
		`(() => { const q = document.getElementById('qr'); return !!q && q.complete && q.naturalWidth > 0; })()`)

	code, step := freshTOTP(ctx, p.t, secret)
	p.do("confirm the first code",
		chromedp.SendKeys(chromedp.ID("confirm-code"), code),
		chromedp.Click(chromedp.ID("confirm-submit")))
	return secret, step
}

// saveRecoveryCodes reads the recovery codes shown once after enrolment,
// ticks "saved" and continues to the home page.
func saveRecoveryCodes(p *page) []string {
	p.t.Helper()
	p.do("wait for the recovery codes", chromedp.WaitVisible(chromedp.CSS("#recovery-codes li")))
	codes := eval[[]string](p, "read the recovery codes",
		`[...document.querySelectorAll('#recovery-codes li')].map(li => li.textContent.trim())`)
	if len(codes) != 10 {
		p.t.Fatalf("got %d recovery codes, want 10: %q", len(codes), codes)
	}
	seen := map[string]bool{}
	for _, c := range codes {
		if len(c) < 8 {
			p.t.Errorf("recovery code %q is too short", c)
		}
		if seen[c] {
			p.t.Errorf("recovery code %q appears twice", c)
		}
		seen[c] = true
	}
	if !eval[bool](p, "the continue button starts disabled", `document.getElementById('enroll-done').disabled`) {
		p.t.Error("#enroll-done is enabled before the codes are marked as saved")
	}
	p.do("mark the codes as saved and continue",
		chromedp.Click(chromedp.ID("codes-saved")),
		chromedp.WaitEnabled(chromedp.ID("enroll-done")),
		chromedp.Click(chromedp.ID("enroll-done")))
	return codes
}

// expectSignedIn waits for the home page and checks who it says is signed in
// and how many recovery codes are left.
func expectSignedIn(p *page, when, username, codesLeft string) {
	p.t.Helper()
	p.do("wait for the home page "+when, chromedp.WaitVisible(chromedp.ID("whoami")))
	p.settled("the home page " + when)
	if path := pathOf(p.location()); path != "/" {
		p.t.Errorf("%s: at %s, want /", when, path)
	}
	who := eval[string](p, "read #whoami", `document.getElementById('whoami').textContent`)
	if !strings.Contains(who, "Signed in as") || !strings.Contains(who, username) {
		p.t.Errorf("%s: #whoami says %q, want it to name %s", when, who, username)
	}
	left := eval[string](p, "read #recovery-left", `document.getElementById('recovery-left').textContent.trim()`)
	if left != codesLeft {
		p.t.Errorf("%s: #recovery-left says %q, want %s", when, left, codesLeft)
	}
}

// signOut presses "Sign out" and expects the sign-in page.
func signOut(p *page) {
	p.t.Helper()
	p.do("sign out",
		chromedp.Click(chromedp.ID("logout")),
		chromedp.WaitVisible(chromedp.ID("login-form")))
	p.settled("sign out")
	if path := pathOf(p.location()); path != "/login" {
		p.t.Errorf("after signing out: at %s, want /login", path)
	}
}

// signIn enters the username and password, waits for the second step and
// lets secondFactor fill it in and submit it.
func signIn(p *page, a account, secondFactor func()) {
	p.t.Helper()
	p.do("enter username and password",
		chromedp.SendKeys(chromedp.ID("username"), a.username),
		chromedp.SendKeys(chromedp.ID("password"), a.password),
		chromedp.Click(chromedp.ID("login-submit")),
		chromedp.WaitVisible(chromedp.ID("mfa-form")))
	secondFactor()
}

func pathOf(loc string) string {
	u, err := url.Parse(loc)
	if err != nil {
		return loc
	}
	return u.Path
}

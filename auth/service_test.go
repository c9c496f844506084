package auth

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/parley-meet/parley/audit"
	"github.com/parley-meet/parley/rbac"
	"github.com/parley-meet/parley/store/storetest"
)

// newTestService builds a service over a fresh store of the target engine,
// with a clock the test moves.
func newTestService(t *testing.T, tg storetest.Target) (*Service, *time.Time) {
	t.Helper()
	st, _ := tg.Open(t)
	now := time.Date(2026, 11, 26, 9, 0, 10, 0, time.UTC)
	clock := func() time.Time { return now }
	keys, err := newKeyring(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	policy, _ := NewPasswordPolicy(12)
	authz, err := rbac.New(context.Background(), st, nil)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := NewService(Deps{Store: st, Audit: audit.New(st, clock), RBAC: authz, Hasher: NewHasher(2), Keys: keys,
		Policy: policy, Now: clock, Config: Config{Issuer: "https://meet.example.org:8443", LoginBurst: 1000}})
	if err != nil {
		t.Fatal(err)
	}
	return svc, &now
}

// TestUnknownUserCostsAHash: a sign-in for a name that does not exist costs
// exactly one password hash, like a wrong password for one that does.
func TestUnknownUserCostsAHash(t *testing.T) {
	storetest.Each(t, func(t *testing.T, tg storetest.Target) {
		svc, _ := newTestService(t, tg)
		ctx := context.Background()
		if _, _, err := svc.CreateAccount(ctx, NewAccount{Username: "alice", Password: "a perfectly fine password", Role: rbac.RoleMember}, "test"); err != nil {
			t.Fatal(err)
		}
		var hashes atomic.Int32
		svc.hasher.onSlot = func() func() { hashes.Add(1); return func() {} }
		for _, name := range []string{"alice", "nobody", "x", strings.Repeat("é", 300)} {
			hashes.Store(0)
			_, err := svc.Login(ctx, name, "wrong password entirely", Meta{ClientIP: "192.0.2.1"})
			if !errors.Is(err, ErrInvalidCredentials) {
				t.Errorf("%q: err = %v", name, err)
			}
			if n := hashes.Load(); n != 1 {
				t.Errorf("%q: %d hashes, want 1", name, n)
			}
		}
	})
}

func TestTOTPEnrolmentSecretAndLabel(t *testing.T) {
	storetest.Each(t, func(t *testing.T, tg storetest.Target) {
		svc, now := newTestService(t, tg)
		ctx := context.Background()
		svc.CreateAccount(ctx, NewAccount{Username: "bob", Password: "a perfectly fine password", Role: rbac.RoleMember}, "test")
		res, err := svc.Login(ctx, "BOB", "a perfectly fine password", Meta{})
		if err != nil || res.Next != challengeEnroll {
			t.Fatalf("login: %+v %v", res, err)
		}
		e, err := svc.StartEnrollment(ctx, res.Challenge, Meta{})
		if err != nil {
			t.Fatal(err)
		}
		if len(e.Secret) != 32 { // 160 bits in base32
			t.Errorf("secret %q", e.Secret)
		}
		if !strings.Contains(e.OTPAuthURI, "issuer=Parley%20%28meet.example.org%29") || strings.Contains(e.OTPAuthURI, "8443") {
			t.Errorf("otpauth URI %q", e.OTPAuthURI)
		}
		code, _ := totp.GenerateCode(e.Secret, *now)
		done, err := svc.ConfirmEnrollment(ctx, res.Challenge, code, Meta{})
		if err != nil || len(done.RecoveryCodes) != 10 {
			t.Fatalf("confirm: %v", err)
		}
		// The stored secret is sealed: the base32 text is nowhere in the row.
		u, _ := svc.store.UserByUsername(ctx, "bob")
		if strings.Contains(u.TOTPSecret, e.Secret) || u.TOTPSecret == "" || !u.MFAEnabled {
			t.Errorf("stored secret %q", u.TOTPSecret)
		}
		// The confirming code cannot sign in.
		res, _ = svc.Login(ctx, "bob", "a perfectly fine password", Meta{})
		if _, err := svc.VerifyMFA(ctx, res.Challenge, code, "", Meta{}); !errors.Is(err, ErrInvalidCode) {
			t.Errorf("enrolment code reused to sign in: %v", err)
		}
	})
}

func TestKeyringSealing(t *testing.T) {
	dir := t.TempDir()
	k1, created, err := LoadKeyring(dir, "")
	if err != nil || !created {
		t.Fatalf("first load: %v %v", created, err)
	}
	k2, created, err := LoadKeyring(dir, "")
	if err != nil || created {
		t.Fatalf("second load: %v %v", created, err)
	}
	sealed := k1.Seal([]byte("JBSWY3DPEHPK3PXP"), "totp:u1")
	if pt, err := k2.Open(sealed, "totp:u1"); err != nil || string(pt) != "JBSWY3DPEHPK3PXP" {
		t.Errorf("open with the reloaded key: %q %v", pt, err)
	}
	if _, err := k2.Open(sealed, "totp:u2"); err == nil {
		t.Error("a sealed secret opened for another user")
	}
	other, _, _ := LoadKeyring(t.TempDir(), "")
	if _, err := other.Open(sealed, "totp:u1"); err == nil {
		t.Error("a sealed secret opened with another key")
	}
	b := []byte(sealed)
	b[10] ^= 1
	if _, err := k1.Open(string(b), "totp:u1"); err == nil {
		t.Error("tampered ciphertext opened")
	}
	if k1.Seal([]byte("x"), "c") == k1.Seal([]byte("x"), "c") {
		t.Error("sealing is deterministic: nonces repeat")
	}
	for _, bad := range []string{"short", "bm90IDMyIGJ5dGVz"} {
		if _, _, err := LoadKeyring(dir, bad); !errors.Is(err, ErrSecretKey) {
			t.Errorf("PARLEY_SECRET_KEY %q: %v", bad, err)
		}
	}
}

func TestMatchTOTP(t *testing.T) {
	secret := "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
	now := time.Unix(1_800_000_015, 0)
	cur := totpStep(now)
	code := func(step int64) string {
		c, _ := totp.GenerateCode(secret, time.Unix(step*30, 0))
		return c
	}
	for _, c := range []struct {
		name    string
		code    string
		last    int64
		ok      bool
		replay  bool
		matched int64
	}{
		{"current", code(cur), 0, true, false, cur},
		{"previous", code(cur - 1), 0, true, false, cur - 1},
		{"next", code(cur + 1), 0, true, false, cur + 1},
		{"two back", code(cur - 2), 0, false, false, 0},
		{"two ahead", code(cur + 2), 0, false, false, 0},
		{"replay of current", code(cur), cur, false, true, 0},
		{"older than last", code(cur - 1), cur, false, true, 0},
		{"newer than last", code(cur + 1), cur, true, false, cur + 1},
		{"letters", "12a456", 0, false, false, 0},
		{"seven digits", code(cur) + "1", 0, false, false, 0},
		{"unicode digits", "١٢٣٤٥٦", 0, false, false, 0},
	} {
		step, ok, replay := matchTOTP(secret, c.code, now, c.last)
		if ok != c.ok || replay != c.replay || ok && step != c.matched {
			t.Errorf("%s: step %d ok %v replay %v", c.name, step, ok, replay)
		}
	}
}

func TestRecoveryCodeFormat(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 50; i++ {
		c := newRecoveryCode()
		if len(c) != 19 || strings.Count(c, "-") != 3 || seen[c] {
			t.Fatalf("code %q", c)
		}
		seen[c] = true
		if normalizeRecoveryCode(strings.ToUpper(strings.ReplaceAll(c, "-", " "))) != normalizeRecoveryCode(c) {
			t.Errorf("%q does not normalise the same typed differently", c)
		}
	}
	if normalizeRecoveryCode("oIl0-aaaa") != normalizeRecoveryCode("0110AAAA") {
		t.Error("look-alike letters are not folded")
	}
}

func TestNames(t *testing.T) {
	for in, want := range map[string]string{"Alice": "alice", " bob.smith_2-x ": "bob.smith_2-x", "ＡＢＣ": "abc"} {
		if got, err := NormalizeUsername(in); err != nil || got != want {
			t.Errorf("NormalizeUsername(%q) = %q, %v", in, got, err)
		}
	}
	for _, bad := range []string{"ab", strings.Repeat("a", 65), "a b c", "*", "a, admin", "room::x", "new\nline", "ünï", "a/b", "", "..\\x"} {
		if _, err := NormalizeUsername(bad); !errors.Is(err, ErrInvalidUsername) {
			t.Errorf("NormalizeUsername(%q) accepted", bad)
		}
	}
	if got, err := NormalizeDisplayName("  <script>alert(1)</script> "); err != nil || got != "<script>alert(1)</script>" {
		t.Errorf("display name stored as text: %q %v", got, err)
	}
	for _, bad := range []string{"", "   ", strings.Repeat("x", 65), "a\x00b", "line\nbreak", "bidi\u202eevil"} {
		if _, err := NormalizeDisplayName(bad); !errors.Is(err, ErrInvalidDisplayName) {
			t.Errorf("NormalizeDisplayName(%q) accepted", bad)
		}
	}
}

func TestFailureDelay(t *testing.T) {
	for n, want := range map[int]time.Duration{0: 0, 4: 0, 5: time.Second, 6: 2 * time.Second, 10: 32 * time.Second, 15: 15 * time.Minute, 40: 15 * time.Minute} {
		if got := failureDelay(n); got != want {
			t.Errorf("failureDelay(%d) = %v, want %v", n, got, want)
		}
	}
}

func TestKeepAlive(t *testing.T) {
	storetest.Each(t, func(t *testing.T, tg storetest.Target) {
		svc, now := newTestService(t, tg)
		ctx := context.Background()
		svc.CreateAccount(ctx, NewAccount{Username: "kim", Password: "a perfectly fine password", Role: rbac.RoleMember}, "test")
		signIn := func() *NewSession {
			res, err := svc.Login(ctx, "kim", "a perfectly fine password", Meta{})
			if err != nil {
				t.Fatal(err)
			}
			if res.Next == challengeEnroll {
				e, _ := svc.StartEnrollment(ctx, res.Challenge, Meta{})
				code, _ := totp.GenerateCode(e.Secret, *now)
				done, err := svc.ConfirmEnrollment(ctx, res.Challenge, code, Meta{})
				if err != nil {
					t.Fatal(err)
				}
				return done.Session
			}
			t.Fatal("unexpected second sign-in path")
			return nil
		}
		ns := signIn()
		p, err := svc.Authenticate(ctx, ns.Token)
		if err != nil {
			t.Fatal(err)
		}
		id := p.Session.ID
		alive := func() bool {
			live, _, err := svc.KeepAlive(ctx, []string{id, "not-a-session"}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if live["not-a-session"] {
				t.Fatal("an unknown session is alive")
			}
			return live[id]
		}
		// An open connection keeps the session from idling out.
		for i := 0; i < 4; i++ {
			*now = now.Add(20 * time.Minute)
			if !alive() {
				t.Fatalf("session died at %d×20 min while kept alive", i+1)
			}
		}
		if _, err := svc.Authenticate(ctx, ns.Token); err != nil {
			t.Errorf("kept-alive session refused over HTTP: %v", err)
		}
		*now = now.Add(31 * time.Minute)
		if alive() {
			t.Error("idle session still alive")
		}
		// Disabling ends it at once.
		*now = now.Add(-31 * time.Minute)
		if !alive() {
			t.Fatal("session should be alive again within the idle window")
		}
		if err := svc.SetDisabled(ctx, "kim", true, "test"); err != nil {
			t.Fatal(err)
		}
		if alive() {
			t.Error("session of a disabled user is alive")
		}
	})
}

package auth

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/parley-meet/parley/rbac"
	"github.com/parley-meet/parley/store/storetest"
)

// AccountDetails reports the sign-in throttle of the account's name;
// RevokeSessions ends every session and leaves the account usable.
func TestAccountDetailsAndRevokeSessions(t *testing.T) {
	storetest.Each(t, func(t *testing.T, tg storetest.Target) {
		svc, now := newTestService(t, tg)
		ctx := context.Background()
		const pw = "a perfectly fine password"
		if _, _, err := svc.CreateAccount(ctx, NewAccount{Username: "lou", Password: pw, Role: rbac.RoleMember}, "test"); err != nil {
			t.Fatal(err)
		}
		state := func() AccountInfo {
			t.Helper()
			a, err := svc.AccountDetails(ctx, "LOU")
			if err != nil || a.Username != "lou" {
				t.Fatalf("details: %+v, %v", a, err)
			}
			return a
		}
		if a := state(); a.FailedSignIns != 0 || a.Locked || a.Throttled || a.Activated != true {
			t.Errorf("fresh account: %+v", a)
		}
		for i := 0; i < 5; i++ {
			svc.Login(ctx, "lou", "wrong password entirely", Meta{ClientIP: "192.0.2.1"})
		}
		if a := state(); a.FailedSignIns != 5 || a.Locked || !a.Throttled {
			t.Errorf("after five failures: %+v", a)
		}
		*now = now.Add(2 * time.Second) // past the one-second delay
		if a := state(); a.FailedSignIns != 5 || a.Throttled {
			t.Errorf("after the delay: %+v", a)
		}
		for i := 0; i < 40 && !state().Locked; i++ {
			*now = now.Add(15 * time.Minute)
			svc.Login(ctx, "lou", "wrong password entirely", Meta{ClientIP: "192.0.2.1"})
		}
		if a := state(); !a.Locked || !a.Throttled {
			t.Fatalf("not locked: %+v", a)
		}
		*now = now.Add(16 * time.Minute)
		if a := state(); a.Locked || a.Throttled || a.FailedSignIns != 0 {
			t.Errorf("after the lock ended: %+v", a)
		}
		if _, err := svc.AccountDetails(ctx, "nobody"); !errors.Is(err, ErrNoSuchUser) {
			t.Errorf("unknown account: %v", err)
		}

		// Two sessions; revoking ends both, and a later sign-in works.
		res, err := svc.Login(ctx, "lou", pw, Meta{})
		if err != nil || res.Next != challengeEnroll {
			t.Fatalf("first sign-in: %+v, %v", res, err)
		}
		e, _ := svc.StartEnrollment(ctx, res.Challenge, Meta{})
		code, _ := totp.GenerateCode(e.Secret, *now)
		done, err := svc.ConfirmEnrollment(ctx, res.Challenge, code, Meta{})
		if err != nil {
			t.Fatal(err)
		}
		second := func() *NewSession {
			t.Helper()
			*now = now.Add(30 * time.Second)
			res, err := svc.Login(ctx, "lou", pw, Meta{})
			if err != nil {
				t.Fatal(err)
			}
			code, _ := totp.GenerateCode(e.Secret, *now)
			ns, err := svc.VerifyMFA(ctx, res.Challenge, code, "", Meta{})
			if err != nil {
				t.Fatal(err)
			}
			return ns
		}
		tokens := []string{done.Session.Token, second().Token}
		n, err := svc.RevokeSessions(ctx, "lou", "user:admin")
		if err != nil || n != 2 {
			t.Fatalf("revoke: %d, %v", n, err)
		}
		for _, tok := range tokens {
			if _, err := svc.Authenticate(ctx, tok); !errors.Is(err, ErrUnauthenticated) {
				t.Errorf("session after revoke: %v", err)
			}
		}
		if a := state(); a.Disabled || !a.MFAEnabled {
			t.Errorf("revoking changed the account: %+v", a)
		}
		if _, err := svc.Authenticate(ctx, second().Token); err != nil {
			t.Errorf("sign-in after revoke: %v", err)
		}
		if _, err := svc.RevokeSessions(ctx, "nobody", "user:admin"); !errors.Is(err, ErrNoSuchUser) {
			t.Errorf("revoke for nobody: %v", err)
		}
	})
}

package rbac_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/parley-meet/parley/internal/leakcheck"
	"github.com/parley-meet/parley/rbac"
	"github.com/parley-meet/parley/store"
	"github.com/parley-meet/parley/store/storetest"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

// accounts stands in for the users table behind UserState.
type accounts struct {
	mu       sync.Mutex
	disabled map[string]bool // id → disabled; absent: no such account
	fail     bool
}

func newAccounts(ids ...string) *accounts {
	a := &accounts{disabled: map[string]bool{}}
	for _, id := range ids {
		a.disabled[id] = false
	}
	return a
}

func (a *accounts) set(id string, exists, disabled bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if exists {
		a.disabled[id] = disabled
	} else {
		delete(a.disabled, id)
	}
}

func (a *accounts) state(_ context.Context, id string) (bool, bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.fail {
		return false, false, errors.New("database down")
	}
	d, ok := a.disabled[id]
	return ok, d, nil
}

// open returns an Authorizer over a fresh store of tg's engine, with
// accounts wired as its UserState.
func open(t *testing.T, tg storetest.Target, acc *accounts) (*rbac.Authorizer, *store.Store, store.Options) {
	t.Helper()
	st, o := tg.Open(t)
	a, err := rbac.New(context.Background(), st, nil)
	if err != nil {
		t.Fatal(err)
	}
	if acc != nil {
		a.SetUserState(acc.state)
	}
	return a, st, o
}

// sqliteOnly is the SQLite target, for tests about logic rather than the
// engine.
func sqliteOnly() storetest.Target { return storetest.Targets()[0] }

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

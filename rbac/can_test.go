package rbac_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/parley-meet/parley/rbac"
	"github.com/parley-meet/parley/store/storetest"
)

// allActions is every action Parley knows.
var allActions = []string{
	"rooms.create", "room.join", "room.publish", "room.screen", "room.chat",
	"room.moderate", "room.record", "room.manage", "recording.view",
	"recording.download", "recording.share", "recording.delete",
	"admin.users", "admin.audit",
}

// Expected permissions, written out by hand (not read from the policy
// under test): a room role in its own room, and a global role anywhere.
var (
	wantHost = []string{
		"room.join", "room.publish", "room.screen", "room.chat", "room.moderate",
		"room.record", "room.manage", "recording.view", "recording.download",
		"recording.share", "recording.delete",
	}
	wantModerator    = []string{"room.join", "room.publish", "room.screen", "room.chat", "room.moderate"}
	wantRoomMember   = []string{"room.join", "room.publish", "room.screen", "room.chat"}
	wantViewer       = []string{"room.join", "room.chat"}
	wantGuest        = []string{"room.join", "room.chat"}
	wantAdmin        = allActions
	wantGlobalMember = []string{"rooms.create"}
)

// Rooms of the fixture. roomC has no binding at all.
const roomA, roomB, roomC = "roomA", "room-B_2", "roomC"

// fixture binds the subjects the table asks about.
func fixture(t *testing.T, a *rbac.Authorizer) *accounts {
	t.Helper()
	ctx := context.Background()
	acc := newAccounts("host1", "mod1", "mem1", "view1", "admin1", "gm1", "nobody", "host2")
	acc.set("disabled1", true, true)
	a.SetUserState(acc.state)
	must(t, a.SetRoomRole(ctx, "user:host1", roomA, rbac.RoleHost))
	must(t, a.SetRoomRole(ctx, "user:mod1", roomA, rbac.RoleModerator))
	must(t, a.SetRoomRole(ctx, "user:mem1", roomA, rbac.RoleRoomMember))
	must(t, a.SetRoomRole(ctx, "user:view1", roomA, rbac.RoleViewer))
	must(t, a.SetRoomRole(ctx, "guest:g1", roomA, rbac.RoleGuest))
	must(t, a.SetRoomRole(ctx, "user:host2", roomB, rbac.RoleHost))
	must(t, a.SetGlobalRoles(ctx, "user:admin1", []string{rbac.RoleAdmin}))
	must(t, a.SetGlobalRoles(ctx, "user:gm1", []string{rbac.RoleMember}))
	// A disabled account holding the strongest roles, and a binding whose
	// account no longer exists.
	must(t, a.SetGlobalRoles(ctx, "user:disabled1", []string{rbac.RoleAdmin, rbac.RoleMember}))
	must(t, a.SetRoomRole(ctx, "user:disabled1", roomA, rbac.RoleHost))
	must(t, a.SetRoomRole(ctx, "user:ghost", roomA, rbac.RoleHost))
	return acc
}

type canRow struct {
	subject, room, action string
	want                  bool
}

func (r canRow) String() string {
	return fmt.Sprintf("%q in %q may %q", r.subject, r.room, r.action)
}

// canTable builds the rows: every role × every action in its own room, in
// another room and globally; the global roles everywhere; the subjects that
// must get nothing; and injected names as subject, room and action.
func canTable() []canRow {
	var rows []canRow
	roomRoles := []struct {
		subject string
		want    []string
	}{
		{"user:host1", wantHost},
		{"user:mod1", wantModerator},
		{"user:mem1", wantRoomMember},
		{"user:view1", wantViewer},
		{"guest:g1", wantGuest},
	}
	for _, rr := range roomRoles {
		for _, act := range allActions {
			rows = append(rows,
				canRow{rr.subject, roomA, act, slices.Contains(rr.want, act)},
				canRow{rr.subject, roomB, act, false},       // another room
				canRow{rr.subject, rbac.Global, act, false}, // a room role is not global
			)
		}
	}
	for _, act := range allActions {
		for _, room := range []string{roomA, roomB, roomC, rbac.Global} {
			rows = append(rows,
				canRow{"user:admin1", room, act, slices.Contains(wantAdmin, act)},
				// Global roles apply in every domain.
				canRow{"user:gm1", room, act, slices.Contains(wantGlobalMember, act)},
				canRow{"user:disabled1", room, act, false},
			)
		}
		rows = append(rows,
			canRow{"user:host2", roomB, act, slices.Contains(wantHost, act)},
			canRow{"user:host2", roomA, act, false},
			canRow{"user:nobody", roomA, act, false},
			canRow{"user:nobody", rbac.Global, act, false},
			canRow{"user:ghost", roomA, act, false}, // bound, but no such account
			canRow{"guest:g1", roomC, act, false},
		)
	}
	injected := []string{
		"", "*", "a, admin", "user:a, admin", "user:host1, admin", "room:x\nadmin",
		"user:host1\n", "::", "../x", "admin", "host", "user:", "user:*", "guest:",
		" user:host1", "user:host1 ", "USER:host1", "user:admin1,admin", "room:roomA",
		"user:" + string(make([]byte, 65)),
	}
	for _, s := range injected {
		for _, act := range []string{"room.join", "admin.users"} {
			rows = append(rows, canRow{s, roomA, act, false}, canRow{s, rbac.Global, act, false})
		}
	}
	for _, room := range []string{
		"*", "a, admin", "room:x\nadmin", "::", "../x", "roomA\n", "room:roomA",
		"roomA,", "room A", "roomA/../roomB", "roomA*",
	} {
		for _, s := range []string{"user:admin1", "user:host1"} {
			rows = append(rows, canRow{s, room, "room.join", false})
		}
	}
	// The empty room is Global: the admin may act there, a host may not.
	// "room" is a well-formed id whose domain is "room:room", not the
	// template domain "room".
	rows = append(rows,
		canRow{"user:host1", "room", "room.join", false},
		canRow{"guest:g1", "room", "room.join", false},
		canRow{"user:admin1", "", "admin.users", true},
		canRow{"user:host1", "", "room.join", false},
	)
	for _, act := range []string{"", "*", "room.*", "room.join,room.moderate", "room.join ", "ROOM.JOIN", "p, admin, *, room.join"} {
		rows = append(rows, canRow{"user:admin1", roomA, act, false}, canRow{"user:host1", roomA, act, false})
	}
	return rows
}

func TestCanTable(t *testing.T) {
	rows := canTable()
	if len(rows) < 150 {
		t.Fatalf("only %d rows", len(rows))
	}
	storetest.Each(t, func(t *testing.T, tg storetest.Target) {
		a, _, _ := open(t, tg, nil)
		fixture(t, a)
		ctx := context.Background()
		for _, r := range rows {
			if got := a.Can(ctx, r.subject, r.room, r.action); got != r.want {
				t.Errorf("%v: got %v, want %v", r, got, r.want)
			}
		}
	})
}

func TestPermissions(t *testing.T) {
	a, _, _ := open(t, sqliteOnly(), nil)
	fixture(t, a)
	ctx := context.Background()
	sorted := func(s []string) []string { return slices.Sorted(slices.Values(s)) }
	for _, c := range []struct {
		subject, room string
		want          []string
	}{
		{"user:host1", roomA, sorted(wantHost)},
		{"user:mod1", roomA, sorted(wantModerator)},
		{"user:mem1", roomA, sorted(wantRoomMember)},
		{"user:view1", roomA, sorted(wantViewer)},
		{"guest:g1", roomA, sorted(wantGuest)},
		{"guest:g1", roomB, []string{}},
		{"user:host1", roomB, []string{}},
		{"user:host1", rbac.Global, []string{}},
		{"user:admin1", roomC, sorted(wantAdmin)},
		{"user:admin1", rbac.Global, sorted(wantAdmin)},
		{"user:gm1", rbac.Global, wantGlobalMember},
		{"user:disabled1", roomA, []string{}},
		{"user:disabled1", rbac.Global, []string{}},
		{"user:ghost", roomA, []string{}},
		{"user:nobody", roomA, []string{}},
		{"a, admin", roomA, []string{}},
		{"user:admin1", "*", []string{}},
	} {
		got := a.Permissions(ctx, c.subject, c.room)
		if got == nil || !slices.Equal(got, c.want) {
			t.Errorf("Permissions(%q, %q) = %#v, want %v", c.subject, c.room, got, c.want)
		}
	}
}

// TestUserStateAtCallTime: disabling, deleting and failing to look up an
// account take effect at the next decision, and a missing UserState denies
// every user (but not guests).
func TestUserStateAtCallTime(t *testing.T) {
	a, _, _ := open(t, sqliteOnly(), nil)
	ctx := context.Background()
	must(t, a.SetRoomRole(ctx, "user:u1", roomA, rbac.RoleHost))
	must(t, a.SetRoomRole(ctx, "guest:g1", roomA, rbac.RoleGuest))
	if a.Can(ctx, "user:u1", roomA, "room.join") {
		t.Errorf("a user is allowed before SetUserState")
	}
	if !a.Can(ctx, "guest:g1", roomA, "room.join") {
		t.Errorf("a guest is denied without SetUserState")
	}
	acc := newAccounts("u1")
	a.SetUserState(acc.state)
	if !a.Can(ctx, "user:u1", roomA, "room.join") {
		t.Fatalf("enabled host denied")
	}
	acc.set("u1", true, true)
	if a.Can(ctx, "user:u1", roomA, "room.join") || len(a.Permissions(ctx, "user:u1", roomA)) != 0 {
		t.Errorf("disabled host still allowed")
	}
	acc.set("u1", true, false)
	acc.mu.Lock()
	acc.fail = true
	acc.mu.Unlock()
	if a.Can(ctx, "user:u1", roomA, "room.join") {
		t.Errorf("allowed while the account state cannot be read")
	}
	acc.mu.Lock()
	acc.fail = false
	acc.mu.Unlock()
	acc.set("u1", false, false)
	if a.Can(ctx, "user:u1", roomA, "room.join") {
		t.Errorf("deleted account still allowed")
	}
}

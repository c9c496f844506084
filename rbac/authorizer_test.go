package rbac_test

import (
	"cmp"
	"context"
	"errors"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/parley-meet/parley/rbac"
	"github.com/parley-meet/parley/store"
	"github.com/parley-meet/parley/store/storetest"
)

func TestPersistenceAcrossNew(t *testing.T) {
	storetest.Each(t, func(t *testing.T, tg storetest.Target) {
		ctx := context.Background()
		acc := newAccounts("h", "p", "adm", "v")
		a, st, o := open(t, tg, acc)
		must(t, a.SetRoomRole(ctx, "user:h", roomA, rbac.RoleHost))
		must(t, a.SetRoomRole(ctx, "user:v", roomA, rbac.RoleViewer))
		must(t, a.SetRoomRole(ctx, "user:v", roomA, rbac.RoleModerator)) // replaces viewer
		must(t, a.DefineRoomRole(ctx, "presenter", []string{"room.join", "room.screen", "room.chat"}))
		must(t, a.SetRoomRole(ctx, "user:p", roomB, "presenter"))
		must(t, a.SetRoomRole(ctx, "guest:g", roomB, rbac.RoleGuest))
		must(t, a.SetGlobalRoles(ctx, "user:adm", []string{rbac.RoleAdmin, rbac.RoleMember}))

		check := func(t *testing.T, b *rbac.Authorizer) {
			t.Helper()
			b.SetUserState(acc.state)
			if r, ok := b.RoomRole(ctx, "user:v", roomA); !ok || r != rbac.RoleModerator {
				t.Errorf("RoomRole(v) = %q, %v", r, ok)
			}
			if got := b.Permissions(ctx, "user:p", roomB); !slices.Equal(got, []string{"room.chat", "room.join", "room.screen"}) {
				t.Errorf("presenter permissions = %v", got)
			}
			if !b.IsRoomRole("presenter") || b.IsGlobalRole("presenter") {
				t.Errorf("presenter is not a room role after reload")
			}
			if got := b.GlobalRoles(ctx, "user:adm"); !slices.Equal(got, []string{"admin", "member"}) {
				t.Errorf("GlobalRoles = %v", got)
			}
			if !b.Can(ctx, "user:adm", roomC, "recording.delete") || !b.Can(ctx, "guest:g", roomB, "room.chat") {
				t.Errorf("admin or guest lost rights")
			}
			if got := b.RoomMembers(ctx, roomA); !slices.Equal(got, []rbac.Binding{{"user:h", "host"}, {"user:v", "moderator"}}) {
				t.Errorf("RoomMembers(A) = %v", got)
			}
			if got := b.RoomsOf(ctx, "user:v"); !maps.Equal(got, map[string]string{roomA: "moderator"}) {
				t.Errorf("RoomsOf(v) = %v", got)
			}
		}
		b, err := rbac.New(ctx, st, nil)
		must(t, err)
		check(t, b)
		// Another process: its own connection pool over the same database.
		st2, err := store.Open(ctx, o)
		must(t, err)
		defer st2.Close()
		c, err := rbac.New(ctx, st2, nil)
		must(t, err)
		check(t, c)
	})
}

// TestReloadSeesAnotherProcess: a change made by another Authorizer over the
// same database is invisible until Reload, which publishes a policy event.
func TestReloadSeesAnotherProcess(t *testing.T) {
	storetest.Each(t, func(t *testing.T, tg storetest.Target) {
		ctx := context.Background()
		acc := newAccounts("x")
		a, st, _ := open(t, tg, acc)
		b, err := rbac.New(ctx, st, nil)
		must(t, err)
		must(t, b.SetRoomRole(ctx, "user:x", roomA, rbac.RoleHost))
		if a.Can(ctx, "user:x", roomA, "room.join") {
			t.Fatalf("another process's change is visible without Reload")
		}
		events, cancel := a.Subscribe()
		defer cancel()
		must(t, a.Reload(ctx))
		if !a.Can(ctx, "user:x", roomA, "room.join") {
			t.Errorf("Reload did not pick up the change")
		}
		if e := receive(t, events); e != (rbac.Event{Kind: rbac.EventPolicy, Room: rbac.Global}) {
			t.Errorf("Reload published %+v", e)
		}
	})
}

func TestOneRolePerRoom(t *testing.T) {
	a, st, _ := open(t, sqliteOnly(), newAccounts("u", "h"))
	ctx := context.Background()
	must(t, a.SetRoomRole(ctx, "user:h", roomA, rbac.RoleHost))
	for _, role := range []string{rbac.RoleViewer, rbac.RoleModerator, rbac.RoleGuest, rbac.RoleRoomMember, rbac.RoleRoomMember} {
		must(t, a.SetRoomRole(ctx, "user:u", roomA, role))
		if got, ok := a.RoomRole(ctx, "user:u", roomA); !ok || got != role {
			t.Errorf("after SetRoomRole(%s): RoomRole = %q, %v", role, got, ok)
		}
	}
	if got := a.RoomMembers(ctx, roomA); !slices.Equal(got, []rbac.Binding{{"user:h", "host"}, {"user:u", "member"}}) {
		t.Errorf("RoomMembers = %v", got)
	}
	n := 0
	rules, err := st.CasbinRules(ctx)
	must(t, err)
	for _, r := range rules {
		if r.PType == "g" && r.V0 == "user:u" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("user:u has %d stored bindings, want 1", n)
	}
	// A role in room A grants nothing in room B, and binding in B is separate.
	must(t, a.SetRoomRole(ctx, "user:u", roomB, rbac.RoleHost))
	if !a.Can(ctx, "user:u", roomB, "room.manage") || a.Can(ctx, "user:u", roomA, "room.manage") {
		t.Errorf("host in B leaks into A, or is missing in B")
	}
	if got := a.RoomsOf(ctx, "user:u"); !maps.Equal(got, map[string]string{roomA: "member", roomB: "host"}) {
		t.Errorf("RoomsOf = %v", got)
	}
	must(t, a.RemoveFromRoom(ctx, "user:u", roomA))
	must(t, a.RemoveFromRoom(ctx, "user:u", roomA)) // not bound: no error
	if _, ok := a.RoomRole(ctx, "user:u", roomA); ok || a.Can(ctx, "user:u", roomA, "room.join") {
		t.Errorf("still in room A after RemoveFromRoom")
	}
}

func TestLastHost(t *testing.T) {
	storetest.Each(t, func(t *testing.T, tg storetest.Target) {
		a, _, _ := open(t, tg, newAccounts("h1", "h2"))
		ctx := context.Background()
		must(t, a.SetRoomRole(ctx, "user:h1", roomA, rbac.RoleHost))
		must(t, a.SetRoomRole(ctx, "user:h1", roomA, rbac.RoleHost)) // no change
		for name, err := range map[string]error{
			"demote":         a.SetRoomRole(ctx, "user:h1", roomA, rbac.RoleModerator),
			"remove":         a.RemoveFromRoom(ctx, "user:h1", roomA),
			"remove subject": a.RemoveSubject(ctx, "user:h1"),
		} {
			if !errors.Is(err, rbac.ErrLastHost) {
				t.Errorf("%s the last host: err = %v, want ErrLastHost", name, err)
			}
		}
		if r, _ := a.RoomRole(ctx, "user:h1", roomA); r != rbac.RoleHost {
			t.Fatalf("refused changes changed the role to %q", r)
		}
		must(t, a.SetRoomRole(ctx, "user:h2", roomA, rbac.RoleHost))
		must(t, a.SetRoomRole(ctx, "user:h1", roomA, rbac.RoleMember))
		if err := a.RemoveFromRoom(ctx, "user:h2", roomA); !errors.Is(err, rbac.ErrLastHost) {
			t.Errorf("h2 is now the last host: err = %v", err)
		}
		// Deleting the room removes its last host too.
		must(t, a.DeleteRoom(ctx, roomA))
		if got := a.RoomMembers(ctx, roomA); len(got) != 0 {
			t.Errorf("members after DeleteRoom: %v", got)
		}
		if a.Can(ctx, "user:h2", roomA, "room.join") {
			t.Errorf("host of a deleted room still joins")
		}
	})
}

// TestLastHostRace: two hosts leaving at once: exactly one may.
func TestLastHostRace(t *testing.T) {
	a, _, _ := open(t, sqliteOnly(), newAccounts("h1", "h2"))
	ctx := context.Background()
	for i := range 10 {
		room := "race" + string(rune('a'+i))
		must(t, a.SetRoomRole(ctx, "user:h1", room, rbac.RoleHost))
		must(t, a.SetRoomRole(ctx, "user:h2", room, rbac.RoleHost))
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for j, s := range []string{"user:h1", "user:h2"} {
			wg.Go(func() { errs[j] = a.RemoveFromRoom(ctx, s, room) })
		}
		wg.Wait()
		ok := 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case !errors.Is(err, rbac.ErrLastHost):
				t.Errorf("unexpected error %v", err)
			}
		}
		if ok != 1 || len(a.RoomMembers(ctx, room)) != 1 {
			t.Errorf("room %s: %d removals succeeded, members %v", room, ok, a.RoomMembers(ctx, room))
		}
	}
}

func TestLastAdmin(t *testing.T) {
	storetest.Each(t, func(t *testing.T, tg storetest.Target) {
		acc := newAccounts("a1", "a2")
		a, _, _ := open(t, tg, acc)
		ctx := context.Background()
		must(t, a.SetGlobalRoles(ctx, "user:a1", []string{rbac.RoleAdmin}))
		if err := a.SetGlobalRoles(ctx, "user:a1", []string{rbac.RoleMember}); !errors.Is(err, rbac.ErrLastAdmin) {
			t.Errorf("demote the only admin: err = %v", err)
		}
		if err := a.RemoveSubject(ctx, "user:a1"); !errors.Is(err, rbac.ErrLastAdmin) {
			t.Errorf("remove the only admin: err = %v", err)
		}
		// Another admin that is disabled, or has no account, does not count.
		must(t, a.SetGlobalRoles(ctx, "user:a2", []string{rbac.RoleAdmin}))
		must(t, a.SetGlobalRoles(ctx, "user:gone", []string{rbac.RoleAdmin}))
		acc.set("a2", true, true)
		if err := a.SetGlobalRoles(ctx, "user:a1", nil); !errors.Is(err, rbac.ErrLastAdmin) {
			t.Errorf("demote the only enabled admin: err = %v", err)
		}
		acc.set("a2", true, false)
		must(t, a.SetGlobalRoles(ctx, "user:a1", []string{rbac.RoleMember, rbac.RoleMember}))
		if got := a.GlobalRoles(ctx, "user:a1"); !slices.Equal(got, []string{"member"}) {
			t.Errorf("GlobalRoles(a1) = %v", got)
		}
		if got := a.SubjectsWithGlobalRole(ctx, rbac.RoleAdmin); !slices.Equal(got, []string{"user:a2", "user:gone"}) {
			t.Errorf("admins = %v", got)
		}
		if err := a.SetGlobalRoles(ctx, "user:a2", nil); !errors.Is(err, rbac.ErrLastAdmin) {
			t.Errorf("demote a2, now the last enabled admin: err = %v", err)
		}
		// A disabled admin may lose the role while an enabled one remains;
		// with none enabled, admin bindings stay until someone is enabled.
		must(t, a.SetGlobalRoles(ctx, "user:gone", nil))
		acc.mu.Lock()
		acc.fail = true
		acc.mu.Unlock()
		must(t, a.SetGlobalRoles(ctx, "user:a1", []string{rbac.RoleAdmin}))
		if err := a.SetGlobalRoles(ctx, "user:a2", nil); err == nil {
			t.Errorf("demoted an admin while account states cannot be read")
		}
	})
}

func TestRoleValidation(t *testing.T) {
	a, _, _ := open(t, sqliteOnly(), newAccounts("u"))
	ctx := context.Background()
	for _, role := range []string{"host", "moderator", "viewer", "guest", "owner", "", "admin, *"} {
		if err := a.SetGlobalRoles(ctx, "user:u", []string{role}); !errors.Is(err, rbac.ErrUnknownRole) {
			t.Errorf("global role %q: err = %v", role, err)
		}
	}
	for _, role := range []string{"admin", "owner", "", "host, *", "HOST"} {
		if err := a.SetRoomRole(ctx, "user:u", roomA, role); !errors.Is(err, rbac.ErrUnknownRole) {
			t.Errorf("room role %q: err = %v", role, err)
		}
	}
	if err := a.SetGlobalRoles(ctx, "guest:g", []string{rbac.RoleMember}); !errors.Is(err, rbac.ErrInvalidID) {
		t.Errorf("global role for a guest: err = %v", err)
	}
	if err := a.SetRoomRole(ctx, "user:u", rbac.Global, rbac.RoleHost); !errors.Is(err, rbac.ErrInvalidID) {
		t.Errorf("room role in Global: err = %v", err)
	}
	for _, r := range []string{"member", "admin"} {
		if !a.IsGlobalRole(r) {
			t.Errorf("IsGlobalRole(%q) = false", r)
		}
	}
	for _, r := range []string{"host", "moderator", "member", "viewer", "guest"} {
		if !a.IsRoomRole(r) {
			t.Errorf("IsRoomRole(%q) = false", r)
		}
	}
	if a.IsRoomRole("admin") || a.IsGlobalRole("host") || a.IsRoomRole("room") || a.IsGlobalRole("*") {
		t.Errorf("role kinds mixed up")
	}
}

func TestDefineRoomRole(t *testing.T) {
	a, _, _ := open(t, sqliteOnly(), newAccounts("p", "h"))
	ctx := context.Background()
	for _, name := range []string{"", "Presenter", "1st", "a,b", "a b", "a\nadmin", "a:b", "*", strings.Repeat("a", 33), "admin"} {
		if err := a.DefineRoomRole(ctx, name, []string{"room.join"}); !errors.Is(err, rbac.ErrInvalidRole) {
			t.Errorf("role name %q: err = %v, want ErrInvalidRole", name, err)
		}
	}
	if err := a.DefineRoomRole(ctx, "presenter", nil); !errors.Is(err, rbac.ErrInvalidRole) {
		t.Errorf("no actions: err = %v", err)
	}
	for _, act := range []string{"admin.users", "admin.audit", "rooms.create", "room.*", "*", "", "room.join, room.manage"} {
		if err := a.DefineRoomRole(ctx, "presenter", []string{"room.join", act}); !errors.Is(err, rbac.ErrUnknownAction) {
			t.Errorf("action %q: err = %v, want ErrUnknownAction", act, err)
		}
	}
	if a.IsRoomRole("presenter") {
		t.Fatalf("refused definitions created the role")
	}
	must(t, a.DefineRoomRole(ctx, strings.Repeat("a", 32), []string{"room.join"}))
	must(t, a.DefineRoomRole(ctx, "presenter", []string{"room.screen", "room.join", "room.join"}))
	must(t, a.SetRoomRole(ctx, "user:p", roomA, "presenter"))
	if got := a.Permissions(ctx, "user:p", roomA); !slices.Equal(got, []string{"room.join", "room.screen"}) {
		t.Errorf("presenter = %v", got)
	}
	events, cancel := a.Subscribe()
	defer cancel()
	// Replacing the actions changes live bindings at once.
	must(t, a.DefineRoomRole(ctx, "presenter", []string{"room.join", "room.chat"}))
	if got := a.Permissions(ctx, "user:p", roomA); !slices.Equal(got, []string{"room.chat", "room.join"}) {
		t.Errorf("redefined presenter = %v", got)
	}
	if e := receive(t, events); e != (rbac.Event{Kind: rbac.EventPolicy, Room: rbac.Global}) {
		t.Errorf("DefineRoomRole published %+v", e)
	}
	// Built-in room roles are data too.
	must(t, a.DefineRoomRole(ctx, rbac.RoleViewer, []string{"room.join"}))
	must(t, a.SetRoomRole(ctx, "user:h", roomA, rbac.RoleViewer))
	if a.Can(ctx, "user:h", roomA, "room.chat") {
		t.Errorf("viewer kept room.chat after redefinition")
	}
	if a.Can(ctx, "user:p", roomB, "room.join") || a.Can(ctx, "user:p", rbac.Global, "room.join") {
		t.Errorf("custom role leaks out of its room")
	}
}

var (
	storedSubject = regexp.MustCompile(`^(user|guest):[A-Za-z0-9_-]{1,64}$`)
	storedRole    = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)
	storedDomain  = regexp.MustCompile(`^(\*|room:[A-Za-z0-9_-]{1,64})$`)
)

// TestInjectedNamesNeverReachThePolicy: malformed subjects, rooms and roles
// are refused by every mutator, nothing of them is stored, and a policy
// reloaded from the store grants them nothing.
func TestInjectedNamesNeverReachThePolicy(t *testing.T) {
	storetest.Each(t, func(t *testing.T, tg storetest.Target) {
		a, st, _ := open(t, tg, newAccounts("h", "a"))
		ctx := context.Background()
		must(t, a.SetRoomRole(ctx, "user:h", roomA, rbac.RoleHost))
		before, err := st.CasbinRules(ctx)
		must(t, err)

		bad := []string{"", "*", "a, admin", "user:a, admin", "user:h\nadmin", "room:x\nadmin", "::", "../x",
			"user:*", "user:h,admin,*", "user:h\r\ng, user:x, admin, *", "guest:", "admin", "user:h ", "user:a\x00"}
		for _, s := range bad {
			for name, err := range map[string]error{
				"SetRoomRole":    a.SetRoomRole(ctx, s, roomA, rbac.RoleHost),
				"SetGlobalRoles": a.SetGlobalRoles(ctx, s, []string{rbac.RoleAdmin}),
				"RemoveFromRoom": a.RemoveFromRoom(ctx, s, roomA),
				"RemoveSubject":  a.RemoveSubject(ctx, s),
			} {
				if !errors.Is(err, rbac.ErrInvalidID) {
					t.Errorf("%s(subject %q): err = %v, want ErrInvalidID", name, s, err)
				}
			}
			if s == "" || s == "admin" {
				continue // Global (refused below as a room) and a well-formed id
			}
			for name, err := range map[string]error{
				"SetRoomRole":    a.SetRoomRole(ctx, "user:a", s, rbac.RoleHost),
				"RemoveFromRoom": a.RemoveFromRoom(ctx, "user:h", s),
				"DeleteRoom":     a.DeleteRoom(ctx, s),
			} {
				if !errors.Is(err, rbac.ErrInvalidID) {
					t.Errorf("%s(room %q): err = %v, want ErrInvalidID", name, s, err)
				}
			}
		}
		if err := a.DeleteRoom(ctx, rbac.Global); !errors.Is(err, rbac.ErrInvalidID) {
			t.Errorf("DeleteRoom(Global): err = %v", err)
		}
		for _, role := range []string{"host, *", "admin\ng", "host,admin"} {
			if err := a.SetRoomRole(ctx, "user:a", roomA, role); !errors.Is(err, rbac.ErrUnknownRole) {
				t.Errorf("role %q: err = %v", role, err)
			}
			if err := a.DefineRoomRole(ctx, role, []string{"room.join"}); !errors.Is(err, rbac.ErrInvalidRole) {
				t.Errorf("define %q: err = %v", role, err)
			}
		}

		after, err := st.CasbinRules(ctx)
		must(t, err)
		if !slices.Equal(before, after) {
			t.Errorf("refused calls changed the stored policy:\nbefore %v\nafter  %v", before, after)
		}
		for _, r := range after {
			ok := false
			switch r.PType {
			case "g":
				ok = storedSubject.MatchString(r.V0) && storedRole.MatchString(r.V1) && storedDomain.MatchString(r.V2)
			case "p":
				ok = storedRole.MatchString(r.V0) && (r.V1 == "room" || r.V1 == "*") && slices.Contains(allActions, r.V2)
			}
			if !ok {
				t.Errorf("stored line %+v is not well-formed", r)
			}
		}
		b, err := rbac.New(ctx, st, nil)
		must(t, err)
		b.SetUserState(newAccounts("h", "a").state)
		for _, s := range append(bad, "user:a", "user:x") {
			for _, room := range []string{roomA, "x", rbac.Global} {
				if got := b.Permissions(ctx, s, room); len(got) != 0 {
					t.Errorf("after reload %q has %v in %q", s, got, room)
				}
			}
		}
	})
}

func TestRemoveSubjectAndDeleteRoomEvents(t *testing.T) {
	a, _, _ := open(t, sqliteOnly(), newAccounts("h", "u"))
	ctx := context.Background()
	must(t, a.SetRoomRole(ctx, "user:h", roomA, rbac.RoleHost))
	must(t, a.SetRoomRole(ctx, "user:h", roomB, rbac.RoleHost))
	must(t, a.SetRoomRole(ctx, "guest:g", roomA, rbac.RoleGuest))
	must(t, a.SetRoomRole(ctx, "guest:g", roomB, rbac.RoleViewer))
	must(t, a.SetRoomRole(ctx, "user:u", roomA, rbac.RoleViewer))
	must(t, a.SetGlobalRoles(ctx, "user:u", []string{rbac.RoleMember}))
	events, cancel := a.Subscribe()
	defer cancel()

	must(t, a.RemoveSubject(ctx, "guest:g"))
	if got := a.RoomsOf(ctx, "guest:g"); len(got) != 0 {
		t.Errorf("guest still in %v", got)
	}
	want := []rbac.Event{{Subject: "guest:g", Room: roomA, Kind: "binding"}, {Subject: "guest:g", Room: roomB, Kind: "binding"}}
	if got := []rbac.Event{receive(t, events), receive(t, events)}; !sameEvents(got, want) {
		t.Errorf("RemoveSubject events = %v, want %v", got, want)
	}
	must(t, a.RemoveSubject(ctx, "user:u"))
	want = []rbac.Event{{Subject: "user:u", Room: rbac.Global, Kind: "binding"}, {Subject: "user:u", Room: roomA, Kind: "binding"}}
	if got := []rbac.Event{receive(t, events), receive(t, events)}; !sameEvents(got, want) {
		t.Errorf("RemoveSubject events = %v, want %v", got, want)
	}
	must(t, a.RemoveSubject(ctx, "user:nobody")) // nothing to remove

	must(t, a.SetRoomRole(ctx, "user:u", roomA, rbac.RoleViewer))
	receive(t, events)
	must(t, a.DeleteRoom(ctx, roomA))
	want = []rbac.Event{{Subject: "user:h", Room: roomA, Kind: "binding"}, {Subject: "user:u", Room: roomA, Kind: "binding"}}
	if got := []rbac.Event{receive(t, events), receive(t, events)}; !sameEvents(got, want) {
		t.Errorf("DeleteRoom events = %v, want %v", got, want)
	}
	if got := a.RoomsOf(ctx, "user:h"); !maps.Equal(got, map[string]string{roomB: "host"}) {
		t.Errorf("RoomsOf(h) after DeleteRoom(A) = %v", got)
	}
	select {
	case e := <-events:
		t.Errorf("unexpected event %+v", e)
	default:
	}
}

func sameEvents(got, want []rbac.Event) bool {
	order := func(x, y rbac.Event) int {
		return cmp.Or(cmp.Compare(x.Kind, y.Kind), cmp.Compare(x.Room, y.Room), cmp.Compare(x.Subject, y.Subject))
	}
	got, want = slices.Clone(got), slices.Clone(want)
	slices.SortFunc(got, order)
	slices.SortFunc(want, order)
	return slices.Equal(got, want)
}

func TestInviteRoles(t *testing.T) {
	for role, want := range map[string][2]bool{ // allowed, requires account
		rbac.RoleGuest:      {true, false},
		rbac.RoleViewer:     {true, false},
		rbac.RoleRoomMember: {true, true},
		rbac.RoleModerator:  {false, true},
		rbac.RoleHost:       {false, true},
		rbac.RoleAdmin:      {false, true},
		"":                  {false, true},
	} {
		if got := [2]bool{rbac.InviteRoleAllowed(role), rbac.InviteRequiresAccount(role)}; got != want {
			t.Errorf("%q: allowed, requires account = %v, want %v", role, got, want)
		}
	}
}

func TestSubjects(t *testing.T) {
	if rbac.UserSubject("abc") != "user:abc" || rbac.GuestSubject("abc") != "guest:abc" {
		t.Errorf("subjects: %q %q", rbac.UserSubject("abc"), rbac.GuestSubject("abc"))
	}
}

// TestConcurrentUse runs decisions and changes together under -race.
func TestConcurrentUse(t *testing.T) {
	acc := newAccounts("h")
	a, _, _ := open(t, sqliteOnly(), acc)
	ctx := context.Background()
	must(t, a.SetRoomRole(ctx, "user:h", roomA, rbac.RoleHost))
	events, cancel := a.Subscribe()
	var reader sync.WaitGroup
	reader.Go(func() {
		for range events {
		}
	})
	var workers sync.WaitGroup
	for i := range 4 {
		workers.Go(func() {
			for j := range 20 {
				s := rbac.GuestSubject(string(rune('a'+i)) + string(rune('a'+j)))
				if err := a.SetRoomRole(ctx, s, roomA, rbac.RoleViewer); err != nil {
					t.Error(err)
				}
				if !a.Can(ctx, s, roomA, "room.join") {
					t.Errorf("%s cannot join right after SetRoomRole", s)
				}
				if err := a.RemoveSubject(ctx, s); err != nil {
					t.Error(err)
				}
			}
		})
		workers.Go(func() {
			for range 200 {
				if !a.Can(ctx, "user:h", roomA, "room.manage") {
					t.Error("host denied during concurrent changes")
				}
				a.Permissions(ctx, "user:h", roomA)
				a.RoomMembers(ctx, roomA)
			}
		})
	}
	workers.Go(func() {
		for range 5 {
			if err := a.Reload(ctx); err != nil {
				t.Error(err)
			}
		}
	})
	workers.Wait()
	cancel()
	reader.Wait()
	if got := a.RoomMembers(ctx, roomA); !slices.Equal(got, []rbac.Binding{{"user:h", "host"}}) {
		t.Errorf("members left: %v", got)
	}
}

// TestChurnCompacts: many guests come and go; decisions stay right, and
// the role links are rebuilt so that departed guests do not accumulate.
func TestChurnCompacts(t *testing.T) {
	a, _, _ := open(t, sqliteOnly(), newAccounts("h"))
	ctx := context.Background()
	must(t, a.SetRoomRole(ctx, "user:h", roomA, rbac.RoleHost))
	for i := range 1100 {
		g := rbac.GuestSubject("churn" + strconv.Itoa(i))
		must(t, a.SetRoomRole(ctx, g, roomB, rbac.RoleGuest))
		must(t, a.RemoveSubject(ctx, g))
	}
	if n := a.UnboundForTest(); n >= 1024 {
		t.Errorf("%d removals since the last rebuild: compaction did not run", n)
	}
	if !a.Can(ctx, "user:h", roomA, "room.manage") || a.Can(ctx, "guest:churn7", roomB, "room.join") {
		t.Errorf("decisions wrong after compaction")
	}
	must(t, a.SetRoomRole(ctx, "guest:after", roomB, rbac.RoleGuest))
	if !a.Can(ctx, "guest:after", roomB, "room.join") {
		t.Errorf("binding after compaction not effective")
	}
}

// Refresh reloads only when the store holds other lines than memory: a
// change by this process is already in memory (no reload, no event); one
// by another process is picked up and published.
func TestRefresh(t *testing.T) {
	storetest.Each(t, func(t *testing.T, tg storetest.Target) {
		ctx := context.Background()
		acc := newAccounts("x", "y")
		a, st, _ := open(t, tg, acc)
		events, cancel := a.Subscribe()
		defer cancel()
		must(t, a.SetRoomRole(ctx, "user:y", roomA, rbac.RoleHost))
		receive(t, events) // this process's own change
		if changed, err := a.Refresh(ctx); err != nil || changed {
			t.Fatalf("Refresh after a change of this process: %v %v", changed, err)
		}
		b, err := rbac.New(ctx, st, nil)
		must(t, err)
		must(t, b.SetRoomRole(ctx, "user:x", roomA, rbac.RoleRoomMember))
		if changed, err := a.Refresh(ctx); err != nil || !changed {
			t.Fatalf("Refresh after another process's change: %v %v", changed, err)
		}
		if !a.Can(ctx, "user:x", roomA, "room.join") {
			t.Error("Refresh did not pick up the change")
		}
		if e := receive(t, events); e != (rbac.Event{Kind: rbac.EventPolicy, Room: rbac.Global}) {
			t.Errorf("Refresh published %+v", e)
		}
		if changed, err := a.Refresh(ctx); err != nil || changed {
			t.Errorf("a second Refresh: %v %v", changed, err)
		}
	})
}

package rbac_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/parley-meet/parley/rbac"
	"github.com/parley-meet/parley/store"
)

// BenchmarkCan asks decisions against a policy of 1,000 rooms with five
// bindings each and a handful of admins, on SQLite; UserState is an
// in-memory lookup, so the numbers are rbac's and Casbin's own.
func BenchmarkCan(b *testing.B) {
	ctx := context.Background()
	st, err := store.Open(ctx, store.Options{DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	a, err := rbac.New(ctx, st, nil)
	if err != nil {
		b.Fatal(err)
	}
	acc := newAccounts("admin0")
	a.SetUserState(acc.state)
	must(b, a.SetGlobalRoles(ctx, "user:admin0", []string{rbac.RoleAdmin}))
	roles := []string{rbac.RoleHost, rbac.RoleModerator, rbac.RoleRoomMember, rbac.RoleViewer, rbac.RoleGuest}
	for r := range 1000 {
		for i, role := range roles {
			id := fmt.Sprintf("u%d-%d", r, i)
			acc.set(id, true, false)
			must(b, a.SetRoomRole(ctx, rbac.UserSubject(id), fmt.Sprintf("room%d", r), role))
		}
	}
	for _, c := range []struct {
		name                  string
		subject, room, action string
		want                  bool
	}{
		{"allow-room", "user:u500-2", "room500", rbac.ActRoomPublish, true},
		{"deny-room", "user:u500-3", "room500", rbac.ActRoomPublish, false},
		{"deny-other-room", "user:u500-0", "room501", rbac.ActRoomJoin, false},
		{"admin-room", "user:admin0", "room7", rbac.ActRecordingDelete, true},
		{"admin-global", "user:admin0", rbac.Global, rbac.ActAdminAudit, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			if got := a.Can(ctx, c.subject, c.room, c.action); got != c.want {
				b.Fatalf("Can = %v, want %v", got, c.want)
			}
			b.ReportAllocs()
			for b.Loop() {
				a.Can(ctx, c.subject, c.room, c.action)
			}
		})
	}
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				a.Can(ctx, "user:u500-2", "room500", rbac.ActRoomPublish)
			}
		})
	})
}

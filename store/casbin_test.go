package store_test

import (
	"context"
	"database/sql"
	"errors"
	"io/fs"
	"os"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/pressly/goose/v3"

	"github.com/parley-meet/parley/store"
	"github.com/parley-meet/parley/store/storetest"
)

// seededLines is the number of policy lines 00003_rbac.sql seeds: admin 14,
// global member 1, host 11, moderator 5, member 4, viewer 2, guest 2.
const seededLines = 39

func bindings(t *testing.T, s *store.Store) []store.CasbinRule {
	t.Helper()
	all, err := s.CasbinRules(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []store.CasbinRule
	for _, r := range all {
		if r.PType == "g" {
			out = append(out, r)
		}
	}
	return out
}

func TestCasbinRulesSeeded(t *testing.T) {
	storetest.Each(t, func(t *testing.T, tg storetest.Target) {
		s, _ := tg.Open(t)
		all, err := s.CasbinRules(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != seededLines {
			t.Fatalf("fresh store has %d policy lines, want %d: %v", len(all), seededLines, all)
		}
		for _, want := range []store.CasbinRule{
			{PType: "p", V0: "admin", V1: "*", V2: "admin.audit"},
			{PType: "p", V0: "member", V1: "*", V2: "rooms.create"},
			{PType: "p", V0: "host", V1: "room", V2: "recording.delete"},
			{PType: "p", V0: "guest", V1: "room", V2: "room.chat"},
		} {
			if !slices.Contains(all, want) {
				t.Errorf("seed lacks %v", want)
			}
		}
		if !slices.IsSortedFunc(all, func(a, b store.CasbinRule) int {
			return strings.Compare(a.PType+"\x00"+a.V0+"\x00"+a.V1+"\x00"+a.V2, b.PType+"\x00"+b.V0+"\x00"+b.V1+"\x00"+b.V2)
		}) {
			t.Errorf("CasbinRules is not ordered")
		}
	})
}

func TestCasbinRulesAddRemove(t *testing.T) {
	storetest.Each(t, func(t *testing.T, tg storetest.Target) {
		s, _ := tg.Open(t)
		ctx := context.Background()
		a := store.CasbinRule{PType: "g", V0: "user:a", V1: "host", V2: "room:r1"}
		b := store.CasbinRule{PType: "g", V0: "user:b", V1: "member", V2: "room:r1"}
		c := store.CasbinRule{PType: "g", V0: "user:a", V1: "viewer", V2: "room:r2"}
		d := store.CasbinRule{PType: "g", V0: "user:a", V1: "admin", V2: "*"}

		if err := s.AddCasbinRules(ctx, []store.CasbinRule{a, b, c, d}); err != nil {
			t.Fatal(err)
		}
		// Adding again is idempotent, also inside one batch.
		if err := s.AddCasbinRules(ctx, []store.CasbinRule{a, a, b}); err != nil {
			t.Fatalf("re-add: %v", err)
		}
		if got := bindings(t, s); len(got) != 4 {
			t.Fatalf("bindings = %v", got)
		}
		// Removing a line that is not stored is not an error.
		if err := s.RemoveCasbinRules(ctx, []store.CasbinRule{b, {PType: "g", V0: "user:z", V1: "host", V2: "room:r1"}}); err != nil {
			t.Fatal(err)
		}
		if got := bindings(t, s); !slices.Equal(got, []store.CasbinRule{d, a, c}) {
			t.Fatalf("after remove: %v", got)
		}
		// One transaction: remove a, add b.
		if err := s.UpdateCasbinRules(ctx, []store.CasbinRule{a}, []store.CasbinRule{b}); err != nil {
			t.Fatal(err)
		}
		if got := bindings(t, s); !slices.Equal(got, []store.CasbinRule{d, c, b}) {
			t.Fatalf("after update: %v", got)
		}
		if err := s.UpdateCasbinRules(ctx, nil, nil); err != nil {
			t.Errorf("empty update: %v", err)
		}
	})
}

func TestRemoveFilteredCasbinRules(t *testing.T) {
	storetest.Each(t, func(t *testing.T, tg storetest.Target) {
		s, _ := tg.Open(t)
		ctx := context.Background()
		rules := []store.CasbinRule{
			{PType: "g", V0: "user:a", V1: "host", V2: "room:r1"},
			{PType: "g", V0: "user:b", V1: "member", V2: "room:r1"},
			{PType: "g", V0: "user:a", V1: "viewer", V2: "room:r2"},
			{PType: "g", V0: "user:c", V1: "viewer", V2: "room:r2"},
		}
		if err := s.AddCasbinRules(ctx, rules); err != nil {
			t.Fatal(err)
		}
		// Field 2 (the domain): every binding in room r1.
		if err := s.RemoveFilteredCasbinRules(ctx, "g", 2, "room:r1"); err != nil {
			t.Fatal(err)
		}
		if got := bindings(t, s); !slices.Equal(got, []store.CasbinRule{rules[2], rules[3]}) {
			t.Fatalf("after removing r1: %v", got)
		}
		// An empty value matches anything: user:a with any role in r2.
		if err := s.RemoveFilteredCasbinRules(ctx, "g", 0, "user:a", "", "room:r2"); err != nil {
			t.Fatal(err)
		}
		if got := bindings(t, s); !slices.Equal(got, []store.CasbinRule{rules[3]}) {
			t.Fatalf("after removing user:a: %v", got)
		}
		// The ptype is part of the filter: p lines are untouched.
		if err := s.RemoveFilteredCasbinRules(ctx, "g", 1, "viewer"); err != nil {
			t.Fatal(err)
		}
		if all, _ := s.CasbinRules(ctx); len(all) != seededLines {
			t.Errorf("%d lines left, want the %d seeded", len(all), seededLines)
		}
		for _, bad := range []struct {
			index  int
			values []string
		}{{-1, []string{"x"}}, {3, []string{"x"}}, {1, []string{"a", "b", "c"}}} {
			if err := s.RemoveFilteredCasbinRules(ctx, "p", bad.index, bad.values...); !errors.Is(err, store.ErrBadFilter) {
				t.Errorf("filter %d %v: err = %v, want ErrBadFilter", bad.index, bad.values, err)
			}
		}
		if all, _ := s.CasbinRules(ctx); len(all) != seededLines {
			t.Errorf("bad filters removed lines: %d left", len(all))
		}
	})
}

func TestReplaceCasbinRules(t *testing.T) {
	storetest.Each(t, func(t *testing.T, tg storetest.Target) {
		s, _ := tg.Open(t)
		ctx := context.Background()
		want := []store.CasbinRule{
			{PType: "g", V0: "user:a", V1: "admin", V2: "*"},
			{PType: "p", V0: "admin", V1: "*", V2: "room.join"},
		}
		if err := s.ReplaceCasbinRules(ctx, append(want, want[0])); err != nil {
			t.Fatal(err)
		}
		got, err := s.CasbinRules(ctx)
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("after replace: %v, %v", got, err)
		}
		if err := s.ReplaceCasbinRules(ctx, nil); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.CasbinRules(ctx); len(got) != 0 {
			t.Errorf("replace with nothing left %v", got)
		}
	})
}

// TestRBACMigrationMovesRoles applies 00001 and 00002, creates users the
// way the accounts schema stored them (users.role), then applies 00003:
// every user's role becomes a global binding and the column is gone. Down
// brings the column back with the admins.
func TestRBACMigrationMovesRoles(t *testing.T) {
	storetest.Each(t, func(t *testing.T, tg storetest.Target) {
		ctx := context.Background()
		o := tg.Options(t)
		db := storetest.DB(t, o)
		dialect := goose.DialectSQLite3
		if tg.Engine == store.Postgres {
			dialect = goose.DialectPostgres
		}
		// Only the migrations up to 00003, so that later ones cannot change
		// what this test means.
		files := fstest.MapFS{}
		for _, name := range []string{"00001_audit.sql", "00002_accounts.sql", "00003_rbac.sql"} {
			b, err := fs.ReadFile(os.DirFS("migrations"), name)
			if err != nil {
				t.Fatal(err)
			}
			files[name] = &fstest.MapFile{Data: b}
		}
		p, err := goose.NewProvider(dialect, db, files, goose.WithDisableGlobalRegistry(true))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.UpTo(ctx, 2); err != nil {
			t.Fatal(err)
		}
		for _, u := range []struct{ id, name, role string }{
			{"u1", "ada", "admin"}, {"u2", "bob", "member"}, {"u3", "cy", "member"},
		} {
			if _, err := db.ExecContext(ctx, `INSERT INTO users (id, username, display_name, role, created_us, updated_us)
				VALUES ($1, $2, $2, $3, 1, 1)`, u.id, u.name, u.role); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := p.UpTo(ctx, 3); err != nil {
			t.Fatalf("migrate to 00003: %v", err)
		}
		got := queryBindings(t, db)
		want := []string{"user:u1 admin *", "user:u2 member *", "user:u3 member *"}
		if !slices.Equal(got, want) {
			t.Errorf("migrated bindings = %v, want %v", got, want)
		}
		if _, err := db.ExecContext(ctx, `SELECT role FROM users`); err == nil {
			t.Errorf("users.role still exists after 00003")
		}

		if _, err := p.DownTo(ctx, 2); err != nil {
			t.Fatalf("down to 00002: %v", err)
		}
		roles := map[string]string{}
		rows, err := db.QueryContext(ctx, `SELECT id, role FROM users`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var id, role string
			rows.Scan(&id, &role)
			roles[id] = role
		}
		rows.Close()
		if roles["u1"] != "admin" || roles["u2"] != "member" || roles["u3"] != "member" {
			t.Errorf("roles after down = %v", roles)
		}
		if _, err := p.UpTo(ctx, 3); err != nil {
			t.Fatalf("up again: %v", err)
		}
		if got := queryBindings(t, db); !slices.Equal(got, want) {
			t.Errorf("bindings after down and up = %v", got)
		}
	})
}

func queryBindings(t *testing.T, db *sql.DB) []string {
	t.Helper()
	rows, err := db.Query(`SELECT v0, v1, v2 FROM casbin_rule WHERE ptype = 'g' ORDER BY v0, v1`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v0, v1, v2 string
		if err := rows.Scan(&v0, &v1, &v2); err != nil {
			t.Fatal(err)
		}
		out = append(out, v0+" "+v1+" "+v2)
	}
	return out
}

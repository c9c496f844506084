package rbac_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/casbin/casbin/v2"
	"github.com/casbin/casbin/v2/model"

	"github.com/parley-meet/parley/rbac"
	"github.com/parley-meet/parley/store"
	"github.com/parley-meet/parley/store/storetest"
)

// plainModel is a textbook RBAC-with-domains model, to drive the adapter
// through Casbin's own auto-save.
const plainModel = `
[request_definition]
r = sub, dom, act
[policy_definition]
p = sub, dom, act
[role_definition]
g = _, _, _
[policy_effect]
e = some(where (p.eft == allow))
[matchers]
m = g(r.sub, p.sub, r.dom) && r.dom == p.dom && r.act == p.act
`

func TestAdapterAutoSave(t *testing.T) {
	storetest.Each(t, func(t *testing.T, tg storetest.Target) {
		st, _ := tg.Open(t)
		ctx := context.Background()
		seeded, err := st.CasbinRules(ctx)
		must(t, err)
		m, err := model.NewModelFromString(plainModel)
		must(t, err)
		e, err := casbin.NewEnforcer(m, rbac.NewAdapter(st))
		must(t, err)
		if lines, _ := e.GetPolicy(); len(lines) != len(seeded) {
			t.Fatalf("loaded %d lines, store has %d", len(lines), len(seeded))
		}
		mustTrue := func(ok bool, err error) {
			t.Helper()
			if err != nil || !ok {
				t.Fatalf("ok = %v, err = %v", ok, err)
			}
		}
		mustTrue(e.AddGroupingPolicy("user:x", "host", "room:r"))
		mustTrue(e.AddGroupingPolicy("user:y", "viewer", "room:r"))
		mustTrue(e.AddGroupingPolicies([][]string{{"user:z", "viewer", "room:s"}, {"user:x", "viewer", "room:s"}}))
		mustTrue(e.AddPolicies([][]string{{"presenter", "room", "room.join"}, {"presenter", "room", "room.screen"}}))
		mustTrue(e.RemovePolicy("presenter", "room", "room.screen"))
		mustTrue(e.RemoveFilteredGroupingPolicy(2, "room:r"))
		mustTrue(e.RemoveGroupingPolicies([][]string{{"user:z", "viewer", "room:s"}}))

		got, err := st.CasbinRules(ctx)
		must(t, err)
		want := append(slices.Clone(seeded),
			store.CasbinRule{PType: "g", V0: "user:x", V1: "viewer", V2: "room:s"},
			store.CasbinRule{PType: "p", V0: "presenter", V1: "room", V2: "room.join"})
		if !sameRules(got, want) {
			t.Errorf("stored after auto-save:\n%v\nwant\n%v", got, want)
		}

		// SavePolicy writes the model back whole.
		mustTrue(e.RemovePolicy("presenter", "room", "room.join"))
		e.EnableAutoSave(false)
		mustTrue(e.AddGroupingPolicy("user:w", "admin", "*"))
		must(t, e.SavePolicy())
		got, _ = st.CasbinRules(ctx)
		want = append(slices.Clone(seeded),
			store.CasbinRule{PType: "g", V0: "user:x", V1: "viewer", V2: "room:s"},
			store.CasbinRule{PType: "g", V0: "user:w", V1: "admin", V2: "*"})
		if !sameRules(got, want) {
			t.Errorf("stored after SavePolicy:\n%v\nwant\n%v", got, want)
		}
	})
}

func sameRules(got, want []store.CasbinRule) bool {
	key := func(r store.CasbinRule) string { return r.PType + "\x00" + r.V0 + "\x00" + r.V1 + "\x00" + r.V2 }
	order := func(a, b store.CasbinRule) int { return strings.Compare(key(a), key(b)) }
	got, want = slices.Clone(got), slices.Clone(want)
	slices.SortFunc(got, order)
	slices.SortFunc(want, order)
	return slices.Equal(got, want)
}

func TestAdapterRefusesLinesThatDoNotFit(t *testing.T) {
	ad := rbac.NewAdapter(nil) // refused before the store is touched
	if err := ad.AddPolicy("p", "p", []string{"a", "b", "c", "d"}); err == nil {
		t.Errorf("a four-value line was accepted")
	}
	if err := ad.RemovePolicies("g", "", [][]string{{"a", "b", "c"}}); err == nil {
		t.Errorf("a line without ptype was accepted")
	}
}

// TestLoadRefusesMalformedRows: rows edited behind Parley's back that the
// model cannot hold stop New instead of loading a partial policy.
func TestLoadRefusesMalformedRows(t *testing.T) {
	storetest.Each(t, func(t *testing.T, tg storetest.Target) {
		for _, row := range [][4]string{
			{"x", "user:a", "admin", "*"},
			{"p", "admin", "*", ""},
			{"g", "user:a", "", "*"},
			{"", "user:a", "admin", "*"},
		} {
			st, o := tg.Open(t)
			if _, err := storetest.DB(t, o).Exec(`INSERT INTO casbin_rule (ptype, v0, v1, v2) VALUES ($1, $2, $3, $4)`,
				row[0], row[1], row[2], row[3]); err != nil {
				t.Fatal(err)
			}
			if _, err := rbac.New(context.Background(), st, nil); err == nil {
				t.Errorf("New loaded a policy with the row %q", row)
			}
		}
	})
}

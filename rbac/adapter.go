package rbac

import (
	"context"
	"fmt"

	"github.com/casbin/casbin/v2/model"
	"github.com/casbin/casbin/v2/persist"

	"github.com/parley-meet/parley/store"
)

// Adapter is a Casbin adapter over the store's casbin_rule table. It keeps
// lines of at most three values (the model's p and g); a line that does not
// fit is refused, on load and on save. The methods without a context use
// context.Background(); the Authorizer uses the context variants.
type Adapter struct {
	store *store.Store
}

var (
	_ persist.Adapter             = (*Adapter)(nil)
	_ persist.BatchAdapter        = (*Adapter)(nil)
	_ persist.ContextAdapter      = (*Adapter)(nil)
	_ persist.ContextBatchAdapter = (*Adapter)(nil)
)

// NewAdapter returns an adapter over st.
func NewAdapter(st *store.Store) *Adapter { return &Adapter{store: st} }

// toRule converts a Casbin line of ptype to a stored row.
func toRule(ptype string, line []string) (store.CasbinRule, error) {
	if ptype == "" || len(line) > 3 {
		return store.CasbinRule{}, fmt.Errorf("rbac: policy line %q with %d values does not fit casbin_rule", ptype, len(line))
	}
	var v [3]string
	copy(v[:], line)
	return store.CasbinRule{PType: ptype, V0: v[0], V1: v[1], V2: v[2]}, nil
}

func toRules(ptype string, lines [][]string) ([]store.CasbinRule, error) {
	out := make([]store.CasbinRule, 0, len(lines))
	for _, l := range lines {
		r, err := toRule(ptype, l)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// values is the line of a stored row, without its ptype.
func values(r store.CasbinRule) []string { return []string{r.V0, r.V1, r.V2} }

// LoadPolicyCtx loads every stored line into m. A line whose ptype the
// model does not define, or with an empty value, is an error: a policy
// that cannot be read whole is not used at all.
func (a *Adapter) LoadPolicyCtx(ctx context.Context, m model.Model) error {
	rules, err := a.store.CasbinRules(ctx)
	if err != nil {
		return fmt.Errorf("rbac: load policy: %w", err)
	}
	for _, r := range rules {
		sec := r.PType[:min(1, len(r.PType))]
		ast, ok := m[sec][r.PType]
		if !ok || len(ast.Tokens) > 3 {
			return fmt.Errorf("rbac: load policy: stored line of unknown type %q", r.PType)
		}
		all := values(r)
		line := all[:len(ast.Tokens)]
		for i, v := range all {
			if (i < len(line)) != (v != "") {
				return fmt.Errorf("rbac: load policy: stored %q line does not have %d values", r.PType, len(line))
			}
		}
		if err := persist.LoadPolicyArray(append([]string{r.PType}, line...), m); err != nil {
			return fmt.Errorf("rbac: load policy: %w", err)
		}
	}
	return nil
}

// LoadPolicy loads every stored line into m.
func (a *Adapter) LoadPolicy(m model.Model) error { return a.LoadPolicyCtx(context.Background(), m) }

// SavePolicyCtx replaces the stored policy with m's, in one transaction.
func (a *Adapter) SavePolicyCtx(ctx context.Context, m model.Model) error {
	var all []store.CasbinRule
	for _, sec := range []string{ptypePolicy, ptypeBinding} {
		for ptype, ast := range m[sec] {
			rules, err := toRules(ptype, ast.Policy)
			if err != nil {
				return err
			}
			all = append(all, rules...)
		}
	}
	return a.store.ReplaceCasbinRules(ctx, all)
}

// SavePolicy replaces the stored policy with m's.
func (a *Adapter) SavePolicy(m model.Model) error { return a.SavePolicyCtx(context.Background(), m) }

// AddPolicyCtx stores one line.
func (a *Adapter) AddPolicyCtx(ctx context.Context, _ string, ptype string, line []string) error {
	return a.AddPoliciesCtx(ctx, "", ptype, [][]string{line})
}

// AddPolicy stores one line.
func (a *Adapter) AddPolicy(sec, ptype string, line []string) error {
	return a.AddPolicyCtx(context.Background(), sec, ptype, line)
}

// AddPoliciesCtx stores lines in one transaction.
func (a *Adapter) AddPoliciesCtx(ctx context.Context, _ string, ptype string, lines [][]string) error {
	rules, err := toRules(ptype, lines)
	if err != nil {
		return err
	}
	return a.store.AddCasbinRules(ctx, rules)
}

// AddPolicies stores lines in one transaction.
func (a *Adapter) AddPolicies(sec, ptype string, lines [][]string) error {
	return a.AddPoliciesCtx(context.Background(), sec, ptype, lines)
}

// RemovePolicyCtx deletes one line.
func (a *Adapter) RemovePolicyCtx(ctx context.Context, _ string, ptype string, line []string) error {
	return a.RemovePoliciesCtx(ctx, "", ptype, [][]string{line})
}

// RemovePolicy deletes one line.
func (a *Adapter) RemovePolicy(sec, ptype string, line []string) error {
	return a.RemovePolicyCtx(context.Background(), sec, ptype, line)
}

// RemovePoliciesCtx deletes lines in one transaction.
func (a *Adapter) RemovePoliciesCtx(ctx context.Context, _ string, ptype string, lines [][]string) error {
	rules, err := toRules(ptype, lines)
	if err != nil {
		return err
	}
	return a.store.RemoveCasbinRules(ctx, rules)
}

// RemovePolicies deletes lines in one transaction.
func (a *Adapter) RemovePolicies(sec, ptype string, lines [][]string) error {
	return a.RemovePoliciesCtx(context.Background(), sec, ptype, lines)
}

// RemoveFilteredPolicyCtx deletes the lines of ptype whose values from
// fieldIndex on equal fieldValues (an empty value matches anything).
func (a *Adapter) RemoveFilteredPolicyCtx(ctx context.Context, _ string, ptype string, fieldIndex int, fieldValues ...string) error {
	return a.store.RemoveFilteredCasbinRules(ctx, ptype, fieldIndex, fieldValues...)
}

// RemoveFilteredPolicy deletes the lines matching a filter.
func (a *Adapter) RemoveFilteredPolicy(sec, ptype string, fieldIndex int, fieldValues ...string) error {
	return a.RemoveFilteredPolicyCtx(context.Background(), sec, ptype, fieldIndex, fieldValues...)
}

// update deletes remove and inserts add in one transaction.
func (a *Adapter) update(ctx context.Context, remove, add []store.CasbinRule) error {
	return a.store.UpdateCasbinRules(ctx, remove, add)
}

package rbac

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/parley-meet/parley/store"
)

// Refresh reloads the policy when the store's lines differ from those in
// memory: another process changed them (`parley user add`, `parley role
// define`, another node). Only then are live sessions re-checked (a
// policy event). It reports whether it reloaded. The server calls it
// every few seconds; issue 11's Redis watcher will make it immediate
// across nodes.
func (a *Authorizer) Refresh(ctx context.Context) (bool, error) {
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	rules, err := a.adapter.store.CasbinRules(ctx)
	if err != nil {
		return false, fmt.Errorf("rbac: refresh: %w", err)
	}
	stored := make([]string, 0, len(rules))
	for _, r := range rules {
		stored = append(stored, lineKey(r))
	}
	a.mu.RLock()
	mem := a.pol.lines()
	a.mu.RUnlock()
	slices.Sort(stored)
	if slices.Equal(stored, mem) {
		return false, nil
	}
	pol, err := a.load(ctx)
	if err != nil {
		return false, err
	}
	a.mu.Lock()
	a.pol = pol
	a.mu.Unlock()
	a.bus.publish(resync)
	return true, nil
}

// lineKey is a stored line as one comparable string.
func lineKey(r store.CasbinRule) string {
	return strings.Join([]string{r.PType, r.V0, r.V1, r.V2}, "\x00")
}

// lines are the policy's lines in memory, as lineKey writes them, sorted.
func (p *policy) lines() []string {
	var out []string
	m := p.enf.GetModel()
	for _, sec := range []string{"p", "g"} {
		for ptype, ast := range m[sec] {
			for _, l := range ast.Policy {
				var v [3]string
				copy(v[:], l)
				out = append(out, lineKey(store.CasbinRule{PType: ptype, V0: v[0], V1: v[1], V2: v[2]}))
			}
		}
	}
	slices.Sort(out)
	return out
}

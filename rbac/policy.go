package rbac

import (
	_ "embed"
	"errors"
	"fmt"
	"slices"

	"github.com/casbin/casbin/v2"
	"github.com/casbin/casbin/v2/model"

	"github.com/parley-meet/parley/store"
)

//go:embed model.conf
var modelText string

// policy is the policy in memory: Casbin's enforcer, which makes every
// decision, and indexes of the same lines for the questions Casbin answers
// only by scanning (who is in a room, which rooms a subject is in, which
// roles exist). Both change together in apply.
type policy struct {
	enf *casbin.Enforcer
	// bindings: domain → subject → roles held there, sorted.
	bindings map[string]map[string][]string
	// domains: subject → domains where it holds a role.
	domains map[string]map[string]struct{}
	// roles: roomTemplate or globalDomain → role → actions, sorted.
	roles map[string]map[string][]string
	// actions: every action some line grants, sorted.
	actions []string
	// bound counts the g lines; unbound counts those removed since the role
	// links were last built (see compact).
	bound, unbound int
}

// compactAfter is the least number of removed bindings that makes apply
// rebuild Casbin's role links.
const compactAfter = 1024

// newPolicy builds the enforcer over m, whose lines are already loaded.
func newPolicy(m model.Model) (*policy, error) {
	enf, err := casbin.NewEnforcer(m)
	if err != nil {
		return nil, fmt.Errorf("rbac: enforcer: %w", err)
	}
	rm := enf.GetRoleManager()
	if rm == nil {
		return nil, errors.New("rbac: the model defines no role manager")
	}
	enf.AddFunction("hasRole", func(args ...any) (any, error) {
		if len(args) != 3 {
			return false, fmt.Errorf("hasRole: %d arguments, want 3", len(args))
		}
		sub, ok1 := args[0].(string)
		role, ok2 := args[1].(string)
		dom, ok3 := args[2].(string)
		if !ok1 || !ok2 || !ok3 {
			return false, errors.New("hasRole: arguments must be strings")
		}
		return rm.HasLink(sub, role, dom)
	})
	if err := enf.BuildRoleLinks(); err != nil {
		return nil, fmt.Errorf("rbac: role links: %w", err)
	}
	p := &policy{
		enf:      enf,
		bindings: make(map[string]map[string][]string),
		domains:  make(map[string]map[string]struct{}),
		roles:    map[string]map[string][]string{roomTemplate: {}, globalDomain: {}},
	}
	lines, err := enf.GetPolicy()
	if err != nil {
		return nil, fmt.Errorf("rbac: %w", err)
	}
	for _, l := range lines {
		p.index(store.CasbinRule{PType: ptypePolicy, V0: l[0], V1: l[1], V2: l[2]}, true)
	}
	if lines, err = enf.GetGroupingPolicy(); err != nil {
		return nil, fmt.Errorf("rbac: %w", err)
	}
	for _, l := range lines {
		p.index(store.CasbinRule{PType: ptypeBinding, V0: l[0], V1: l[1], V2: l[2]}, true)
	}
	return p, nil
}

// newModel parses the embedded model.
func newModel() (model.Model, error) {
	m, err := model.NewModelFromString(modelText)
	if err != nil {
		return nil, fmt.Errorf("rbac: model: %w", err)
	}
	return m, nil
}

// apply removes and adds lines in memory, as the store has just done.
func (p *policy) apply(remove, add []store.CasbinRule) error {
	for _, r := range remove {
		var err error
		if r.PType == ptypeBinding {
			_, err = p.enf.RemoveGroupingPolicy(r.V0, r.V1, r.V2)
		} else {
			_, err = p.enf.RemovePolicy(r.V0, r.V1, r.V2)
		}
		if err != nil {
			return fmt.Errorf("rbac: remove %s line: %w", r.PType, err)
		}
		p.index(r, false)
	}
	for _, r := range add {
		var err error
		if r.PType == ptypeBinding {
			_, err = p.enf.AddGroupingPolicy(r.V0, r.V1, r.V2)
		} else {
			_, err = p.enf.AddPolicy(r.V0, r.V1, r.V2)
		}
		if err != nil {
			return fmt.Errorf("rbac: add %s line: %w", r.PType, err)
		}
		p.index(r, true)
	}
	return p.compact()
}

// compact rebuilds Casbin's role links once more bindings have been removed
// since the last build than remain, and at least compactAfter. Casbin's
// role manager keeps every subject and domain it has seen, links or not,
// so without this every guest session and deleted room would stay in
// memory until the next Reload. The cost, linear in the bindings, is paid
// at most once per as many removals.
func (p *policy) compact() error {
	if p.unbound < compactAfter || p.unbound < p.bound {
		return nil
	}
	p.unbound = 0
	if err := p.enf.BuildRoleLinks(); err != nil {
		return fmt.Errorf("rbac: rebuild role links: %w", err)
	}
	return nil
}

// index adds r to the indexes, or removes it.
func (p *policy) index(r store.CasbinRule, add bool) {
	switch r.PType {
	case ptypeBinding:
		subject, role, dom := r.V0, r.V1, r.V2
		bySubject := p.bindings[dom]
		if bySubject == nil {
			bySubject = make(map[string][]string)
			p.bindings[dom] = bySubject
		}
		before := len(bySubject[subject])
		bySubject[subject] = setSorted(bySubject[subject], role, add)
		switch after := len(bySubject[subject]); {
		case after > before:
			p.bound++
		case after < before:
			p.bound--
			p.unbound++
		}
		if len(bySubject[subject]) > 0 {
			if p.domains[subject] == nil {
				p.domains[subject] = make(map[string]struct{})
			}
			p.domains[subject][dom] = struct{}{}
			return
		}
		delete(bySubject, subject)
		if len(bySubject) == 0 {
			delete(p.bindings, dom)
		}
		delete(p.domains[subject], dom)
		if len(p.domains[subject]) == 0 {
			delete(p.domains, subject)
		}
	case ptypePolicy:
		role, dom, act := r.V0, r.V1, r.V2
		byRole := p.roles[dom]
		if byRole == nil {
			return // a line for another domain grants nothing in this model
		}
		byRole[role] = setSorted(byRole[role], act, add)
		if len(byRole[role]) == 0 {
			delete(byRole, role)
		}
		if add {
			p.actions = setSorted(p.actions, act, true)
			return
		}
		// Drop the action if no line grants it any more.
		for _, byRole := range p.roles {
			for _, acts := range byRole {
				if _, found := slices.BinarySearch(acts, act); found {
					return
				}
			}
		}
		p.actions = setSorted(p.actions, act, false)
	}
}

// setSorted inserts v into (or removes it from) the sorted set s.
func setSorted(s []string, v string, add bool) []string {
	i, found := slices.BinarySearch(s, v)
	switch {
	case add && !found:
		return slices.Insert(s, i, v)
	case !add && found:
		return slices.Delete(s, i, i+1)
	}
	return s
}

// rolesOf returns the roles subject holds in dom (sorted; do not modify).
func (p *policy) rolesOf(subject, dom string) []string { return p.bindings[dom][subject] }

// holders returns the subjects holding role in dom, sorted.
func (p *policy) holders(role, dom string) []string {
	var out []string
	for subject, roles := range p.bindings[dom] {
		if _, found := slices.BinarySearch(roles, role); found {
			out = append(out, subject)
		}
	}
	slices.Sort(out)
	return out
}

// bindingLines returns the g lines binding subject in dom.
func (p *policy) bindingLines(subject, dom string) []store.CasbinRule {
	var out []store.CasbinRule
	for _, role := range p.rolesOf(subject, dom) {
		out = append(out, bindingLine(subject, role, dom))
	}
	return out
}

func bindingLine(subject, role, dom string) store.CasbinRule {
	return store.CasbinRule{PType: ptypeBinding, V0: subject, V1: role, V2: dom}
}

func permissionLine(role, dom, action string) store.CasbinRule {
	return store.CasbinRule{PType: ptypePolicy, V0: role, V1: dom, V2: action}
}

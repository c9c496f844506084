package rbac

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/casbin/casbin/v2/persist"

	"github.com/parley-meet/parley/store"
)

// UserState tells whether the account with userID exists and whether it is
// disabled. It is asked at every decision for a "user:" subject, never
// cached, so that disabling an account takes effect at once.
type UserState func(ctx context.Context, userID string) (exists, disabled bool, err error)

// Binding is a subject holding a role in a room.
type Binding struct {
	Subject string
	Role    string
}

// Authorizer answers who may do what, and changes roles. It is safe for
// concurrent use. Decisions read the policy in memory; every change is
// written to the store first, then applied in memory, then published to
// subscribers.
//
// Another process sharing the database is not seen until Reload.
type Authorizer struct {
	adapter *Adapter
	logger  *slog.Logger
	bus     bus

	// writeMu serialises changes and Reload, so that a change's checks
	// (last host, last admin, one role per room) and its write are atomic
	// with respect to every other change in this process. Store writes
	// happen under writeMu only, so decisions never wait for the database.
	writeMu sync.Mutex

	// mu guards pol and userState: decisions read-lock it, a change
	// write-locks it only to apply lines already stored.
	mu        sync.RWMutex
	pol       *policy
	userState UserState
	watcher   persist.Watcher // other nodes (SetWatcher); nil on one node
}

// New loads the policy from st and returns an Authorizer over it. logger
// may be nil.
//
// Until SetUserState is called, no "user:" subject counts as an existing,
// enabled account: Can denies every user (guests are unaffected), and no
// admin counts toward the last-admin rule.
func New(ctx context.Context, st *store.Store, logger *slog.Logger) (*Authorizer, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	a := &Authorizer{adapter: NewAdapter(st), logger: logger}
	pol, err := a.load(ctx)
	if err != nil {
		return nil, err
	}
	a.pol = pol
	return a, nil
}

// load reads the whole policy from the store.
func (a *Authorizer) load(ctx context.Context) (*policy, error) {
	m, err := newModel()
	if err != nil {
		return nil, err
	}
	if err := a.adapter.LoadPolicyCtx(ctx, m); err != nil {
		return nil, err
	}
	return newPolicy(m)
}

// Reload replaces the policy in memory with the store's and publishes a
// policy event. A node calls it when another node has changed the policy.
func (a *Authorizer) Reload(ctx context.Context) error {
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	pol, err := a.load(ctx)
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.pol = pol
	a.mu.Unlock()
	a.bus.publish(resync)
	return nil
}

// SetUserState sets the function that says whether an account exists and
// is disabled. Can and Permissions deny everything to a "user:" subject
// whose account does not exist or is disabled, or when f fails.
func (a *Authorizer) SetUserState(f UserState) {
	a.mu.Lock()
	a.userState = f
	a.mu.Unlock()
}

// Subscribe returns a channel of change events and a function that closes
// it. Events are delivered synchronously into a buffered channel; a
// subscriber that falls behind by a full buffer gets its queued events
// replaced by one policy event for Global (re-check everything).
func (a *Authorizer) Subscribe() (events <-chan Event, cancel func()) { return a.bus.subscribe() }

// Can reports whether subject may do action in room (a room id, or Global).
// A malformed subject or room, an unknown action, or a "user:" subject whose
// account is missing or disabled is denied.
func (a *Authorizer) Can(ctx context.Context, subject, room, action string) bool {
	dom, ok := domainOf(room)
	if !ok || !validSubject(subject) || action == "" {
		return false
	}
	a.mu.RLock()
	allowed, err := a.pol.enf.Enforce(subject, dom, action)
	state := a.userState
	a.mu.RUnlock()
	if err != nil {
		a.logger.Error("rbac: enforce failed; denying", "subject", subject, "room", room, "action", action, "err", err)
		return false
	}
	return allowed && a.enabled(ctx, state, subject)
}

// Permissions returns the actions subject may do in room, sorted; none
// (an empty, non-nil slice) for a malformed subject or room, or a disabled
// or missing account.
func (a *Authorizer) Permissions(ctx context.Context, subject, room string) []string {
	out := []string{}
	dom, ok := domainOf(room)
	if !ok || !validSubject(subject) {
		return out
	}
	a.mu.RLock()
	state := a.userState
	for _, act := range a.pol.actions {
		allowed, err := a.pol.enf.Enforce(subject, dom, act)
		if err != nil {
			a.mu.RUnlock()
			a.logger.Error("rbac: enforce failed; denying", "subject", subject, "room", room, "action", act, "err", err)
			return []string{}
		}
		if allowed {
			out = append(out, act)
		}
	}
	a.mu.RUnlock()
	if len(out) > 0 && !a.enabled(ctx, state, subject) {
		return []string{}
	}
	return out // a.pol.actions is sorted
}

// enabled reports whether subject may act at all: guests always, users
// only when state says the account exists and is not disabled.
func (a *Authorizer) enabled(ctx context.Context, state UserState, subject string) bool {
	id, isUser := userID(subject)
	if !isUser {
		return true
	}
	if state == nil {
		return false
	}
	exists, disabled, err := state(ctx, id)
	if err != nil {
		a.logger.Error("rbac: user state unavailable; denying", "subject", subject, "err", err)
		return false
	}
	return exists && !disabled
}

// userStateFunc returns the current UserState.
func (a *Authorizer) userStateFunc() UserState {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.userState
}

// GlobalRoles returns the global roles subject holds, sorted.
func (a *Authorizer) GlobalRoles(ctx context.Context, subject string) []string {
	if !validSubject(subject) {
		return []string{}
	}
	a.mu.RLock()
	defer a.mu.RUnlock()
	return append([]string{}, a.pol.rolesOf(subject, globalDomain)...)
}

// SubjectsWithGlobalRole returns the subjects holding role globally,
// sorted, disabled accounts included.
func (a *Authorizer) SubjectsWithGlobalRole(ctx context.Context, role string) []string {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return append([]string{}, a.pol.holders(role, globalDomain)...)
}

// IsGlobalRole reports whether role is a global role (one with permissions
// in the global domain).
func (a *Authorizer) IsGlobalRole(role string) bool {
	a.mu.RLock()
	defer a.mu.RUnlock()
	_, ok := a.pol.roles[globalDomain][role]
	return ok
}

// IsRoomRole reports whether role is a room role (one with permissions in
// the room template).
func (a *Authorizer) IsRoomRole(role string) bool {
	a.mu.RLock()
	defer a.mu.RUnlock()
	_, ok := a.pol.roles[roomTemplate][role]
	return ok
}

// RoomRole returns the role subject holds in room, if any.
func (a *Authorizer) RoomRole(ctx context.Context, subject, room string) (string, bool) {
	dom, ok := domainOf(room)
	if !ok || room == Global || !validSubject(subject) {
		return "", false
	}
	a.mu.RLock()
	defer a.mu.RUnlock()
	roles := a.pol.rolesOf(subject, dom)
	if len(roles) == 0 {
		return "", false
	}
	return roles[0], true
}

// RoomMembers returns every binding in room, sorted by subject.
func (a *Authorizer) RoomMembers(ctx context.Context, room string) []Binding {
	out := []Binding{}
	dom, ok := domainOf(room)
	if !ok || room == Global {
		return out
	}
	a.mu.RLock()
	for subject, roles := range a.pol.bindings[dom] {
		for _, role := range roles {
			out = append(out, Binding{Subject: subject, Role: role})
		}
	}
	a.mu.RUnlock()
	slices.SortFunc(out, func(x, y Binding) int {
		return cmp.Or(cmp.Compare(x.Subject, y.Subject), cmp.Compare(x.Role, y.Role))
	})
	return out
}

// RoomsOf returns the rooms where subject holds a role: room id → role.
func (a *Authorizer) RoomsOf(ctx context.Context, subject string) map[string]string {
	out := map[string]string{}
	if !validSubject(subject) {
		return out
	}
	a.mu.RLock()
	defer a.mu.RUnlock()
	for dom := range a.pol.domains[subject] {
		room, ok := roomOf(dom)
		if !ok || room == Global {
			continue
		}
		if roles := a.pol.rolesOf(subject, dom); len(roles) > 0 {
			out[room] = roles[0]
		}
	}
	return out
}

// roleSet is a copy of the roles of subject in dom, as a set.
func (a *Authorizer) roleSet(subject, dom string) map[string]bool {
	a.mu.RLock()
	defer a.mu.RUnlock()
	set := map[string]bool{}
	for _, r := range a.pol.rolesOf(subject, dom) {
		set[r] = true
	}
	return set
}

// sortedKeys returns the keys of m, sorted.
func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// commit stores a change, applies it in memory and publishes events. It
// runs under writeMu. If the memory cannot follow the store (it should
// always), the policy is reloaded from the store.
func (a *Authorizer) commit(ctx context.Context, remove, add []store.CasbinRule, events ...Event) error {
	if len(remove) == 0 && len(add) == 0 {
		return nil
	}
	if err := a.adapter.update(ctx, remove, add); err != nil {
		return fmt.Errorf("rbac: store policy change: %w", err)
	}
	a.mu.Lock()
	err := a.pol.apply(remove, add)
	a.mu.Unlock()
	if err != nil {
		a.logger.Error("rbac: policy in memory diverged from the store; reloading", "err", err)
		pol, lerr := a.load(ctx)
		if lerr != nil {
			return fmt.Errorf("rbac: reload after %v: %w", err, lerr)
		}
		a.mu.Lock()
		a.pol = pol
		a.mu.Unlock()
		events = []Event{resync}
	}
	a.bus.publish(events...)
	a.announce()
	return nil
}

// SetWatcher connects the authorizer to the other nodes of a cluster
// through a Casbin watcher: each change made here is announced with
// w.Update once it is stored, and a change announced by another node
// reloads the policy from the store (Refresh), which re-checks the live
// sessions of this node.
func (a *Authorizer) SetWatcher(w persist.Watcher) error {
	a.mu.Lock()
	a.watcher = w
	a.mu.Unlock()
	return w.SetUpdateCallback(func(string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := a.Refresh(ctx); err != nil {
			a.logger.Error("rbac: reloading another node's policy change failed; the periodic refresh retries", "err", err)
		}
	})
}

// announce tells the other nodes that the stored policy changed.
func (a *Authorizer) announce() {
	a.mu.RLock()
	w := a.watcher
	a.mu.RUnlock()
	if w == nil {
		return
	}
	if err := w.Update(); err != nil {
		a.logger.Warn("rbac: could not announce a policy change to the other nodes; they see it at their next refresh", "err", err)
	}
}

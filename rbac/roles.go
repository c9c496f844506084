package rbac

import (
	"context"
	"fmt"
	"slices"

	"github.com/parley-meet/parley/store"
)

// SetGlobalRoles makes roles the global roles of subject, replacing those
// it holds. Only "user:" subjects hold global roles (ErrInvalidID
// otherwise); ErrUnknownRole for a role that is not a global role;
// ErrLastAdmin if subject is an admin and would lose the role while no
// other enabled admin exists.
func (a *Authorizer) SetGlobalRoles(ctx context.Context, subject string, roles []string) error {
	if _, isUser := userID(subject); !isUser || !validSubject(subject) {
		return ErrInvalidID
	}
	want := map[string]bool{}
	for _, r := range roles {
		if !a.IsGlobalRole(r) {
			return fmt.Errorf("%w: %q is not a global role", ErrUnknownRole, r)
		}
		want[r] = true
	}
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	have := a.roleSet(subject, globalDomain)
	var remove, add []store.CasbinRule
	for _, r := range sortedKeys(have) {
		if !want[r] {
			remove = append(remove, bindingLine(subject, r, globalDomain))
		}
	}
	for _, r := range sortedKeys(want) {
		if !have[r] {
			add = append(add, bindingLine(subject, r, globalDomain))
		}
	}
	if have[RoleAdmin] && !want[RoleAdmin] {
		if err := a.checkOtherAdmin(ctx, subject); err != nil {
			return err
		}
	}
	return a.commit(ctx, remove, add, Event{Subject: subject, Room: Global, Kind: EventBinding})
}

// checkOtherAdmin returns ErrLastAdmin unless an enabled admin other than
// subject exists. It runs under writeMu.
func (a *Authorizer) checkOtherAdmin(ctx context.Context, subject string) error {
	a.mu.RLock()
	admins := a.pol.holders(RoleAdmin, globalDomain)
	a.mu.RUnlock()
	state := a.userStateFunc()
	for _, s := range admins {
		if s == subject {
			continue
		}
		id, isUser := userID(s)
		if !isUser || state == nil {
			continue
		}
		exists, disabled, err := state(ctx, id)
		if err != nil {
			return fmt.Errorf("rbac: last-admin check: %w", err)
		}
		if exists && !disabled {
			return nil
		}
	}
	return ErrLastAdmin
}

// SetRoomRole makes role the one role of subject in room, replacing the
// one it holds. ErrInvalidID for a malformed subject or room (or Global);
// ErrUnknownRole if role is not a room role; ErrLastHost if subject is the
// room's only host and role is not host.
func (a *Authorizer) SetRoomRole(ctx context.Context, subject, room, role string) error {
	dom, ok := domainOf(room)
	if !ok || room == Global || !validSubject(subject) {
		return ErrInvalidID
	}
	if !a.IsRoomRole(role) {
		return fmt.Errorf("%w: %q is not a room role", ErrUnknownRole, role)
	}
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	have := a.roleSet(subject, dom)
	var remove, add []store.CasbinRule
	for _, r := range sortedKeys(have) {
		if r != role {
			remove = append(remove, bindingLine(subject, r, dom))
		}
	}
	if !have[role] {
		add = append(add, bindingLine(subject, role, dom))
	}
	if have[RoleHost] && role != RoleHost {
		if err := a.checkOtherHost(subject, dom); err != nil {
			return err
		}
	}
	return a.commit(ctx, remove, add, Event{Subject: subject, Room: room, Kind: EventBinding})
}

// checkOtherHost returns ErrLastHost unless dom has a host other than
// subject. It runs under writeMu.
func (a *Authorizer) checkOtherHost(subject, dom string) error {
	a.mu.RLock()
	hosts := a.pol.holders(RoleHost, dom)
	a.mu.RUnlock()
	for _, s := range hosts {
		if s != subject {
			return nil
		}
	}
	return ErrLastHost
}

// RemoveFromRoom removes subject's role in room; nothing happens if it
// holds none. ErrLastHost if subject is the room's only host.
func (a *Authorizer) RemoveFromRoom(ctx context.Context, subject, room string) error {
	dom, ok := domainOf(room)
	if !ok || room == Global || !validSubject(subject) {
		return ErrInvalidID
	}
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	have := a.roleSet(subject, dom)
	if have[RoleHost] {
		if err := a.checkOtherHost(subject, dom); err != nil {
			return err
		}
	}
	var remove []store.CasbinRule
	for _, r := range sortedKeys(have) {
		remove = append(remove, bindingLine(subject, r, dom))
	}
	return a.commit(ctx, remove, nil, Event{Subject: subject, Room: room, Kind: EventBinding})
}

// DeleteRoom removes every binding in room (its last host included), and
// publishes a binding event for each subject that lost its role.
func (a *Authorizer) DeleteRoom(ctx context.Context, room string) error {
	dom, ok := domainOf(room)
	if !ok || room == Global {
		return ErrInvalidID
	}
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	var remove []store.CasbinRule
	var events []Event
	for _, b := range a.RoomMembers(ctx, room) {
		remove = append(remove, bindingLine(b.Subject, b.Role, dom))
		if len(events) == 0 || events[len(events)-1].Subject != b.Subject {
			events = append(events, Event{Subject: b.Subject, Room: room, Kind: EventBinding})
		}
	}
	return a.commit(ctx, remove, nil, events...)
}

// RemoveSubject removes every binding of subject, in rooms and global (a
// guest session ending, an account deleted), publishing a binding event
// for each room (and Global) it leaves. The last-host and last-admin rules
// hold here too: ErrLastHost if subject is the only host of a room (hand
// the room over or delete it first), ErrLastAdmin if it is the last
// enabled admin. Nothing happens if it holds no role.
func (a *Authorizer) RemoveSubject(ctx context.Context, subject string) error {
	if !validSubject(subject) {
		return ErrInvalidID
	}
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	a.mu.RLock()
	var doms []string
	for dom := range a.pol.domains[subject] {
		doms = append(doms, dom)
	}
	a.mu.RUnlock()
	slices.Sort(doms)
	var remove []store.CasbinRule
	var events []Event
	for _, dom := range doms {
		have := a.roleSet(subject, dom)
		switch {
		case dom == globalDomain && have[RoleAdmin]:
			if err := a.checkOtherAdmin(ctx, subject); err != nil {
				return err
			}
		case dom != globalDomain && have[RoleHost]:
			if err := a.checkOtherHost(subject, dom); err != nil {
				room, _ := roomOf(dom)
				return fmt.Errorf("%w (room %s)", err, room)
			}
		}
		for _, r := range sortedKeys(have) {
			remove = append(remove, bindingLine(subject, r, dom))
		}
		if room, ok := roomOf(dom); ok {
			events = append(events, Event{Subject: subject, Room: room, Kind: EventBinding})
		}
	}
	return a.commit(ctx, remove, nil, events...)
}

// DefineRoomRole makes actions the permissions of the room role named
// role, creating the role or replacing its actions. The name must match
// ^[a-z][a-z0-9_-]{0,31}$ and not be a global-only role such as admin, and
// there must be at least one action (ErrInvalidRole); every action must be
// a room or recording action (ErrUnknownAction). Bindings to the role keep
// working and gain or lose rights at once; a policy event is published.
func (a *Authorizer) DefineRoomRole(ctx context.Context, role string, actions []string) error {
	if !rolePattern.MatchString(role) {
		return fmt.Errorf("%w: role name %q", ErrInvalidRole, role)
	}
	if a.IsGlobalRole(role) && !a.IsRoomRole(role) {
		return fmt.Errorf("%w: %q is a global role", ErrInvalidRole, role)
	}
	if len(actions) == 0 {
		return fmt.Errorf("%w: a role needs at least one action", ErrInvalidRole)
	}
	want := map[string]bool{}
	for _, act := range actions {
		if !roomActions[act] {
			return fmt.Errorf("%w: %q", ErrUnknownAction, act)
		}
		want[act] = true
	}
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	a.mu.RLock()
	have := map[string]bool{}
	for _, act := range a.pol.roles[roomTemplate][role] {
		have[act] = true
	}
	a.mu.RUnlock()
	var remove, add []store.CasbinRule
	for _, act := range sortedKeys(have) {
		if !want[act] {
			remove = append(remove, permissionLine(role, roomTemplate, act))
		}
	}
	for _, act := range sortedKeys(want) {
		if !have[act] {
			add = append(add, permissionLine(role, roomTemplate, act))
		}
	}
	return a.commit(ctx, remove, add, Event{Kind: EventPolicy, Room: Global})
}

// RoleDefinitions returns every role with its actions: scope "room" for
// room roles, "global" for global roles.
func (a *Authorizer) RoleDefinitions() map[string]map[string][]string {
	a.mu.RLock()
	defer a.mu.RUnlock()
	out := map[string]map[string][]string{"room": {}, "global": {}}
	for scope, dom := range map[string]string{"room": roomTemplate, "global": globalDomain} {
		for role, actions := range a.pol.roles[dom] {
			out[scope][role] = slices.Clone(actions)
		}
	}
	return out
}

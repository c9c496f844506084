package rbac

// UnboundForTest returns the number of bindings removed since Casbin's role
// links were last built.
func (a *Authorizer) UnboundForTest() int {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.pol.unbound
}

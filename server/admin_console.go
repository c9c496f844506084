package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/parley-meet/parley/audit"
	"github.com/parley-meet/parley/auth"
	"github.com/parley-meet/parley/rbac"
	"github.com/parley-meet/parley/store"
)

// The administrators' console: accounts (admin.users) and the audit log
// with a security overview (admin.audit). Every right is asked of rbac at
// each request; refusals are audited as authz.denied.
func (s *Server) consoleRoutes() {
	api := s.app.Group("/api/v1", s.guardUnsafe)
	api.Get("/admin/users", s.requireAuth, s.handleAdminUsers)
	api.Post("/admin/users", s.requireAuth, s.handleCreateUser)
	api.Put("/admin/users/:username/roles", s.requireAuth, s.handleSetGlobalRoles)
	api.Post("/admin/users/:username/enrollment-link", s.requireAuth, s.handleEnrollmentLink)
	api.Post("/admin/users/:username/disable", s.requireAuth, s.userAction("user.disable", func(ctx context.Context, name, actor string) (fiber.Map, error) {
		return nil, s.auth.SetDisabled(ctx, name, true, actor)
	}))
	api.Post("/admin/users/:username/enable", s.requireAuth, s.userAction("user.enable", func(ctx context.Context, name, actor string) (fiber.Map, error) {
		return nil, s.auth.SetDisabled(ctx, name, false, actor)
	}))
	api.Post("/admin/users/:username/reset-mfa", s.requireAuth, s.userAction("user.reset_mfa", func(ctx context.Context, name, actor string) (fiber.Map, error) {
		return nil, s.auth.ResetMFA(ctx, name, actor)
	}))
	api.Post("/admin/users/:username/unlock", s.requireAuth, s.userAction("user.unlock", func(ctx context.Context, name, actor string) (fiber.Map, error) {
		had, err := s.auth.Unlock(ctx, name, actor)
		return fiber.Map{"was_throttled": had}, err
	}))
	api.Post("/admin/users/:username/revoke-sessions", s.requireAuth, s.userAction("user.sessions_revoked", func(ctx context.Context, name, actor string) (fiber.Map, error) {
		n, err := s.auth.RevokeSessions(ctx, name, actor)
		return fiber.Map{"sessions_ended": n}, err
	}))
	api.Get("/admin/audit", s.requireAuth, s.handleAuditList)
	api.Get("/admin/audit/verify", s.requireAuth, s.handleAuditVerify)
	api.Get("/admin/audit/export", s.requireAuth, s.handleAuditExport)
	api.Get("/admin/security", s.requireAuth, s.handleSecurityOverview)
}

// admin is the signed-in caller, once rbac has granted them the global
// right action.
func (s *Server) admin(c *fiber.Ctx, action string) (*caller, error) {
	who := userCaller(principalOf(c))
	return who, s.requireGlobal(c, who, action)
}

// noBody accepts an empty body or an empty JSON object, nothing else.
func noBody(c *fiber.Ctx) error {
	if len(bytes.TrimSpace(c.Body())) == 0 {
		return nil
	}
	var none struct{}
	return decodeJSON(c, &none)
}

// adminUser is an account as the console shows it.
type adminUser struct {
	auth.User
	Disabled      bool       `json:"disabled"`
	MFAEnabled    bool       `json:"mfa_enabled"`
	Activated     bool       `json:"activated"`
	Locked        bool       `json:"locked"`
	Throttled     bool       `json:"throttled"`
	FailedSignIns int        `json:"failed_sign_ins"`
	LastLogin     *time.Time `json:"last_login_at"`
	CreatedAt     time.Time  `json:"created_at"`
}

func viewAccount(a auth.AccountInfo) adminUser {
	v := adminUser{User: a.User, Disabled: a.Disabled, MFAEnabled: a.MFAEnabled, Activated: a.Activated,
		Locked: a.Locked, Throttled: a.Throttled, FailedSignIns: a.FailedSignIns, CreatedAt: a.CreatedAt}
	if !a.LastLogin.IsZero() {
		t := a.LastLogin
		v.LastLogin = &t
	}
	return v
}

func errConsoleQuery(msg string) error {
	return &Error{Status: http.StatusBadRequest, Code: "invalid_query", Message: msg}
}

// maxSearch bounds the user search.
const maxSearch = 64

func (s *Server) handleAdminUsers(c *fiber.Ctx) error {
	if _, err := s.admin(c, rbac.ActAdminUsers); err != nil {
		return err
	}
	q := strings.ToLower(strings.TrimSpace(c.Query("q")))
	if len(q) > maxSearch {
		return errConsoleQuery("the search has at most 64 characters")
	}
	accounts, err := s.auth.ListAccounts(c.UserContext())
	if err != nil {
		return err
	}
	out := []adminUser{}
	for _, a := range accounts {
		if q != "" && !strings.Contains(strings.ToLower(a.Username), q) && !strings.Contains(strings.ToLower(a.DisplayName), q) {
			continue
		}
		out = append(out, viewAccount(a))
	}
	return c.JSON(fiber.Map{"users": out})
}

func (s *Server) handleSetGlobalRoles(c *fiber.Ctx) error {
	who, err := s.admin(c, rbac.ActAdminUsers)
	if err != nil {
		return err
	}
	var req struct {
		Roles []string `json:"roles"`
	}
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	u, err := s.memberTarget(c)
	if err != nil {
		return err
	}
	if err := s.rbac.SetGlobalRoles(c.UserContext(), rbac.UserSubject(u.ID), req.Roles); err != nil {
		s.auditEvent(c, who.actor, "admin.roles_set", "user:"+u.ID, audit.Failure, map[string]any{"roles": req.Roles})
		return rbacError(err)
	}
	s.auditEvent(c, who.actor, "admin.roles_set", "user:"+u.ID, audit.Success, map[string]any{"roles": req.Roles})
	return c.JSON(fiber.Map{"username": u.Username, "roles": s.rbac.GlobalRoles(c.UserContext(), rbac.UserSubject(u.ID))})
}

var (
	errInvalidRole     = &Error{Status: http.StatusBadRequest, Code: "invalid_role", Message: "no such global role"}
	errUserDisabled    = &Error{Status: http.StatusConflict, Code: "account_disabled", Message: "this account is disabled: enable it first"}
	errAlreadyEnrolled = &Error{Status: http.StatusConflict, Code: "already_enrolled", Message: "this account has enrolled its authenticator: reset it first"}
)

// consoleError maps what the auth service refused to an API error.
func consoleError(c *fiber.Ctx, err error) error {
	switch {
	case errors.Is(err, auth.ErrNoSuchUser):
		return errNoMember
	case errors.Is(err, auth.ErrInvalidRole):
		return errInvalidRole
	case errors.Is(err, rbac.ErrLastAdmin), errors.Is(err, rbac.ErrUnknownRole):
		return rbacError(err)
	}
	return authError(c, err)
}

// consoleFailure audits a refused console action on the account name and
// returns the error for the client.
func (s *Server) consoleFailure(c *fiber.Ctx, who *caller, action, username string, err error) error {
	apiErr := consoleError(c, err)
	reason := "internal"
	var e *Error
	if errors.As(apiErr, &e) {
		reason = e.Code
	}
	s.auditEvent(c, who.actor, action, s.accountTarget(c, username), audit.Failure, map[string]any{"reason": reason})
	return apiErr
}

// accountTarget names an account for the audit log: "user:<id>" when it
// exists, else the name as typed (bounded).
func (s *Server) accountTarget(c *fiber.Ctx, username string) string {
	if name, err := auth.NormalizeUsername(username); err == nil {
		if u, err := s.store.UserByUsername(c.UserContext(), name); err == nil {
			return "user:" + u.ID
		}
	}
	if len(username) > 64 {
		username = username[:64]
	}
	return "username:" + username
}

// accountReply answers an account action with the account as it now is.
func (s *Server) accountReply(c *fiber.Ctx, status int, username string, extra fiber.Map) error {
	a, err := s.auth.AccountDetails(c.UserContext(), username)
	if err != nil {
		return consoleError(c, err)
	}
	out := fiber.Map{"user": viewAccount(a)}
	for k, v := range extra {
		out[k] = v
	}
	return c.Status(status).JSON(out)
}

func (s *Server) handleCreateUser(c *fiber.Ctx) error {
	who, err := s.admin(c, rbac.ActAdminUsers)
	if err != nil {
		return err
	}
	var req struct {
		Username    string `json:"username"`
		DisplayName string `json:"display_name"`
		Role        string `json:"role"`
	}
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if req.Role == "" {
		req.Role = rbac.RoleMember
	}
	// No password: the account is activated through the one-time link,
	// which is returned here once and never logged or audited.
	u, link, err := s.auth.CreateAccount(auth.WithClientIP(c.UserContext(), s.ClientIP(c)), auth.NewAccount{Username: req.Username, DisplayName: req.DisplayName, Role: req.Role}, who.actor)
	if err != nil {
		return s.consoleFailure(c, who, "user.create", req.Username, err)
	}
	return s.accountReply(c, http.StatusCreated, u.Username, fiber.Map{"enrollment_url": link})
}

// handleEnrollmentLink issues a new one-time enrolment link for an
// account that has not enrolled its authenticator (never activated, or
// after reset-mfa). An enrolled account gets none: the link sets a new
// password, which must not bypass a second factor.
func (s *Server) handleEnrollmentLink(c *fiber.Ctx) error {
	const action = "user.enroll_link"
	who, err := s.admin(c, rbac.ActAdminUsers)
	if err != nil {
		return err
	}
	if err := noBody(c); err != nil {
		return err
	}
	name := c.Params("username")
	a, err := s.auth.AccountDetails(c.UserContext(), name)
	switch {
	case err != nil:
		return s.consoleFailure(c, who, action, name, err)
	case a.Disabled:
		s.auditEvent(c, who.actor, action, "user:"+a.ID, audit.Failure, map[string]any{"reason": errUserDisabled.Code})
		return errUserDisabled
	case a.MFAEnabled:
		s.auditEvent(c, who.actor, action, "user:"+a.ID, audit.Failure, map[string]any{"reason": errAlreadyEnrolled.Code})
		return errAlreadyEnrolled
	}
	link, err := s.auth.EnrollmentLink(auth.WithClientIP(c.UserContext(), s.ClientIP(c)), a.ID, who.actor)
	if err != nil {
		return err
	}
	return s.accountReply(c, http.StatusOK, a.Username, fiber.Map{"enrollment_url": link})
}

// userAction is a handler for one action on the account in the path. run
// does it (the auth service audits success); refusals are audited here.
func (s *Server) userAction(action string, run func(ctx context.Context, username, actor string) (fiber.Map, error)) fiber.Handler {
	return func(c *fiber.Ctx) error {
		who, err := s.admin(c, rbac.ActAdminUsers)
		if err != nil {
			return err
		}
		if err := noBody(c); err != nil {
			return err
		}
		name := c.Params("username")
		// Every action needs an existing account (unlock too, though the
		// throttle is kept per name).
		if _, err := s.auth.AccountDetails(c.UserContext(), name); err != nil {
			return s.consoleFailure(c, who, action, name, err)
		}
		extra, err := run(auth.WithClientIP(c.UserContext(), s.ClientIP(c)), name, who.actor)
		if err != nil {
			return s.consoleFailure(c, who, action, name, err)
		}
		return s.accountReply(c, http.StatusOK, name, extra)
	}
}

// auditEntryView is an audit entry as the API shows it.
type auditEntryView struct {
	Seq      int64           `json:"seq"`
	At       time.Time       `json:"at"`
	Actor    string          `json:"actor"`
	Action   string          `json:"action"`
	Target   string          `json:"target"`
	Outcome  string          `json:"outcome"`
	ClientIP string          `json:"client_ip"`
	Details  json.RawMessage `json:"details"`
}

func viewEntry(e audit.Entry) auditEntryView {
	v := auditEntryView{Seq: e.Seq, At: e.At, Actor: e.Actor, Action: e.Action, Target: e.Target,
		Outcome: e.Outcome, ClientIP: e.ClientIP}
	// Recorded details are a JSON object; a row edited behind Parley's
	// back may hold anything (Verify names it): show null then.
	if d := bytes.TrimSpace(e.Details); len(d) > 0 && d[0] == '{' && json.Valid(d) {
		v.Details = e.Details
	}
	return v
}

// auditExportLine is one line of an export: the entry and its chain
// links, so that the file can be checked on its own.
type auditExportLine struct {
	auditEntryView
	PrevHash string `json:"prev_hash"`
	Hash     string `json:"hash"`
}

// Audit page sizes.
const auditDefaultLimit = 100

// auditFilter reads the audit filters of the query string. The strings
// are copied: the export reads them after the handler has returned.
func auditFilter(c *fiber.Ctx) (audit.Filter, error) {
	f := audit.Filter{
		Actor: strings.Clone(c.Query("actor")), Target: strings.Clone(c.Query("target")),
		Action: strings.Clone(c.Query("action")), Outcome: strings.Clone(c.Query("outcome")),
		Limit: auditDefaultLimit,
	}
	for _, p := range []struct {
		name string
		to   *time.Time
	}{{"from", &f.From}, {"to", &f.To}} {
		if v := c.Query(p.name); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return f, errConsoleQuery(p.name + " must be an RFC 3339 time, such as 2026-11-26T09:00:00Z")
			}
			*p.to = t
		}
	}
	if v := c.Query("before_seq"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return f, errConsoleQuery("before_seq must be a positive entry number")
		}
		f.BeforeSeq = n
	}
	if v := c.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > audit.MaxPage {
			return f, errConsoleQuery("limit must be 1 to " + strconv.Itoa(audit.MaxPage))
		}
		f.Limit = n
	}
	if err := f.Validate(); err != nil {
		return f, errConsoleQuery(strings.TrimPrefix(err.Error(), audit.ErrInvalidFilter.Error()+": "))
	}
	return f, nil
}

func (s *Server) handleAuditList(c *fiber.Ctx) error {
	if _, err := s.admin(c, rbac.ActAdminAudit); err != nil {
		return err
	}
	f, err := auditFilter(c)
	if err != nil {
		return err
	}
	entries, next, err := s.audit.Page(c.UserContext(), f)
	if err != nil {
		return err
	}
	out := make([]auditEntryView, len(entries))
	for i, e := range entries {
		out[i] = viewEntry(e)
	}
	var nextSeq *int64
	if next > 0 {
		nextSeq = &next
	}
	return c.JSON(fiber.Map{"entries": out, "next_before_seq": nextSeq})
}

func (s *Server) handleAuditVerify(c *fiber.Ctx) error {
	who, err := s.admin(c, rbac.ActAdminAudit)
	if err != nil {
		return err
	}
	ctx := c.UserContext()
	res, verr := audit.VerifyLive(ctx, s.store)
	var broken *audit.BrokenError
	if verr != nil && !errors.As(verr, &broken) {
		return verr
	}
	if broken == nil {
		s.auditEvent(c, who.actor, "audit.verify", "", audit.Success, map[string]any{"entries": res.Count})
		return c.JSON(fiber.Map{"ok": true, "entries": res.Count, "head_seq": res.Count, "head_hash": res.Head,
			"broken_at": nil, "reason": nil})
	}
	head, err := audit.StoredHead(ctx, s.store)
	if err != nil {
		return err
	}
	s.auditEvent(c, who.actor, "audit.verify", "", audit.Failure, map[string]any{"broken_at": broken.Seq, "reason": broken.Reason})
	return c.JSON(fiber.Map{"ok": false, "entries": head.Rows, "head_seq": head.Seq, "head_hash": head.Hash,
		"broken_at": broken.Seq, "reason": broken.Reason})
}

func (s *Server) handleAuditExport(c *fiber.Ctx) error {
	who, err := s.admin(c, rbac.ActAdminAudit)
	if err != nil {
		return err
	}
	f, err := auditFilter(c)
	if err != nil {
		return err
	}
	if c.Query("limit") != "" {
		return errConsoleQuery("an export has every matching entry: leave out limit")
	}
	details := map[string]any{}
	for k, v := range map[string]string{"actor": f.Actor, "target": f.Target, "action": f.Action, "outcome": f.Outcome} {
		if v != "" {
			details[k] = v
		}
	}
	for k, t := range map[string]time.Time{"from": f.From, "to": f.To} {
		if !t.IsZero() {
			details[k] = t.UTC().Format(time.RFC3339Nano)
		}
	}
	if f.BeforeSeq > 0 {
		details["before_seq"] = f.BeforeSeq
	}
	s.auditEvent(c, who.actor, "audit.export", "", audit.Success, details)
	// The export ends at the head as it stands now (this export's own entry
	// included), so that it is a fixed piece of the chain.
	head, err := s.store.AuditHead(c.UserContext())
	if err != nil {
		return err
	}
	if f.BeforeSeq == 0 || f.BeforeSeq > head.Seq+1 {
		f.BeforeSeq = head.Seq + 1
	}
	f.Oldest, f.Limit = true, audit.MaxPage
	c.Set(fiber.HeaderContentType, "application/x-ndjson")
	c.Set(fiber.HeaderContentDisposition, `attachment; filename="parley-audit-`+s.now().UTC().Format("2006-01-02")+`.jsonl"`)
	c.Response().SetBodyStream(&auditExport{log: s.audit, f: f, onErr: func(err error) {
		s.log.Error("audit export failed", "err", err)
	}}, -1)
	return nil
}

// auditExport reads an export a page at a time as the client takes it:
// memory stays bounded and no cursor stays open while the client is slow.
type auditExport struct {
	log   *audit.Log
	f     audit.Filter
	buf   bytes.Buffer
	done  bool
	onErr func(error)
}

// exportPageTimeout bounds the read of one page.
const exportPageTimeout = 30 * time.Second

func (e *auditExport) Read(p []byte) (int, error) {
	for e.buf.Len() == 0 {
		if e.done {
			return 0, io.EOF
		}
		ctx, cancel := context.WithTimeout(context.Background(), exportPageTimeout)
		entries, err := e.log.Query(ctx, e.f)
		cancel()
		if err != nil {
			// Cut the response short rather than end it as if complete.
			e.done = true
			e.onErr(err)
			return 0, err
		}
		enc := json.NewEncoder(&e.buf)
		for _, en := range entries {
			if err := enc.Encode(auditExportLine{auditEntryView: viewEntry(en), PrevHash: en.PrevHash, Hash: en.Hash}); err != nil {
				e.done = true
				e.onErr(err)
				return 0, err
			}
		}
		if len(entries) < e.f.Limit {
			e.done = true
		} else {
			e.f.AfterSeq = entries[len(entries)-1].Seq
		}
	}
	return e.buf.Read(p)
}

// The security overview's windows.
const (
	securityDefaultHours = 24
	securityMaxHours     = 7 * 24
	inactiveAfter        = 30 * 24 * time.Hour
	recoveryWindow       = 30 * 24 * time.Hour
	overviewListLimit    = 500
)

// The audit actions the auth service records that the overview counts.
// A failed sign-in is a failure of any sign-in step: the password
// (auth.login), the TOTP code (auth.mfa) or a recovery code.
const (
	actLogin        = "auth.login"
	actMFA          = "auth.mfa"
	actRecoveryCode = "auth.recovery_code"
	actThrottled    = "auth.throttled"
	actLocked       = "auth.locked"
)

type securityHour struct {
	Start         time.Time `json:"start"`
	FailedSignIns int64     `json:"failed_sign_ins"`
	Throttled     int64     `json:"throttled"`
	Locked        int64     `json:"locked"`
}

type inactiveAccount struct {
	Username    string     `json:"username"`
	DisplayName string     `json:"display_name"`
	LastLogin   *time.Time `json:"last_login_at"`
}

type recoveryUse struct {
	Username string    `json:"username"`
	At       time.Time `json:"at"`
}

func (s *Server) handleSecurityOverview(c *fiber.Ctx) error {
	if _, err := s.admin(c, rbac.ActAdminAudit); err != nil {
		return err
	}
	hours := securityDefaultHours
	if v := c.Query("hours"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > securityMaxHours {
			return errConsoleQuery("hours must be 1 to " + strconv.Itoa(securityMaxHours))
		}
		hours = n
	}
	ctx := c.UserContext()
	now := s.now().UTC()
	// Whole clock hours, the last one the current hour.
	end := now.Truncate(time.Hour).Add(time.Hour)
	start := end.Add(-time.Duration(hours) * time.Hour)
	buckets := make([]securityHour, hours)
	for i := range buckets {
		buckets[i].Start = start.Add(time.Duration(i) * time.Hour)
	}
	counts, err := s.audit.Histogram(ctx, start, end, time.Hour, []string{actLogin, actMFA, actRecoveryCode, actThrottled, actLocked})
	if err != nil {
		return err
	}
	for _, n := range counts {
		i := int(n.Start.Sub(start) / time.Hour)
		if i < 0 || i >= hours {
			continue
		}
		switch {
		case n.Action == actThrottled:
			buckets[i].Throttled += n.N
		case n.Action == actLocked:
			buckets[i].Locked += n.N
		case n.Outcome == audit.Failure:
			buckets[i].FailedSignIns += n.N
		}
	}

	idle, err := s.store.InactiveUsers(ctx, now.Add(-inactiveAfter).UnixMicro(), overviewListLimit)
	if err != nil {
		return err
	}
	inactive := []inactiveAccount{}
	for _, u := range idle {
		a := inactiveAccount{Username: u.Username, DisplayName: u.DisplayName}
		if u.LastLoginUS > 0 {
			t := time.UnixMicro(u.LastLoginUS).UTC()
			a.LastLogin = &t
		}
		inactive = append(inactive, a)
	}

	uses, err := s.audit.Query(ctx, audit.Filter{Action: actRecoveryCode, Outcome: audit.Success,
		From: now.Add(-recoveryWindow), Limit: overviewListLimit})
	if err != nil {
		return err
	}
	recovery := []recoveryUse{}
	names := map[string]string{}
	for _, e := range uses {
		name, ok := names[e.Actor]
		if !ok {
			name = e.Actor
			if id, isUser := strings.CutPrefix(e.Actor, "user:"); isUser {
				if u, err := s.store.UserByID(ctx, id); err == nil {
					name = u.Username
				} else if !errors.Is(err, store.ErrNotFound) {
					return err
				}
			}
			names[e.Actor] = name
		}
		recovery = append(recovery, recoveryUse{Username: name, At: e.At})
	}
	return c.JSON(fiber.Map{"hours": buckets, "inactive_accounts": inactive, "recovery_codes_used": recovery})
}

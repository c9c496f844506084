package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/parley-meet/parley/audit"
	"github.com/parley-meet/parley/rbac"
	"github.com/parley-meet/parley/store"
)

// Link lifetimes.
const (
	setupLinkTTL  = time.Hour
	enrollLinkTTL = 72 * time.Hour
)

// adminExists reports whether an enabled account holds the global admin
// role.
func (s *Service) adminExists(ctx context.Context) (bool, error) {
	return s.otherEnabledAdmins(ctx, "")
}

// otherEnabledAdmins reports whether an enabled account other than
// exceptID holds the global admin role.
func (s *Service) otherEnabledAdmins(ctx context.Context, exceptID string) (bool, error) {
	for _, sub := range s.rbac.SubjectsWithGlobalRole(ctx, rbac.RoleAdmin) {
		id, ok := strings.CutPrefix(sub, "user:")
		if !ok || id == exceptID {
			continue
		}
		u, err := s.store.UserByID(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return false, err
		}
		if !u.Disabled {
			return true, nil
		}
	}
	return false, nil
}

// SetupLink returns a new one-time first-run link while no admin exists,
// or "" once one does. Each call replaces the previous link. The token
// travels in the URL fragment, so it never reaches a server log.
func (s *Service) SetupLink(ctx context.Context) (string, error) {
	if exists, err := s.adminExists(ctx); err != nil || exists {
		return "", err
	}
	tok, err := s.newLink(ctx, linkSetup, "", setupLinkTTL)
	if err != nil {
		return "", err
	}
	s.record(ctx, Meta{}, "system", "setup.link_issued", "", audit.Success, map[string]any{"valid_minutes": int(setupLinkTTL.Minutes())})
	return s.cfg.Issuer + "/setup#" + tok, nil
}

func (s *Service) newLink(ctx context.Context, purpose, userID string, ttl time.Duration) (string, error) {
	tok := randomToken(32)
	now := s.now()
	err := s.store.CreateLinkToken(ctx, store.LinkToken{
		TokenHash: hashToken(tok), Purpose: purpose, UserID: userID,
		CreatedUS: now.UnixMicro(), ExpiresUS: now.Add(ttl).UnixMicro(),
	})
	return tok, err
}

// NewAccount describes an account to create.
type NewAccount struct {
	Username    string
	DisplayName string // defaults to the username
	Role        string
	Password    string // empty: the user sets one through an enrolment link
}

// validateAccount normalises and checks a new account's fields.
func (s *Service) validateAccount(a NewAccount) (store.User, error) {
	name, err := NormalizeUsername(a.Username)
	if err != nil {
		return store.User{}, err
	}
	if a.DisplayName == "" {
		a.DisplayName = name
	}
	display, err := NormalizeDisplayName(a.DisplayName)
	if err != nil {
		return store.User{}, err
	}
	if !s.rbac.IsGlobalRole(a.Role) {
		return store.User{}, ErrInvalidRole
	}
	now := s.nowUS()
	return store.User{ID: randomID(), Username: name, DisplayName: display, CreatedUS: now, UpdatedUS: now}, nil
}

// insertUser stores a new account and binds its global role.
func (s *Service) insertUser(ctx context.Context, u store.User, role string) error {
	err := s.store.CreateUser(ctx, u)
	if errors.Is(err, store.ErrConflict) {
		return ErrUsernameTaken
	}
	if err != nil {
		return err
	}
	return s.rbac.SetGlobalRoles(ctx, rbac.UserSubject(u.ID), []string{role})
}

// CompleteSetup creates the first admin with the setup link's token and
// returns the enrolment challenge that follows.
func (s *Service) CompleteSetup(ctx context.Context, token string, a NewAccount, m Meta) (LoginResult, error) {
	if exists, err := s.adminExists(ctx); err != nil {
		return LoginResult{}, err
	} else if exists {
		return LoginResult{}, ErrSetupComplete
	}
	a.Role = rbac.RoleAdmin
	u, err := s.validateAccount(a)
	if err != nil {
		return LoginResult{}, err
	}
	if err := s.policy.Check(a.Password, u.Username); err != nil {
		return LoginResult{}, err
	}
	if token == "" || len(token) > 128 {
		return LoginResult{}, ErrInvalidToken
	}
	if _, err := s.store.ConsumeLinkToken(ctx, hashToken(token), linkSetup, s.nowUS()); errors.Is(err, store.ErrNotFound) {
		s.record(ctx, m, "anonymous", "setup.admin_created", "", audit.Denied, map[string]any{"reason": "invalid setup link"})
		return LoginResult{}, ErrInvalidToken
	} else if err != nil {
		return LoginResult{}, err
	}
	if u.PasswordHash, err = s.hasher.Hash(ctx, a.Password); err != nil {
		return LoginResult{}, err
	}
	if err := s.insertUser(ctx, u, a.Role); err != nil {
		return LoginResult{}, err
	}
	s.record(ctx, m, userActor(u.ID), "setup.admin_created", userActor(u.ID), audit.Success, map[string]any{"username": u.Username})
	ch, err := s.newChallenge(ctx, u.ID, challengeEnroll)
	return LoginResult{Next: challengeEnroll, Challenge: ch}, err
}

// CreateAccount creates an account for an operator (actor names who). With
// a password the user signs in and enrols at first sign-in; without one the
// returned one-time link lets the user choose a password and enrol.
func (s *Service) CreateAccount(ctx context.Context, a NewAccount, actor string) (User, string, error) {
	u, err := s.validateAccount(a)
	if err != nil {
		return User{}, "", err
	}
	if a.Password != "" {
		if err := s.policy.Check(a.Password, u.Username); err != nil {
			return User{}, "", err
		}
		if u.PasswordHash, err = s.hasher.Hash(ctx, a.Password); err != nil {
			return User{}, "", err
		}
	}
	if err := s.insertUser(ctx, u, a.Role); err != nil {
		return User{}, "", err
	}
	s.record(ctx, Meta{}, actor, "user.create", userActor(u.ID), audit.Success, map[string]any{"username": u.Username, "role": a.Role})
	link := ""
	if a.Password == "" {
		if link, err = s.EnrollmentLink(ctx, u.ID, actor); err != nil {
			return User{}, "", err
		}
	}
	return s.publicUser(ctx, u), link, nil
}

// EnrollmentLink issues a one-time link (72 h) with which the user sets a
// password and enrols TOTP; it replaces earlier links of that user.
func (s *Service) EnrollmentLink(ctx context.Context, userID, actor string) (string, error) {
	tok, err := s.newLink(ctx, linkActivate, userID, enrollLinkTTL)
	if err != nil {
		return "", err
	}
	s.record(ctx, Meta{}, actor, "user.enroll_link", userActor(userID), audit.Success, map[string]any{"valid_hours": int(enrollLinkTTL.Hours())})
	return s.cfg.Issuer + "/enroll#" + tok, nil
}

// Activate sets the password of the user an enrolment link was made for and
// returns the enrolment challenge that follows.
func (s *Service) Activate(ctx context.Context, token, password string, m Meta) (LoginResult, string, error) {
	if token == "" || len(token) > 128 {
		return LoginResult{}, "", ErrInvalidToken
	}
	// Spending the link is the atomic single-use step; a refused password
	// gives it back below so the user can try another.
	t, err := s.store.ConsumeLinkToken(ctx, hashToken(token), linkActivate, s.nowUS())
	if errors.Is(err, store.ErrNotFound) {
		s.record(ctx, m, "anonymous", "user.activate", "", audit.Denied, map[string]any{"reason": "invalid link"})
		return LoginResult{}, "", ErrInvalidToken
	}
	if err != nil {
		return LoginResult{}, "", err
	}
	u, err := s.store.UserByID(ctx, t.UserID)
	if err != nil {
		return LoginResult{}, "", ErrInvalidToken
	}
	if u.Disabled {
		return LoginResult{}, "", ErrAccountDisabled
	}
	if err := s.policy.Check(password, u.Username); err != nil {
		// Give the link back: the user may try another password.
		s.store.CreateLinkToken(ctx, store.LinkToken{TokenHash: t.TokenHash, Purpose: linkActivate, UserID: u.ID, CreatedUS: t.CreatedUS, ExpiresUS: t.ExpiresUS})
		return LoginResult{}, "", err
	}
	h, err := s.hasher.Hash(ctx, password)
	if err != nil {
		return LoginResult{}, "", err
	}
	if err := s.store.SetPassword(ctx, u.ID, h, s.nowUS()); err != nil {
		return LoginResult{}, "", err
	}
	// A new password ends whatever sessions the account had.
	s.store.DeleteUserSessions(ctx, u.ID, "")
	s.record(ctx, m, userActor(u.ID), "user.activate", userActor(u.ID), audit.Success, nil)
	ch, err := s.newChallenge(ctx, u.ID, challengeEnroll)
	return LoginResult{Next: challengeEnroll, Challenge: ch}, u.Username, err
}

// lookup finds a user by username for operator commands.
func (s *Service) lookup(ctx context.Context, username string) (store.User, error) {
	name, err := NormalizeUsername(username)
	if err != nil {
		return store.User{}, ErrNoSuchUser
	}
	u, err := s.store.UserByUsername(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return u, ErrNoSuchUser
	}
	return u, err
}

// SetDisabled disables (ending every session at once) or enables an
// account. The last enabled admin cannot be disabled.
func (s *Service) SetDisabled(ctx context.Context, username string, disabled bool, actor string) error {
	u, err := s.lookup(ctx, username)
	if err != nil {
		return err
	}
	if disabled && !u.Disabled {
		others, err := s.otherEnabledAdmins(ctx, u.ID)
		if err != nil {
			return err
		}
		if !others && slices.Contains(s.rbac.GlobalRoles(ctx, rbac.UserSubject(u.ID)), rbac.RoleAdmin) {
			return rbac.ErrLastAdmin
		}
	}
	if err := s.store.SetDisabled(ctx, u.ID, disabled, s.nowUS()); err != nil {
		return err
	}
	action := "user.enable"
	if disabled {
		action = "user.disable"
	}
	s.record(ctx, Meta{}, actor, action, userActor(u.ID), audit.Success, nil)
	return nil
}

// ResetMFA removes a user's TOTP secret and recovery codes and ends every
// session: the next sign-in enrols again.
func (s *Service) ResetMFA(ctx context.Context, username, actor string) error {
	u, err := s.lookup(ctx, username)
	if err != nil {
		return err
	}
	if err := s.store.ResetMFA(ctx, u.ID, s.nowUS()); err != nil {
		return err
	}
	s.record(ctx, Meta{}, actor, "user.reset_mfa", userActor(u.ID), audit.Success, nil)
	return nil
}

// Unlock clears the sign-in throttle of an account name.
func (s *Service) Unlock(ctx context.Context, username, actor string) (bool, error) {
	name, err := NormalizeUsername(username)
	if err != nil {
		return false, ErrNoSuchUser
	}
	had, err := s.store.DeleteThrottle(ctx, "login:"+name)
	if err != nil {
		return false, err
	}
	// The throttle is kept per name, also for names without an account.
	target := "username:" + name
	if u, err := s.store.UserByUsername(ctx, name); err == nil {
		target = userActor(u.ID)
	}
	s.record(ctx, Meta{}, actor, "user.unlock", target, audit.Success, map[string]any{"was_throttled": had})
	return had, nil
}

// AccountInfo is an account as operators see it.
type AccountInfo struct {
	User
	Disabled   bool
	MFAEnabled bool
	Activated  bool // has a password
	LastLogin  time.Time
	CreatedAt  time.Time
	// The sign-in throttle of the account's name: failures since the last
	// complete sign-in, whether the name is locked, and whether a sign-in
	// would be refused now (locked, or waiting out the growing delay).
	FailedSignIns int
	Locked        bool
	Throttled     bool
}

func (s *Service) accountInfo(ctx context.Context, u store.User) (AccountInfo, error) {
	info := AccountInfo{User: s.publicUser(ctx, u), Disabled: u.Disabled, MFAEnabled: u.MFAEnabled,
		Activated: u.PasswordHash != "", CreatedAt: time.UnixMicro(u.CreatedUS).UTC()}
	if u.LastLoginUS > 0 {
		info.LastLogin = time.UnixMicro(u.LastLoginUS).UTC()
	}
	t, err := s.store.ThrottleByKey(ctx, "login:"+u.Username)
	if err != nil {
		return info, err
	}
	info.FailedSignIns, info.Locked, info.Throttled = s.throttleState(t)
	return info, nil
}

// ListAccounts returns every account.
func (s *Service) ListAccounts(ctx context.Context) ([]AccountInfo, error) {
	us, err := s.store.ListUsers(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]AccountInfo, 0, len(us))
	for _, u := range us {
		info, err := s.accountInfo(ctx, u)
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	return out, nil
}

// AccountDetails returns one account as operators see it; ErrNoSuchUser
// if there is none.
func (s *Service) AccountDetails(ctx context.Context, username string) (AccountInfo, error) {
	u, err := s.lookup(ctx, username)
	if err != nil {
		return AccountInfo{}, err
	}
	return s.accountInfo(ctx, u)
}

// RevokeSessions ends every session of a user (and so every API token
// minted from them; signaling closes their sockets at its next keep-alive)
// and returns how many ended. The account stays enabled: the user may sign
// in again.
func (s *Service) RevokeSessions(ctx context.Context, username, actor string) (int64, error) {
	u, err := s.lookup(ctx, username)
	if err != nil {
		return 0, err
	}
	n, err := s.store.DeleteUserSessions(ctx, u.ID, "")
	if err != nil {
		return 0, err
	}
	s.record(ctx, Meta{}, actor, "user.sessions_revoked", userActor(u.ID), audit.Success, map[string]any{"sessions_ended": n})
	return n, nil
}

// MFAStatus is what a user sees of their own second factor.
type MFAStatus struct {
	RecoveryCodesLeft int        `json:"recovery_codes_left"`
	RecoveryLastUsed  *time.Time `json:"recovery_code_last_used_at"`
}

// MFAStatus reports the principal's recovery codes.
func (s *Service) MFAStatus(ctx context.Context, p *Principal) (MFAStatus, error) {
	left, last, err := s.store.RecoveryStatus(ctx, p.User.ID)
	if err != nil {
		return MFAStatus{}, err
	}
	st := MFAStatus{RecoveryCodesLeft: left}
	if last > 0 {
		t := time.UnixMicro(last).UTC()
		st.RecoveryLastUsed = &t
	}
	return st, nil
}

// reauthenticate checks the principal's password and a current TOTP code
// before a change to the account's credentials. Failures count against the
// account's sign-in throttle.
func (s *Service) reauthenticate(ctx context.Context, p *Principal, password, code string, m Meta) error {
	key := "login:" + p.User.Username
	if err := s.checkThrottle(ctx, key, m); err != nil {
		return err
	}
	ok, err := s.hasher.Verify(ctx, p.User.PasswordHash, password)
	if err != nil {
		return err
	}
	if !ok {
		s.failure(ctx, key, m, userActor(p.User.ID), "auth.reauth", userActor(p.User.ID), map[string]any{"reason": "wrong password"})
		return ErrInvalidCredentials
	}
	secret, err := s.keys.Open(p.User.TOTPSecret, "totp:"+p.User.ID)
	if err != nil {
		return fmt.Errorf("open TOTP secret: %w", err)
	}
	step, ok, replay := matchTOTP(string(secret), code, s.now(), p.User.TOTPLastStep)
	if ok {
		if ok, err = s.store.AdvanceTOTPStep(ctx, p.User.ID, step); err != nil {
			return err
		}
		replay = !ok
	}
	if !ok {
		reason := "wrong code"
		if replay {
			reason = "replayed code"
		}
		s.failure(ctx, key, m, userActor(p.User.ID), "auth.reauth", userActor(p.User.ID), map[string]any{"reason": reason})
		return ErrInvalidCode
	}
	return nil
}

// RegenerateRecoveryCodes replaces the principal's recovery codes after a
// fresh password and code.
func (s *Service) RegenerateRecoveryCodes(ctx context.Context, p *Principal, password, code string, m Meta) ([]string, error) {
	if err := s.reauthenticate(ctx, p, password, code, m); err != nil {
		return nil, err
	}
	codes, hashes := s.newRecoveryCodes(p.User.ID)
	if err := s.store.ReplaceRecoveryCodes(ctx, p.User.ID, hashes); err != nil {
		return nil, err
	}
	s.record(ctx, m, userActor(p.User.ID), "auth.recovery_codes_regenerated", userActor(p.User.ID), audit.Success, nil)
	return codes, nil
}

// ReplaceMFA starts enrolling a new TOTP secret after a fresh password and
// code; the old secret stays active until the new one is confirmed.
func (s *Service) ReplaceMFA(ctx context.Context, p *Principal, password, code string, m Meta) (LoginResult, error) {
	if err := s.reauthenticate(ctx, p, password, code, m); err != nil {
		return LoginResult{}, err
	}
	ch, err := s.newChallenge(ctx, p.User.ID, challengeEnroll)
	if err != nil {
		return LoginResult{}, err
	}
	s.record(ctx, m, userActor(p.User.ID), "auth.mfa_replace_start", userActor(p.User.ID), audit.Success, nil)
	return LoginResult{Next: challengeEnroll, Challenge: ch}, nil
}

// ChangePassword sets a new password after the current one and a code, and
// ends the user's other sessions.
func (s *Service) ChangePassword(ctx context.Context, p *Principal, current, code, next string, m Meta) error {
	if err := s.policy.Check(next, p.User.Username); err != nil {
		return err
	}
	if err := s.reauthenticate(ctx, p, current, code, m); err != nil {
		return err
	}
	h, err := s.hasher.Hash(ctx, next)
	if err != nil {
		return err
	}
	if err := s.store.SetPassword(ctx, p.User.ID, h, s.nowUS()); err != nil {
		return err
	}
	n, _ := s.store.DeleteUserSessions(ctx, p.User.ID, p.Session.ID)
	s.record(ctx, m, userActor(p.User.ID), "auth.password_changed", userActor(p.User.ID), audit.Success, map[string]any{"other_sessions_ended": n})
	return nil
}

// Account finds an account by username for operators.
func (s *Service) Account(ctx context.Context, username string) (User, error) {
	u, err := s.lookup(ctx, username)
	if err != nil {
		return User{}, err
	}
	return s.publicUser(ctx, u), nil
}

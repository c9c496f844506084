package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/parley-meet/parley/audit"
	"github.com/parley-meet/parley/rbac"
	"github.com/parley-meet/parley/store"
)

// Challenge purposes.
const (
	challengeMFA    = "mfa"
	challengeEnroll = "enroll"
)

// Link purposes.
const (
	linkSetup    = "setup"
	linkActivate = "activate"
)

// Errors the HTTP layer maps to responses. Their texts are fit for users.
var (
	ErrInvalidCredentials = errors.New("the username or password is wrong")
	ErrAccountDisabled    = errors.New("this account is disabled")
	ErrInvalidChallenge   = errors.New("this sign-in attempt has expired: start again with your password")
	ErrInvalidCode        = errors.New("the code is wrong")
	ErrInvalidToken       = errors.New("this link is not valid: it has expired or was already used")
	ErrSetupComplete      = errors.New("setup is already complete")
	ErrUnauthenticated    = errors.New("not signed in")
	ErrNoSuchUser         = errors.New("no such user")
	ErrUsernameTaken      = errors.New("that username is taken")
	ErrInvalidRole        = errors.New("no such global role")
)

// ThrottledError says a sign-in was refused for throttling; RetryAfter is
// when to try again.
type ThrottledError struct {
	RetryAfter time.Duration
	Locked     bool // the account is locked (20 failures), not just slowed
}

func (e *ThrottledError) Error() string {
	if e.Locked {
		return "too many failed sign-ins: this account is locked for now"
	}
	return "too many attempts: try again later"
}

// Config tunes the service; zero fields take the defaults in brackets.
type Config struct {
	// Issuer is the public origin (https://host[:port]); it is the JWT
	// issuer, the TOTP issuer label's host and the base of setup links.
	Issuer string
	// SessionIdle [30m] and SessionMax [12h] end sessions.
	SessionIdle time.Duration
	SessionMax  time.Duration
	// ChallengeTTL [5m] bounds a half-finished sign-in.
	ChallengeTTL time.Duration
	// TokenTTL [15m] is the lifetime of API tokens (at most 15 min).
	TokenTTL time.Duration
	// LoginBurst [20] and LoginPerMinute [10] size the per-address bucket.
	LoginBurst     int
	LoginPerMinute float64
}

// Service is the account and sign-in authority.
type Service struct {
	store  *store.Store
	audit  *audit.Log
	hasher *Hasher
	keys   *Keyring
	policy PasswordPolicy
	cfg    Config
	now    func() time.Time
	log    *slog.Logger
	tokens *tokenSigner
	rbac   *rbac.Authorizer
}

// Deps are what the service is built from. Now and Logger may be nil.
type Deps struct {
	Store  *store.Store
	Audit  *audit.Log
	RBAC   *rbac.Authorizer
	Hasher *Hasher
	Keys   *Keyring
	Policy PasswordPolicy
	Config Config
	Now    func() time.Time
	Logger *slog.Logger
}

// NewService builds the service.
func NewService(d Deps) (*Service, error) {
	if d.Store == nil || d.Audit == nil || d.RBAC == nil || d.Hasher == nil || d.Keys == nil || d.Config.Issuer == "" {
		return nil, errors.New("auth: missing dependency")
	}
	c := d.Config
	setDefault(&c.SessionIdle, 30*time.Minute)
	setDefault(&c.SessionMax, 12*time.Hour)
	setDefault(&c.ChallengeTTL, 5*time.Minute)
	setDefault(&c.TokenTTL, 15*time.Minute)
	if c.TokenTTL > 15*time.Minute {
		c.TokenTTL = 15 * time.Minute
	}
	if c.LoginBurst <= 0 {
		c.LoginBurst = 20
	}
	if c.LoginPerMinute <= 0 {
		c.LoginPerMinute = 10
	}
	s := &Service{store: d.Store, audit: d.Audit, rbac: d.RBAC, hasher: d.Hasher, keys: d.Keys, policy: d.Policy, cfg: c, now: d.Now, log: d.Logger}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.tokens = &tokenSigner{svc: s}
	return s, nil
}

func setDefault(d *time.Duration, v time.Duration) {
	if *d <= 0 {
		*d = v
	}
}

// Meta is where a request came from, for throttling and the audit log.
type Meta struct {
	ClientIP  string
	UserAgent string
}

// record writes an audit event; a failure to audit is logged loudly but
// does not undo what happened.
func (s *Service) record(ctx context.Context, m Meta, actor, action, target, outcome string, details map[string]any) {
	ip := m.ClientIP
	if ip == "" {
		ip, _ = ctx.Value(clientIPKey{}).(string)
	}
	if _, err := s.audit.Record(ctx, audit.Event{Actor: actor, Action: action, Target: target,
		Outcome: outcome, ClientIP: ip, Details: details}); err != nil {
		s.log.Error("audit record failed", "action", action, "err", err)
	}
}

func userActor(id string) string { return "user:" + id }

type clientIPKey struct{}

// WithClientIP marks ctx with the address an operator's request came from,
// for the audit entries of the account operations it calls (SetDisabled,
// ResetMFA, Unlock, RevokeSessions, CreateAccount, EnrollmentLink).
func WithClientIP(ctx context.Context, ip string) context.Context {
	return context.WithValue(ctx, clientIPKey{}, ip)
}

// randomToken returns n random bytes as unpadded base64url.
func randomToken(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// randomID returns a 128-bit random id as hex.
func randomID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// HashToken is the stored form of a high-entropy token (invites too).
func HashToken(t string) string { return hashToken(t) }

// hashToken is the stored form of a high-entropy token.
func hashToken(t string) string {
	sum := sha256.Sum256([]byte(t))
	return hex.EncodeToString(sum[:])
}

func (s *Service) nowUS() int64 { return s.now().UnixMicro() }

// User is the public view of an account.
type User struct {
	ID          string   `json:"id"`
	Username    string   `json:"username"`
	DisplayName string   `json:"display_name"`
	Roles       []string `json:"roles"`
}

// publicUser is u as the API shows it, with its global roles (rbac's).
func (s *Service) publicUser(ctx context.Context, u store.User) User {
	roles := s.rbac.GlobalRoles(ctx, rbac.UserSubject(u.ID))
	if roles == nil {
		roles = []string{}
	}
	return User{ID: u.ID, Username: u.Username, DisplayName: u.DisplayName, Roles: roles}
}

// LoginResult is the answer to a correct password: the next step and the
// challenge that alone can take it.
type LoginResult struct {
	Next      string `json:"next"` // "mfa" or "enroll"
	Challenge string `json:"challenge"`
}

// Login checks a username and password. Wrong username and wrong password
// are the same error and cost the same (an unknown user still costs a
// hash). Throttling is per client address and per account name; the
// account's counters live in the store, so a restart resets nothing.
func (s *Service) Login(ctx context.Context, username, password string, m Meta) (LoginResult, error) {
	if err := s.takeAddressToken(ctx, m); err != nil {
		return LoginResult{}, err
	}
	// A flood of sign-ins queues for the bounded hasher; nobody waits long.
	ctx, cancel := context.WithTimeout(ctx, hashWait)
	defer cancel()
	name, nameErr := NormalizeUsername(username)
	key := "login:" + name
	if nameErr != nil {
		key = "login:invalid"
	}
	if err := s.checkThrottle(ctx, key, m); err != nil {
		return LoginResult{}, err
	}
	var u store.User
	var err error
	if nameErr == nil {
		u, err = s.store.UserByUsername(ctx, name)
	} else {
		err = store.ErrNotFound
	}
	switch {
	case errors.Is(err, store.ErrNotFound) || err == nil && u.PasswordHash == "":
		s.hasher.Dummy(ctx, password)
		s.failure(ctx, key, m, "anonymous", "auth.login", "username:"+clipName(username), map[string]any{"reason": "unknown user"})
		return LoginResult{}, ErrInvalidCredentials
	case err != nil:
		return LoginResult{}, fmt.Errorf("login: %w", err)
	}
	ok, err := s.hasher.Verify(ctx, u.PasswordHash, password)
	if err != nil {
		return LoginResult{}, fmt.Errorf("login: %w", err)
	}
	if !ok {
		s.failure(ctx, key, m, userActor(u.ID), "auth.login", userActor(u.ID), map[string]any{"reason": "wrong password"})
		return LoginResult{}, ErrInvalidCredentials
	}
	if u.Disabled {
		s.record(ctx, m, userActor(u.ID), "auth.login", userActor(u.ID), audit.Denied, map[string]any{"reason": "account disabled"})
		return LoginResult{}, ErrAccountDisabled
	}
	if NeedsRehash(u.PasswordHash) {
		if h, err := s.hasher.Hash(ctx, password); err == nil {
			s.store.SetPassword(ctx, u.ID, h, s.nowUS())
		}
	}
	purpose := challengeMFA
	if !u.MFAEnabled {
		purpose = challengeEnroll
	}
	challenge, err := s.newChallenge(ctx, u.ID, purpose)
	if err != nil {
		return LoginResult{}, err
	}
	s.record(ctx, m, userActor(u.ID), "auth.password", userActor(u.ID), audit.Success, map[string]any{"next": purpose})
	return LoginResult{Next: purpose, Challenge: challenge}, nil
}

// clipName bounds a typed username before it goes into the audit log.
func clipName(s string) string {
	if len(s) > 64 {
		return s[:64]
	}
	return s
}

func (s *Service) newChallenge(ctx context.Context, userID, purpose string) (string, error) {
	tok := randomToken(32)
	now := s.now()
	err := s.store.CreateChallenge(ctx, store.Challenge{
		TokenHash: hashToken(tok), UserID: userID, Purpose: purpose,
		CreatedUS: now.UnixMicro(), ExpiresUS: now.Add(s.cfg.ChallengeTTL).UnixMicro(),
	})
	if err != nil {
		return "", err
	}
	return tok, nil
}

// challenge finds a live challenge of the purpose and its user.
func (s *Service) challenge(ctx context.Context, token, purpose string) (store.Challenge, store.User, error) {
	if token == "" || len(token) > 128 {
		return store.Challenge{}, store.User{}, ErrInvalidChallenge
	}
	c, err := s.store.ChallengeByHash(ctx, hashToken(token))
	if errors.Is(err, store.ErrNotFound) || err == nil && (c.Purpose != purpose || c.ExpiresUS <= s.nowUS()) {
		return c, store.User{}, ErrInvalidChallenge
	}
	if err != nil {
		return c, store.User{}, err
	}
	u, err := s.store.UserByID(ctx, c.UserID)
	if errors.Is(err, store.ErrNotFound) {
		return c, u, ErrInvalidChallenge
	}
	if err != nil {
		return c, u, err
	}
	if u.Disabled {
		s.store.DeleteChallenge(ctx, c.TokenHash)
		return c, u, ErrAccountDisabled
	}
	return c, u, nil
}

// hashWait bounds the wait for a free password-hashing slot; past it the
// client is told the server is busy (503).
const hashWait = 10 * time.Second

// maxCodeFailures wrong codes destroy a challenge.
const maxCodeFailures = 5

// codeFailed counts a wrong code against the challenge and the account.
// It returns ErrInvalidChallenge once the challenge is destroyed.
func (s *Service) codeFailed(ctx context.Context, c store.Challenge, u store.User, m Meta, action string, details map[string]any) error {
	s.failure(ctx, "login:"+u.Username, m, userActor(u.ID), action, userActor(u.ID), details)
	n, err := s.store.AddChallengeFailure(ctx, c.TokenHash)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if errors.Is(err, store.ErrNotFound) || n >= maxCodeFailures {
		s.store.DeleteChallenge(ctx, c.TokenHash)
		if err == nil {
			s.record(ctx, m, userActor(u.ID), "auth.challenge_destroyed", userActor(u.ID), audit.Denied,
				map[string]any{"failures": n})
		}
		return ErrInvalidChallenge
	}
	return ErrInvalidCode
}

// VerifyMFA finishes a sign-in with a TOTP code or a recovery code and
// opens a session.
func (s *Service) VerifyMFA(ctx context.Context, challenge, code, recoveryCode string, m Meta) (*NewSession, error) {
	c, u, err := s.challenge(ctx, challenge, challengeMFA)
	if err != nil {
		return nil, err
	}
	if err := s.checkThrottle(ctx, "login:"+u.Username, m); err != nil {
		return nil, err
	}
	method := "totp"
	if recoveryCode != "" {
		method = "recovery_code"
		norm := normalizeRecoveryCode(recoveryCode)
		used, err := s.store.UseRecoveryCode(ctx, u.ID, s.keys.recoveryHash(u.ID, norm), s.nowUS())
		if err != nil {
			return nil, err
		}
		if !used {
			return nil, s.codeFailed(ctx, c, u, m, "auth.recovery_code", map[string]any{"reason": "unknown or used recovery code"})
		}
		left, _, _ := s.store.RecoveryStatus(ctx, u.ID)
		s.record(ctx, m, userActor(u.ID), "auth.recovery_code", userActor(u.ID), audit.Success, map[string]any{"codes_left": left})
	} else {
		if err := s.checkTOTP(ctx, c, u, code, m); err != nil {
			return nil, err
		}
	}
	// The challenge is single-use: of two requests racing, one wins.
	if won, err := s.store.DeleteChallenge(ctx, c.TokenHash); err != nil || !won {
		return nil, ErrInvalidChallenge
	}
	s.clearThrottle(ctx, "login:"+u.Username)
	ns, err := s.openSession(ctx, u, m)
	if err != nil {
		return nil, err
	}
	s.record(ctx, m, userActor(u.ID), "auth.login", userActor(u.ID), audit.Success, map[string]any{"method": method})
	return ns, nil
}

// checkTOTP verifies code against the user's secret, moving the user's last
// accepted step forward, and counts failures (replays included).
func (s *Service) checkTOTP(ctx context.Context, c store.Challenge, u store.User, code string, m Meta) error {
	secret, err := s.keys.Open(u.TOTPSecret, "totp:"+u.ID)
	if err != nil {
		return fmt.Errorf("open TOTP secret of user %s: %w", u.ID, err)
	}
	step, ok, replay := matchTOTP(string(secret), code, s.now(), u.TOTPLastStep)
	if ok {
		advanced, err := s.store.AdvanceTOTPStep(ctx, u.ID, step)
		if err != nil {
			return err
		}
		if advanced {
			s.record(ctx, m, userActor(u.ID), "auth.mfa", userActor(u.ID), audit.Success, nil)
			return nil
		}
		replay = true // another request used this step first
	}
	if replay {
		s.record(ctx, m, userActor(u.ID), "auth.mfa_replay", userActor(u.ID), audit.Denied, nil)
		return s.codeFailed(ctx, c, u, m, "auth.mfa", map[string]any{"reason": "replayed code"})
	}
	return s.codeFailed(ctx, c, u, m, "auth.mfa", map[string]any{"reason": "wrong code"})
}

// StartEnrollment offers a new TOTP secret for an enrolment challenge. The
// secret is shown this once; it becomes active only when confirmed.
func (s *Service) StartEnrollment(ctx context.Context, challenge string, m Meta) (Enrollment, error) {
	c, u, err := s.challenge(ctx, challenge, challengeEnroll)
	if err != nil {
		return Enrollment{}, err
	}
	e, err := newTOTPKey(issuerLabel(s.cfg.Issuer), u.Username)
	if err != nil {
		return Enrollment{}, fmt.Errorf("enrolment: %w", err)
	}
	if err := s.store.SetChallengeSecret(ctx, c.TokenHash, s.keys.Seal([]byte(e.Secret), "enroll:"+c.TokenHash)); err != nil {
		return Enrollment{}, err
	}
	s.record(ctx, m, userActor(u.ID), "auth.enroll_start", userActor(u.ID), audit.Success, nil)
	return e, nil
}

// EnrollmentDone is the end of an enrolment: the recovery codes, shown
// once, and a new session.
type EnrollmentDone struct {
	RecoveryCodes []string
	Session       *NewSession
}

// numRecoveryCodes are issued at enrolment.
const numRecoveryCodes = 10

// ConfirmEnrollment activates the offered secret when code matches it,
// issues recovery codes, ends the user's other sessions and opens a new one.
func (s *Service) ConfirmEnrollment(ctx context.Context, challenge, code string, m Meta) (*EnrollmentDone, error) {
	c, u, err := s.challenge(ctx, challenge, challengeEnroll)
	if err != nil {
		return nil, err
	}
	if c.PendingSecret == "" {
		return nil, ErrInvalidChallenge
	}
	if err := s.checkThrottle(ctx, "login:"+u.Username, m); err != nil {
		return nil, err
	}
	secret, err := s.keys.Open(c.PendingSecret, "enroll:"+c.TokenHash)
	if err != nil {
		return nil, fmt.Errorf("open pending secret: %w", err)
	}
	step, ok, _ := matchTOTP(string(secret), code, s.now(), 0)
	if !ok {
		return nil, s.codeFailed(ctx, c, u, m, "auth.enroll", map[string]any{"reason": "wrong code"})
	}
	if won, err := s.store.DeleteChallenge(ctx, c.TokenHash); err != nil || !won {
		return nil, ErrInvalidChallenge
	}
	codes, hashes := s.newRecoveryCodes(u.ID)
	// The confirming code's step is recorded as used: it cannot sign in.
	if err := s.store.ActivateMFA(ctx, u.ID, s.keys.Seal(secret, "totp:"+u.ID), step, hashes, s.nowUS()); err != nil {
		return nil, err
	}
	s.store.DeleteUserSessions(ctx, u.ID, "")
	s.clearThrottle(ctx, "login:"+u.Username)
	u.MFAEnabled = true
	ns, err := s.openSession(ctx, u, m)
	if err != nil {
		return nil, err
	}
	s.record(ctx, m, userActor(u.ID), "auth.enroll", userActor(u.ID), audit.Success, map[string]any{"recovery_codes": len(codes)})
	return &EnrollmentDone{RecoveryCodes: codes, Session: ns}, nil
}

func (s *Service) newRecoveryCodes(userID string) (codes, hashes []string) {
	for i := 0; i < numRecoveryCodes; i++ {
		c := newRecoveryCode()
		codes = append(codes, c)
		hashes = append(hashes, s.keys.recoveryHash(userID, normalizeRecoveryCode(c)))
	}
	return codes, hashes
}

// issuerLabel names this server in authenticator apps: "Parley (host)".
// The port is left out: a colon would split the otpauth label.
func issuerLabel(origin string) string {
	u, err := url.Parse(origin)
	if err != nil || u.Hostname() == "" {
		return "Parley"
	}
	return "Parley (" + u.Hostname() + ")"
}

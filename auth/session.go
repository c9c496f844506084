package auth

import (
	"context"
	"crypto/subtle"
	"errors"
	"sync"
	"time"

	"github.com/parley-meet/parley/audit"
	"github.com/parley-meet/parley/store"
)

// CookieName is the session cookie. The __Host- prefix makes browsers
// insist on Secure, Path=/ and no Domain.
const CookieName = "__Host-parley"

// maxTokenLen bounds any credential a client presents before it is hashed
// or parsed.
const maxTokenLen = 4096

// NewSession is a session just opened: the token goes into the cookie and
// is never stored or shown again.
type NewSession struct {
	Token     string
	CSRFToken string
	ExpiresAt time.Time
	User      User
}

func (s *Service) openSession(ctx context.Context, u store.User, m Meta) (*NewSession, error) {
	now := s.now()
	tok := randomToken(32)
	se := store.Session{
		ID: randomID(), TokenHash: hashToken(tok), UserID: u.ID, CSRFToken: randomToken(32),
		ClientIP: m.ClientIP, UserAgent: clipUA(m.UserAgent),
		CreatedUS: now.UnixMicro(), LastSeenUS: now.UnixMicro(), ExpiresUS: now.Add(s.cfg.SessionMax).UnixMicro(),
	}
	if err := s.store.CreateSession(ctx, se); err != nil {
		return nil, err
	}
	s.store.TouchLogin(ctx, u.ID, now.UnixMicro())
	return &NewSession{Token: tok, CSRFToken: se.CSRFToken, ExpiresAt: time.UnixMicro(se.ExpiresUS), User: s.publicUser(ctx, u)}, nil
}

func clipUA(ua string) string {
	if len(ua) > 256 {
		return ua[:256]
	}
	return ua
}

// Principal is a fully authenticated caller: a session (from its cookie,
// or from an API token minted by it) and its user.
type Principal struct {
	User    store.User
	Session store.Session
	// ViaToken is true for a Bearer token, false for the cookie. Only
	// cookie requests need a CSRF token.
	ViaToken bool
}

// PublicUser is the principal's public view.
func (s *Service) PublicUser(ctx context.Context, p *Principal) User {
	return s.publicUser(ctx, p.User)
}

// CheckCSRF compares a presented CSRF token with the session's in constant
// time.
func (p *Principal) CheckCSRF(presented string) bool {
	return presented != "" && subtle.ConstantTimeCompare([]byte(presented), []byte(p.Session.CSRFToken)) == 1
}

// touchEvery limits writes of the idle clock to one a minute per session.
const touchEvery = time.Minute

// Authenticate resolves a session cookie. Expired (idle or absolute)
// sessions are deleted; a disabled user has no sessions.
func (s *Service) Authenticate(ctx context.Context, token string) (*Principal, error) {
	if token == "" || len(token) > maxTokenLen {
		return nil, ErrUnauthenticated
	}
	se, err := s.store.SessionByTokenHash(ctx, hashToken(token))
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrUnauthenticated
	}
	if err != nil {
		return nil, err
	}
	return s.principal(ctx, se, false)
}

// principal checks that a stored session is alive and its user enabled.
func (s *Service) principal(ctx context.Context, se store.Session, viaToken bool) (*Principal, error) {
	now := s.now()
	idleEnd := time.UnixMicro(se.LastSeenUS).Add(s.cfg.SessionIdle)
	if !now.Before(time.UnixMicro(se.ExpiresUS)) || !now.Before(idleEnd) {
		s.store.DeleteSession(ctx, se.ID)
		return nil, ErrUnauthenticated
	}
	u, err := s.store.UserByID(ctx, se.UserID)
	if errors.Is(err, store.ErrNotFound) || err == nil && (u.Disabled || !u.MFAEnabled) {
		s.store.DeleteSession(ctx, se.ID)
		return nil, ErrUnauthenticated
	}
	if err != nil {
		return nil, err
	}
	if now.Sub(time.UnixMicro(se.LastSeenUS)) >= touchEvery {
		if err := s.store.TouchSession(ctx, se.ID, now.UnixMicro()); err == nil {
			se.LastSeenUS = now.UnixMicro()
		}
	}
	return &Principal{User: u, Session: se, ViaToken: viaToken}, nil
}

// Logout ends every session of the principal's user (and so every API
// token minted from them).
func (s *Service) Logout(ctx context.Context, p *Principal, m Meta) error {
	n, err := s.store.DeleteUserSessions(ctx, p.User.ID, "")
	if err != nil {
		return err
	}
	s.record(ctx, m, userActor(p.User.ID), "auth.logout", userActor(p.User.ID), audit.Success, map[string]any{"sessions_ended": n})
	return nil
}

// RunJanitor deletes expired sessions, guest sessions (with their room
// bindings), challenges and links every interval
// until ctx ends. The caller owns the goroutine that runs it.
func (s *Service) RunJanitor(ctx context.Context, interval time.Duration, wg *sync.WaitGroup) {
	defer wg.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			now := s.now()
			if n, err := s.store.DeleteExpired(ctx, now.UnixMicro(), now.Add(-s.cfg.SessionIdle).UnixMicro()); err != nil {
				if ctx.Err() == nil {
					s.log.Warn("deleting expired sessions failed", "err", err)
				}
			} else if n > 0 {
				s.log.Debug("deleted expired sessions, challenges and links", "rows", n)
			}
			ids, err := s.store.ExpiredGuestSessions(ctx, now.UnixMicro(), now.Add(-s.cfg.SessionIdle).UnixMicro())
			if err != nil && ctx.Err() == nil {
				s.log.Warn("listing expired guest sessions failed", "err", err)
			}
			for _, id := range ids {
				s.endGuest(ctx, id)
			}
		}
	}
}

// KeepAlive reports which of the given sessions and guest sessions are
// still valid, and counts an open connection as use of the valid ones (so a
// long meeting does not idle its session out). Signaling calls it about
// once a second for every open socket, and closes the sockets of the
// sessions that are gone (sign-out, disabled account, MFA reset, expiry).
func (s *Service) KeepAlive(ctx context.Context, sessionIDs, guestIDs []string) (sessions, guests map[string]bool, err error) {
	now := s.now()
	idleAfter := now.Add(-s.cfg.SessionIdle).UnixMicro()
	if sessions, err = s.store.LiveSessions(ctx, sessionIDs, now.UnixMicro(), idleAfter); err != nil {
		return nil, nil, err
	}
	if guests, err = s.store.LiveGuestSessions(ctx, guestIDs, now.UnixMicro(), idleAfter); err != nil {
		return nil, nil, err
	}
	return sessions, guests, nil
}

package auth

import (
	"context"
	"errors"
	"time"

	"github.com/parley-meet/parley/audit"
	"github.com/parley-meet/parley/rbac"
	"github.com/parley-meet/parley/store"
)

// GuestCookieName is the cookie of a guest session. Guests have no account
// and no second factor: their cookie opens one room and nothing else, and
// only the handlers of that room look at it.
const GuestCookieName = "__Host-parley-guest"

// Guest is an authenticated guest session.
type Guest struct {
	Session store.GuestSession
}

// NewGuestSession is a guest session just opened; the token goes into the
// cookie and is not stored.
type NewGuestSession struct {
	ID        string
	Token     string
	ExpiresAt time.Time
}

// OpenGuestSession opens a guest session for one room, made by an invite.
// It lasts at most the session maximum and ends after the idle timeout.
func (s *Service) OpenGuestSession(ctx context.Context, roomID, inviteID, displayName string, m Meta) (*NewGuestSession, error) {
	name, err := NormalizeDisplayName(displayName)
	if err != nil {
		return nil, err
	}
	now := s.now()
	tok := randomToken(32)
	g := store.GuestSession{
		ID: randomID(), TokenHash: hashToken(tok), RoomID: roomID, InviteID: inviteID, DisplayName: name,
		ClientIP: m.ClientIP, CreatedUS: now.UnixMicro(), LastSeenUS: now.UnixMicro(),
		ExpiresUS: now.Add(s.cfg.SessionMax).UnixMicro(),
	}
	if err := s.store.CreateGuestSession(ctx, g); err != nil {
		return nil, err
	}
	s.record(ctx, m, "guest:"+g.ID, "guest.session_open", "room:"+roomID, audit.Success, map[string]any{"invite": inviteID})
	return &NewGuestSession{ID: g.ID, Token: tok, ExpiresAt: time.UnixMicro(g.ExpiresUS)}, nil
}

// AuthenticateGuest resolves a guest cookie.
func (s *Service) AuthenticateGuest(ctx context.Context, token string) (*Guest, error) {
	if token == "" || len(token) > maxTokenLen {
		return nil, ErrUnauthenticated
	}
	g, err := s.store.GuestSessionByTokenHash(ctx, hashToken(token))
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrUnauthenticated
	}
	if err != nil {
		return nil, err
	}
	now := s.now()
	if !now.Before(time.UnixMicro(g.ExpiresUS)) || !now.Before(time.UnixMicro(g.LastSeenUS).Add(s.cfg.SessionIdle)) {
		s.endGuest(ctx, g.ID)
		return nil, ErrUnauthenticated
	}
	if now.Sub(time.UnixMicro(g.LastSeenUS)) >= touchEvery {
		if err := s.store.TouchGuestSession(ctx, g.ID, now.UnixMicro()); err == nil {
			g.LastSeenUS = now.UnixMicro()
		}
	}
	return &Guest{Session: g}, nil
}

// EndGuestSession ends a guest session and its room binding.
func (s *Service) EndGuestSession(ctx context.Context, g *Guest, m Meta) {
	s.endGuest(ctx, g.Session.ID)
	s.record(ctx, m, "guest:"+g.Session.ID, "guest.session_end", "room:"+g.Session.RoomID, audit.Success, nil)
}

func (s *Service) endGuest(ctx context.Context, id string) {
	if err := s.store.DeleteGuestSession(ctx, id); err != nil {
		s.log.Warn("ending a guest session failed", "err", err)
	}
	if err := s.rbac.RemoveSubject(ctx, rbac.GuestSubject(id)); err != nil {
		s.log.Warn("removing a guest's room binding failed", "err", err)
	}
}

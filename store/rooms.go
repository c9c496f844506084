package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Room is a meeting room. Its name is text chosen by people; its id is
// random and is what policies and URLs use.
type Room struct {
	ID            string
	Name          string
	Lobby         bool
	GuestsAllowed bool
	CreatedBy     string // user id
	CreatedUS     int64
	UpdatedUS     int64
	// RecordingRetentionS is how long the room's recordings are kept, in
	// seconds after they end; 0 means the server's default.
	RecordingRetentionS int64
	// E2EE: the room's meetings are end-to-end encrypted (the browsers
	// encrypt every media frame; the server cannot read or record them).
	E2EE bool
}

const roomColumns = `id, name, lobby, guests_allowed, created_by, created_us, updated_us, recording_retention_s, e2ee`

func scanRoom(row interface{ Scan(...any) error }) (Room, error) {
	var r Room
	err := row.Scan(&r.ID, &r.Name, &r.Lobby, &r.GuestsAllowed, &r.CreatedBy, &r.CreatedUS, &r.UpdatedUS, &r.RecordingRetentionS, &r.E2EE)
	if errors.Is(err, sql.ErrNoRows) {
		return r, ErrNotFound
	}
	return r, err
}

// CreateRoom inserts r.
func (s *Store) CreateRoom(ctx context.Context, r Room) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO rooms (`+roomColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		r.ID, r.Name, r.Lobby, r.GuestsAllowed, r.CreatedBy, r.CreatedUS, r.UpdatedUS, r.RecordingRetentionS, r.E2EE)
	if isUniqueViolation(err) {
		return ErrConflict
	}
	if err != nil {
		return fmt.Errorf("create room: %w", err)
	}
	return nil
}

// RoomByID returns a room or ErrNotFound.
func (s *Store) RoomByID(ctx context.Context, id string) (Room, error) {
	return scanRoom(s.db.QueryRowContext(ctx, `SELECT `+roomColumns+` FROM rooms WHERE id = $1`, id))
}

// ListRooms returns every room, newest first.
func (s *Store) ListRooms(ctx context.Context) ([]Room, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+roomColumns+` FROM rooms ORDER BY created_us DESC, id`)
	if err != nil {
		return nil, fmt.Errorf("list rooms: %w", err)
	}
	defer rows.Close()
	var out []Room
	for rows.Next() {
		r, err := scanRoom(rows)
		if err != nil {
			return nil, fmt.Errorf("list rooms: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// UpdateRoom writes a room's settings.
func (s *Store) UpdateRoom(ctx context.Context, r Room) error {
	return s.execOne(ctx, "update room", `UPDATE rooms SET name = $1, lobby = $2, guests_allowed = $3, updated_us = $4, recording_retention_s = $5, e2ee = $6 WHERE id = $7`,
		r.Name, r.Lobby, r.GuestsAllowed, r.UpdatedUS, r.RecordingRetentionS, r.E2EE, r.ID)
}

// DeleteRoom removes a room with its invites and guest sessions.
func (s *Store) DeleteRoom(ctx context.Context, id string) error {
	return s.withTx(ctx, func(tx *sql.Tx) error {
		// Foreign keys cascade on both engines; delete the children
		// explicitly anyway so that the outcome never depends on a pragma.
		for _, q := range []string{`DELETE FROM guest_sessions WHERE room_id = $1`, `DELETE FROM invites WHERE room_id = $1`} {
			if _, err := tx.ExecContext(ctx, q, id); err != nil {
				return fmt.Errorf("delete room: %w", err)
			}
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM rooms WHERE id = $1`, id)
		if err != nil {
			return fmt.Errorf("delete room: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		return nil
	})
}

// Invite is a link that lets someone into one room with one role.
type Invite struct {
	ID        string
	RoomID    string
	TokenHash string
	Role      string
	CreatedBy string
	CreatedUS int64
	ExpiresUS int64
	MaxUses   int
	Uses      int
	RevokedUS int64
}

const inviteColumns = `id, room_id, token_hash, role, created_by, created_us, expires_us, max_uses, uses, revoked_us`

func scanInvite(row interface{ Scan(...any) error }) (Invite, error) {
	var i Invite
	err := row.Scan(&i.ID, &i.RoomID, &i.TokenHash, &i.Role, &i.CreatedBy, &i.CreatedUS, &i.ExpiresUS, &i.MaxUses, &i.Uses, &i.RevokedUS)
	if errors.Is(err, sql.ErrNoRows) {
		return i, ErrNotFound
	}
	return i, err
}

// CreateInvite inserts i.
func (s *Store) CreateInvite(ctx context.Context, i Invite) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO invites (`+inviteColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		i.ID, i.RoomID, i.TokenHash, i.Role, i.CreatedBy, i.CreatedUS, i.ExpiresUS, i.MaxUses, i.Uses, i.RevokedUS)
	if err != nil {
		return fmt.Errorf("create invite: %w", err)
	}
	return nil
}

// RoomInvites lists a room's invites, newest first.
func (s *Store) RoomInvites(ctx context.Context, roomID string) ([]Invite, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+inviteColumns+` FROM invites WHERE room_id = $1 ORDER BY created_us DESC, id`, roomID)
	if err != nil {
		return nil, fmt.Errorf("list invites: %w", err)
	}
	defer rows.Close()
	var out []Invite
	for rows.Next() {
		i, err := scanInvite(rows)
		if err != nil {
			return nil, fmt.Errorf("list invites: %w", err)
		}
		out = append(out, i)
	}
	return out, rows.Err()
}

// RevokeInvite ends an invite of the room; ErrNotFound if the room has no
// such invite.
func (s *Store) RevokeInvite(ctx context.Context, roomID, inviteID string, nowUS int64) error {
	return s.execOne(ctx, "revoke invite", `UPDATE invites SET revoked_us = $1 WHERE id = $2 AND room_id = $3 AND revoked_us = 0`,
		nowUS, inviteID, roomID)
}

// UseInvite spends one use of the live invite whose token hashes to h and
// returns it; ErrNotFound if it is unknown, revoked, expired or used up.
// One statement, so concurrent redemptions cannot exceed max_uses.
func (s *Store) UseInvite(ctx context.Context, h string, nowUS int64) (Invite, error) {
	return scanInvite(s.db.QueryRowContext(ctx, `UPDATE invites SET uses = uses + 1
		WHERE token_hash = $1 AND revoked_us = 0 AND expires_us > $2 AND uses < max_uses
		RETURNING `+inviteColumns, h, nowUS))
}

// InviteByTokenHash returns the live invite (not revoked, not expired,
// not used up) whose token hashes to h, without spending a use.
func (s *Store) InviteByTokenHash(ctx context.Context, h string, nowUS int64) (Invite, error) {
	return scanInvite(s.db.QueryRowContext(ctx, `SELECT `+inviteColumns+` FROM invites
		WHERE token_hash = $1 AND revoked_us = 0 AND expires_us > $2 AND uses < max_uses`, h, nowUS))
}

// GuestSession is a guest's way into one room, opened by an invite.
type GuestSession struct {
	ID          string
	TokenHash   string
	RoomID      string
	InviteID    string
	DisplayName string
	ClientIP    string
	CreatedUS   int64
	LastSeenUS  int64
	ExpiresUS   int64
}

const guestColumns = `id, token_hash, room_id, invite_id, display_name, client_ip, created_us, last_seen_us, expires_us`

func scanGuest(row interface{ Scan(...any) error }) (GuestSession, error) {
	var g GuestSession
	err := row.Scan(&g.ID, &g.TokenHash, &g.RoomID, &g.InviteID, &g.DisplayName, &g.ClientIP, &g.CreatedUS, &g.LastSeenUS, &g.ExpiresUS)
	if errors.Is(err, sql.ErrNoRows) {
		return g, ErrNotFound
	}
	return g, err
}

// CreateGuestSession inserts g.
func (s *Store) CreateGuestSession(ctx context.Context, g GuestSession) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO guest_sessions (`+guestColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		g.ID, g.TokenHash, g.RoomID, g.InviteID, g.DisplayName, g.ClientIP, g.CreatedUS, g.LastSeenUS, g.ExpiresUS)
	if err != nil {
		return fmt.Errorf("create guest session: %w", err)
	}
	return nil
}

// GuestSessionByTokenHash finds a guest session.
func (s *Store) GuestSessionByTokenHash(ctx context.Context, h string) (GuestSession, error) {
	return scanGuest(s.db.QueryRowContext(ctx, `SELECT `+guestColumns+` FROM guest_sessions WHERE token_hash = $1`, h))
}

// GuestSessionByID finds a guest session by id.
func (s *Store) GuestSessionByID(ctx context.Context, id string) (GuestSession, error) {
	return scanGuest(s.db.QueryRowContext(ctx, `SELECT `+guestColumns+` FROM guest_sessions WHERE id = $1`, id))
}

// TouchGuestSession moves a guest session's idle clock.
func (s *Store) TouchGuestSession(ctx context.Context, id string, nowUS int64) error {
	_, err := s.db.ExecContext(ctx, `UPDATE guest_sessions SET last_seen_us = $1 WHERE id = $2`, nowUS, id)
	return err
}

// DeleteGuestSession ends a guest session.
func (s *Store) DeleteGuestSession(ctx context.Context, id string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM guest_sessions WHERE id = $1`, id)
	return err
}

// ExpiredGuestSessions returns the ids of guest sessions past their end
// (absolute, or idle since before idleBeforeUS).
func (s *Store) ExpiredGuestSessions(ctx context.Context, nowUS, idleBeforeUS int64) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id FROM guest_sessions WHERE expires_us <= $1 OR last_seen_us <= $2`, nowUS, idleBeforeUS)
	if err != nil {
		return nil, fmt.Errorf("expired guest sessions: %w", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// RoomGuests lists the live guest sessions of a room.
func (s *Store) RoomGuests(ctx context.Context, roomID string) ([]GuestSession, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+guestColumns+` FROM guest_sessions WHERE room_id = $1 ORDER BY created_us`, roomID)
	if err != nil {
		return nil, fmt.Errorf("room guests: %w", err)
	}
	defer rows.Close()
	var out []GuestSession
	for rows.Next() {
		g, err := scanGuest(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	return out, rows.Err()
}

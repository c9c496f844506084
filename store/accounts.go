package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// Errors callers branch on.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("already exists")
)

// User is an account row. Times are UTC microseconds since the epoch.
type User struct {
	ID           string
	Username     string // NFKC-normalised, lower case
	DisplayName  string
	PasswordHash string // argon2id PHC string; empty until the account is activated
	Disabled     bool
	MFAEnabled   bool
	TOTPSecret   string // sealed; empty until enrolment is confirmed
	TOTPLastStep int64
	CreatedUS    int64
	UpdatedUS    int64
	LastLoginUS  int64
}

const userColumns = `id, username, display_name, password_hash, disabled, mfa_enabled,
	totp_secret, totp_last_step, created_us, updated_us, last_login_us`

func scanUser(row interface{ Scan(...any) error }) (User, error) {
	var u User
	err := row.Scan(&u.ID, &u.Username, &u.DisplayName, &u.PasswordHash, &u.Disabled,
		&u.MFAEnabled, &u.TOTPSecret, &u.TOTPLastStep, &u.CreatedUS, &u.UpdatedUS, &u.LastLoginUS)
	if errors.Is(err, sql.ErrNoRows) {
		return u, ErrNotFound
	}
	return u, err
}

// isUniqueViolation recognises a unique-constraint failure on either engine.
func isUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "23505"
	}
	return err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed")
}

// CreateUser inserts u; ErrConflict if the username is taken.
func (s *Store) CreateUser(ctx context.Context, u User) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO users (`+userColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		u.ID, u.Username, u.DisplayName, u.PasswordHash, u.Disabled, u.MFAEnabled,
		u.TOTPSecret, u.TOTPLastStep, u.CreatedUS, u.UpdatedUS, u.LastLoginUS)
	if isUniqueViolation(err) {
		return ErrConflict
	}
	if err != nil {
		return fmt.Errorf("create user: %w", err)
	}
	return nil
}

// UserByID returns the user with id, or ErrNotFound.
func (s *Store) UserByID(ctx context.Context, id string) (User, error) {
	return scanUser(s.db.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE id = $1`, id))
}

// UserByUsername returns the user with the (normalised) username, or
// ErrNotFound.
func (s *Store) UserByUsername(ctx context.Context, username string) (User, error) {
	return scanUser(s.db.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE username = $1`, username))
}

// ListUsers returns every user ordered by username.
func (s *Store) ListUsers(ctx context.Context) ([]User, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+userColumns+` FROM users ORDER BY username`)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	defer rows.Close()
	var out []User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("list users: %w", err)
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// execOne runs a statement that must change exactly one row.
func (s *Store) execOne(ctx context.Context, what, q string, args ...any) error {
	res, err := s.db.ExecContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// SetPassword replaces a user's password hash.
func (s *Store) SetPassword(ctx context.Context, userID, hash string, nowUS int64) error {
	return s.execOne(ctx, "set password", `UPDATE users SET password_hash = $1, updated_us = $2 WHERE id = $3`, hash, nowUS, userID)
}

// SetDisabled disables or enables a user. Disabling also ends every
// session and pending challenge of the user, in the same transaction.
func (s *Store) SetDisabled(ctx context.Context, userID string, disabled bool, nowUS int64) error {
	return s.withTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE users SET disabled = $1, updated_us = $2 WHERE id = $3`, disabled, nowUS, userID)
		if err != nil {
			return fmt.Errorf("set disabled: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		if disabled {
			return deleteUserAuthState(ctx, tx, userID)
		}
		return nil
	})
}

func deleteUserAuthState(ctx context.Context, tx *sql.Tx, userID string) error {
	for _, q := range []string{
		`DELETE FROM sessions WHERE user_id = $1`,
		`DELETE FROM auth_challenges WHERE user_id = $1`,
	} {
		if _, err := tx.ExecContext(ctx, q, userID); err != nil {
			return fmt.Errorf("revoke sessions: %w", err)
		}
	}
	return nil
}

// ActivateMFA makes sealedSecret the user's TOTP secret, records step as
// the last accepted one, and replaces the recovery codes.
func (s *Store) ActivateMFA(ctx context.Context, userID, sealedSecret string, step int64, recoveryHashes []string, nowUS int64) error {
	return s.withTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE users SET mfa_enabled = TRUE, totp_secret = $1,
			totp_last_step = $2, updated_us = $3 WHERE id = $4`, sealedSecret, step, nowUS, userID)
		if err != nil {
			return fmt.Errorf("activate MFA: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		return replaceRecoveryCodes(ctx, tx, userID, recoveryHashes)
	})
}

// ResetMFA removes a user's TOTP secret and recovery codes and ends every
// session and challenge: the next sign-in enrols again.
func (s *Store) ResetMFA(ctx context.Context, userID string, nowUS int64) error {
	return s.withTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE users SET mfa_enabled = FALSE, totp_secret = '',
			totp_last_step = 0, updated_us = $1 WHERE id = $2`, nowUS, userID)
		if err != nil {
			return fmt.Errorf("reset MFA: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM recovery_codes WHERE user_id = $1`, userID); err != nil {
			return fmt.Errorf("reset MFA: %w", err)
		}
		return deleteUserAuthState(ctx, tx, userID)
	})
}

// AdvanceTOTPStep records step as the user's last accepted TOTP step, only
// if it is later than the one stored. It reports false when it is not: the
// code was already used (or a later one was), so it must be refused. The
// check and the write are one statement, so two requests racing with the
// same code cannot both win.
func (s *Store) AdvanceTOTPStep(ctx context.Context, userID string, step int64) (bool, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE users SET totp_last_step = $1 WHERE id = $2 AND totp_last_step < $1`, step, userID)
	if err != nil {
		return false, fmt.Errorf("advance TOTP step: %w", err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// TouchLogin records a successful sign-in.
func (s *Store) TouchLogin(ctx context.Context, userID string, nowUS int64) error {
	return s.execOne(ctx, "touch login", `UPDATE users SET last_login_us = $1 WHERE id = $2`, nowUS, userID)
}

// Session is a signed-in browser or client. The token itself is never
// stored, only its hash.
type Session struct {
	ID         string // public reference (the "sid" of tokens minted from it)
	TokenHash  string
	UserID     string
	CSRFToken  string
	ClientIP   string
	UserAgent  string
	CreatedUS  int64
	LastSeenUS int64
	ExpiresUS  int64 // absolute end
}

const sessionColumns = `id, token_hash, user_id, csrf_token, client_ip, user_agent, created_us, last_seen_us, expires_us`

func scanSession(row interface{ Scan(...any) error }) (Session, error) {
	var se Session
	err := row.Scan(&se.ID, &se.TokenHash, &se.UserID, &se.CSRFToken, &se.ClientIP, &se.UserAgent,
		&se.CreatedUS, &se.LastSeenUS, &se.ExpiresUS)
	if errors.Is(err, sql.ErrNoRows) {
		return se, ErrNotFound
	}
	return se, err
}

// CreateSession stores a new session.
func (s *Store) CreateSession(ctx context.Context, se Session) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO sessions (`+sessionColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		se.ID, se.TokenHash, se.UserID, se.CSRFToken, se.ClientIP, se.UserAgent, se.CreatedUS, se.LastSeenUS, se.ExpiresUS)
	if err != nil {
		return fmt.Errorf("create session: %w", err)
	}
	return nil
}

// SessionByTokenHash finds the session whose token hashes to h.
func (s *Store) SessionByTokenHash(ctx context.Context, h string) (Session, error) {
	return scanSession(s.db.QueryRowContext(ctx, `SELECT `+sessionColumns+` FROM sessions WHERE token_hash = $1`, h))
}

// SessionByID finds a session by its public reference.
func (s *Store) SessionByID(ctx context.Context, id string) (Session, error) {
	return scanSession(s.db.QueryRowContext(ctx, `SELECT `+sessionColumns+` FROM sessions WHERE id = $1`, id))
}

// TouchSession moves a session's idle clock.
func (s *Store) TouchSession(ctx context.Context, id string, nowUS int64) error {
	_, err := s.db.ExecContext(ctx, `UPDATE sessions SET last_seen_us = $1 WHERE id = $2`, nowUS, id)
	return err
}

// DeleteSession ends one session.
func (s *Store) DeleteSession(ctx context.Context, id string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM sessions WHERE id = $1`, id)
	return err
}

// DeleteUserSessions ends every session of a user except keepID (which may
// be empty) and returns how many ended.
func (s *Store) DeleteUserSessions(ctx context.Context, userID, keepID string) (int64, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM sessions WHERE user_id = $1 AND id <> $2`, userID, keepID)
	if err != nil {
		return 0, fmt.Errorf("revoke sessions: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}

// DeleteExpired removes sessions, challenges and link tokens past their
// end, and returns how many rows went.
func (s *Store) DeleteExpired(ctx context.Context, nowUS, sessionIdleBeforeUS int64) (int64, error) {
	var total int64
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`DELETE FROM sessions WHERE expires_us <= $1 OR last_seen_us <= $2`, []any{nowUS, sessionIdleBeforeUS}},
		{`DELETE FROM auth_challenges WHERE expires_us <= $1`, []any{nowUS}},
		{`DELETE FROM link_tokens WHERE expires_us <= $1`, []any{nowUS}},
	} {
		res, err := s.db.ExecContext(ctx, q.sql, q.args...)
		if err != nil {
			return total, fmt.Errorf("delete expired: %w", err)
		}
		n, _ := res.RowsAffected()
		total += n
	}
	return total, nil
}

// LiveSessions returns which of ids are sessions that are still valid at
// nowUS (not past their absolute end, used since idleAfterUS, and of an
// enabled account with MFA) and moves their idle clocks to nowUS: a
// connection that is open counts as use.
func (s *Store) LiveSessions(ctx context.Context, ids []string, nowUS, idleAfterUS int64) (map[string]bool, error) {
	return s.liveAndTouch(ctx, ids, nowUS, idleAfterUS,
		`SELECT s.id FROM sessions s JOIN users u ON u.id = s.user_id
		 WHERE s.expires_us > $1 AND s.last_seen_us > $2 AND NOT u.disabled AND u.mfa_enabled AND s.id IN (`,
		`UPDATE sessions SET last_seen_us = $1 WHERE id IN (`)
}

// LiveGuestSessions is LiveSessions for guest sessions.
func (s *Store) LiveGuestSessions(ctx context.Context, ids []string, nowUS, idleAfterUS int64) (map[string]bool, error) {
	return s.liveAndTouch(ctx, ids, nowUS, idleAfterUS,
		`SELECT id FROM guest_sessions WHERE expires_us > $1 AND last_seen_us > $2 AND id IN (`,
		`UPDATE guest_sessions SET last_seen_us = $1 WHERE id IN (`)
}

func (s *Store) liveAndTouch(ctx context.Context, ids []string, nowUS, idleAfterUS int64, selectPrefix, updatePrefix string) (map[string]bool, error) {
	live := make(map[string]bool, len(ids))
	for start := 0; start < len(ids); start += 500 {
		batch := ids[start:min(start+500, len(ids))]
		args := []any{nowUS, idleAfterUS}
		var in strings.Builder
		for i, id := range batch {
			if i > 0 {
				in.WriteString(", ")
			}
			fmt.Fprintf(&in, "$%d", i+3)
			args = append(args, id)
		}
		rows, err := s.db.QueryContext(ctx, selectPrefix+in.String()+`)`, args...)
		if err != nil {
			return nil, fmt.Errorf("live sessions: %w", err)
		}
		var alive []any
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, fmt.Errorf("live sessions: %w", err)
			}
			live[id] = true
			alive = append(alive, id)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("live sessions: %w", err)
		}
		if len(alive) == 0 {
			continue
		}
		var upd strings.Builder
		for i := range alive {
			if i > 0 {
				upd.WriteString(", ")
			}
			fmt.Fprintf(&upd, "$%d", i+2)
		}
		if _, err := s.db.ExecContext(ctx, updatePrefix+upd.String()+`)`, append([]any{nowUS}, alive...)...); err != nil {
			return nil, fmt.Errorf("touch live sessions: %w", err)
		}
	}
	return live, nil
}

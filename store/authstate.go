package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
)

// Challenge is a half-finished sign-in (password done, TOTP not yet) or an
// enrolment in progress. It is bound to one user and one purpose.
type Challenge struct {
	TokenHash     string
	UserID        string
	Purpose       string
	PendingSecret string // sealed TOTP secret offered during enrolment
	Failures      int
	CreatedUS     int64
	ExpiresUS     int64
}

// CreateChallenge stores c.
func (s *Store) CreateChallenge(ctx context.Context, c Challenge) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO auth_challenges
		(token_hash, user_id, purpose, pending_secret, failures, created_us, expires_us)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		c.TokenHash, c.UserID, c.Purpose, c.PendingSecret, c.Failures, c.CreatedUS, c.ExpiresUS)
	if err != nil {
		return fmt.Errorf("create challenge: %w", err)
	}
	return nil
}

// ChallengeByHash finds a challenge, or ErrNotFound.
func (s *Store) ChallengeByHash(ctx context.Context, h string) (Challenge, error) {
	var c Challenge
	err := s.db.QueryRowContext(ctx, `SELECT token_hash, user_id, purpose, pending_secret, failures,
		created_us, expires_us FROM auth_challenges WHERE token_hash = $1`, h).
		Scan(&c.TokenHash, &c.UserID, &c.Purpose, &c.PendingSecret, &c.Failures, &c.CreatedUS, &c.ExpiresUS)
	if errors.Is(err, sql.ErrNoRows) {
		return c, ErrNotFound
	}
	return c, err
}

// SetChallengeSecret stores the TOTP secret offered during enrolment.
func (s *Store) SetChallengeSecret(ctx context.Context, h, sealed string) error {
	return s.execOne(ctx, "set challenge secret", `UPDATE auth_challenges SET pending_secret = $1 WHERE token_hash = $2`, sealed, h)
}

// AddChallengeFailure counts one wrong code against the challenge and
// returns the new count.
func (s *Store) AddChallengeFailure(ctx context.Context, h string) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `UPDATE auth_challenges SET failures = failures + 1
		WHERE token_hash = $1 RETURNING failures`, h).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, ErrNotFound
	}
	return n, err
}

// DeleteChallenge removes a challenge and reports whether it was there,
// so that of two requests finishing the same challenge only one wins.
func (s *Store) DeleteChallenge(ctx context.Context, h string) (bool, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM auth_challenges WHERE token_hash = $1`, h)
	if err != nil {
		return false, fmt.Errorf("delete challenge: %w", err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// replaceRecoveryCodes swaps a user's recovery codes inside tx.
func replaceRecoveryCodes(ctx context.Context, tx *sql.Tx, userID string, hashes []string) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM recovery_codes WHERE user_id = $1`, userID); err != nil {
		return fmt.Errorf("replace recovery codes: %w", err)
	}
	for _, h := range hashes {
		if _, err := tx.ExecContext(ctx, `INSERT INTO recovery_codes (user_id, code_hash) VALUES ($1, $2)`, userID, h); err != nil {
			return fmt.Errorf("replace recovery codes: %w", err)
		}
	}
	return nil
}

// ReplaceRecoveryCodes gives a user a new set of recovery codes.
func (s *Store) ReplaceRecoveryCodes(ctx context.Context, userID string, hashes []string) error {
	return s.withTx(ctx, func(tx *sql.Tx) error { return replaceRecoveryCodes(ctx, tx, userID, hashes) })
}

// UseRecoveryCode marks an unused code as used and reports whether it was
// an unused code of this user.
func (s *Store) UseRecoveryCode(ctx context.Context, userID, codeHash string, nowUS int64) (bool, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE recovery_codes SET used_us = $1
		WHERE user_id = $2 AND code_hash = $3 AND used_us = 0`, nowUS, userID, codeHash)
	if err != nil {
		return false, fmt.Errorf("use recovery code: %w", err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// RecoveryStatus returns how many unused codes a user has and when one was
// last used (0: never).
func (s *Store) RecoveryStatus(ctx context.Context, userID string) (left int, lastUsedUS int64, err error) {
	err = s.db.QueryRowContext(ctx, `SELECT
		COALESCE(SUM(CASE WHEN used_us = 0 THEN 1 ELSE 0 END), 0),
		COALESCE(MAX(used_us), 0) FROM recovery_codes WHERE user_id = $1`, userID).Scan(&left, &lastUsedUS)
	return left, lastUsedUS, err
}

// LinkToken is a one-time link: the first-run setup link or an enrolment
// link made by an operator.
type LinkToken struct {
	TokenHash string
	Purpose   string
	UserID    string // empty for setup
	CreatedUS int64
	ExpiresUS int64
}

// CreateLinkToken stores t, first removing unused tokens of the same
// purpose and user: only the newest link works.
func (s *Store) CreateLinkToken(ctx context.Context, t LinkToken) error {
	return s.withTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM link_tokens WHERE purpose = $1 AND COALESCE(user_id, '') = $2`,
			t.Purpose, t.UserID); err != nil {
			return fmt.Errorf("create link token: %w", err)
		}
		var userID any
		if t.UserID != "" {
			userID = t.UserID
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO link_tokens (token_hash, purpose, user_id, created_us, expires_us)
			VALUES ($1, $2, $3, $4, $5)`, t.TokenHash, t.Purpose, userID, t.CreatedUS, t.ExpiresUS)
		if err != nil {
			return fmt.Errorf("create link token: %w", err)
		}
		return nil
	})
}

// ConsumeLinkToken marks a valid, unused token of the purpose as used and
// returns it; ErrNotFound if there is none (unknown, used or expired).
func (s *Store) ConsumeLinkToken(ctx context.Context, h, purpose string, nowUS int64) (LinkToken, error) {
	t := LinkToken{TokenHash: h, Purpose: purpose}
	var userID sql.NullString
	err := s.db.QueryRowContext(ctx, `UPDATE link_tokens SET used_us = $1
		WHERE token_hash = $2 AND purpose = $3 AND used_us = 0 AND expires_us > $1
		RETURNING user_id, created_us, expires_us`, nowUS, h, purpose).Scan(&userID, &t.CreatedUS, &t.ExpiresUS)
	if errors.Is(err, sql.ErrNoRows) {
		return t, ErrNotFound
	}
	if err != nil {
		return t, fmt.Errorf("consume link token: %w", err)
	}
	t.UserID = userID.String
	return t, nil
}

// Throttle is the failure record of one sign-in key (an account name).
type Throttle struct {
	Key           string
	Failures      int
	LastFailureUS int64
	LockedUntilUS int64
}

// ThrottleByKey returns the record for key; a zero record if there is none.
func (s *Store) ThrottleByKey(ctx context.Context, key string) (Throttle, error) {
	t := Throttle{Key: key}
	err := s.db.QueryRowContext(ctx, `SELECT failures, last_failure_us, locked_until_us FROM login_throttle WHERE key = $1`, key).
		Scan(&t.Failures, &t.LastFailureUS, &t.LockedUntilUS)
	if errors.Is(err, sql.ErrNoRows) {
		return t, nil
	}
	return t, err
}

// RecordFailure counts one failure on key in a single statement (so that
// concurrent failures are all counted) and returns the new record. A lock
// that has run out starts a fresh count; the lockAt-th failure sets
// locked_until to lockUntilUS.
func (s *Store) RecordFailure(ctx context.Context, key string, nowUS int64, lockAt int, lockUntilUS int64) (Throttle, error) {
	t := Throttle{Key: key, LastFailureUS: nowUS}
	err := s.db.QueryRowContext(ctx, `INSERT INTO login_throttle (key, failures, last_failure_us, locked_until_us)
		VALUES ($1, 1, $2, CASE WHEN 1 >= $3 THEN CAST($4 AS BIGINT) ELSE 0 END)
		ON CONFLICT (key) DO UPDATE SET
		  failures = CASE WHEN login_throttle.locked_until_us > 0 AND login_throttle.locked_until_us <= $2
		                  THEN 1 ELSE login_throttle.failures + 1 END,
		  locked_until_us = CASE
		      WHEN login_throttle.locked_until_us > 0 AND login_throttle.locked_until_us <= $2 THEN 0
		      WHEN login_throttle.locked_until_us = 0 AND login_throttle.failures + 1 >= $3 THEN $4
		      ELSE login_throttle.locked_until_us END,
		  last_failure_us = $2
		RETURNING failures, locked_until_us`, key, nowUS, lockAt, lockUntilUS).Scan(&t.Failures, &t.LockedUntilUS)
	if err != nil {
		return t, fmt.Errorf("record failure: %w", err)
	}
	return t, nil
}

// DeleteThrottle forgets the failures of key; it reports whether there
// were any.
func (s *Store) DeleteThrottle(ctx context.Context, key string) (bool, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM login_throttle WHERE key = $1`, key)
	if err != nil {
		return false, fmt.Errorf("delete throttle: %w", err)
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// TakeToken takes one token from the bucket named key, which holds at most
// burst tokens and refills at rate tokens per second. It returns how long
// to wait before a token will be there when none is (0 when one was taken).
// Buckets live in the store, so a restart does not refill them.
func (s *Store) TakeToken(ctx context.Context, key string, rate, burst float64, nowUS int64) (waitUS int64, err error) {
	err = s.withTx(ctx, func(tx *sql.Tx) error {
		q := `SELECT tokens, updated_us FROM rate_buckets WHERE key = $1`
		if s.engine == Postgres {
			q += ` FOR UPDATE`
		}
		tokens, updated := burst, nowUS
		err := tx.QueryRowContext(ctx, q, key).Scan(&tokens, &updated)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("take token: %w", err)
		}
		if elapsed := float64(nowUS-updated) / 1e6; elapsed > 0 {
			tokens = math.Min(burst, tokens+elapsed*rate)
		}
		if tokens >= 1 {
			tokens--
			waitUS = 0
		} else {
			waitUS = int64(math.Ceil((1 - tokens) / rate * 1e6))
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO rate_buckets (key, tokens, updated_us) VALUES ($1, $2, $3)
			ON CONFLICT (key) DO UPDATE SET tokens = excluded.tokens, updated_us = excluded.updated_us`,
			key, tokens, nowUS)
		if err != nil {
			return fmt.Errorf("take token: %w", err)
		}
		return nil
	})
	return waitUS, err
}

// SigningKey is a token-signing key, its private half sealed.
type SigningKey struct {
	KID        string
	Alg        string
	PrivateKey string
	CreatedUS  int64
}

// SigningKeys returns every signing key, newest first.
func (s *Store) SigningKeys(ctx context.Context) ([]SigningKey, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT kid, alg, private_key, created_us FROM signing_keys ORDER BY created_us DESC, kid`)
	if err != nil {
		return nil, fmt.Errorf("signing keys: %w", err)
	}
	defer rows.Close()
	var out []SigningKey
	for rows.Next() {
		var k SigningKey
		if err := rows.Scan(&k.KID, &k.Alg, &k.PrivateKey, &k.CreatedUS); err != nil {
			return nil, fmt.Errorf("signing keys: %w", err)
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// AddSigningKey stores k.
func (s *Store) AddSigningKey(ctx context.Context, k SigningKey) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO signing_keys (kid, alg, private_key, created_us) VALUES ($1, $2, $3, $4)`,
		k.KID, k.Alg, k.PrivateKey, k.CreatedUS)
	if err != nil {
		return fmt.Errorf("add signing key: %w", err)
	}
	return nil
}

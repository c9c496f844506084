package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// Recording is a catalog entry of recording/: one recorded meeting. Its
// media are in files listed by its tracks.
type Recording struct {
	ID        string
	RoomID    string
	StartedBy string // subject, e.g. "user:<id>"
	StartedUS int64
	EndedUS   int64 // 0 while recording, or when a crash left it unknown
	Status    string
	// Node is the cluster node that makes or made the recording ('' on a
	// single node).
	Node string
	// RoomRetentionS is the room's recording_retention_s, read with the
	// recording (0 when the room is gone or uses the default).
	RoomRetentionS int64
}

// RecordingTrack is one file of a recording, or a track that could not be
// recorded (File empty).
type RecordingTrack struct {
	ID              string
	RecordingID     string
	File            string // name inside the recordings directory
	Kind            string
	ParticipantID   string
	ParticipantName string
	Codecs          string // JSON array of MIME types
	StartedUS       int64
	DurationMS      int64
	Size            int64 // plaintext bytes
	Status          string
	Note            string
	HeaderSHA256    string
}

// RecordingShare lets one user see a recording until ExpiresUS.
type RecordingShare struct {
	RecordingID string
	UserID      string
	CreatedBy   string
	CreatedUS   int64
	ExpiresUS   int64
}

const recordingColumns = `r.id, r.room_id, r.started_by, r.started_us, r.ended_us, r.status, r.node, COALESCE(rm.recording_retention_s, 0)`

const recordingFrom = ` FROM recordings r LEFT JOIN rooms rm ON rm.id = r.room_id`

func scanRecording(row interface{ Scan(...any) error }) (Recording, error) {
	var r Recording
	err := row.Scan(&r.ID, &r.RoomID, &r.StartedBy, &r.StartedUS, &r.EndedUS, &r.Status, &r.Node, &r.RoomRetentionS)
	if errors.Is(err, sql.ErrNoRows) {
		return r, ErrNotFound
	}
	return r, err
}

const trackColumns = `id, recording_id, file, kind, participant_id, participant_name, codecs,
	started_us, duration_ms, size, status, note, header_sha256`

func scanTrack(row interface{ Scan(...any) error }) (RecordingTrack, error) {
	var t RecordingTrack
	err := row.Scan(&t.ID, &t.RecordingID, &t.File, &t.Kind, &t.ParticipantID, &t.ParticipantName, &t.Codecs,
		&t.StartedUS, &t.DurationMS, &t.Size, &t.Status, &t.Note, &t.HeaderSHA256)
	if errors.Is(err, sql.ErrNoRows) {
		return t, ErrNotFound
	}
	return t, err
}

const shareColumns = `recording_id, user_id, created_by, created_us, expires_us`

func scanShare(row interface{ Scan(...any) error }) (RecordingShare, error) {
	var sh RecordingShare
	err := row.Scan(&sh.RecordingID, &sh.UserID, &sh.CreatedBy, &sh.CreatedUS, &sh.ExpiresUS)
	if errors.Is(err, sql.ErrNoRows) {
		return sh, ErrNotFound
	}
	return sh, err
}

// isForeignKeyViolation recognises a foreign-key failure on either engine.
func isForeignKeyViolation(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "23503"
	}
	return err != nil && strings.Contains(err.Error(), "FOREIGN KEY constraint failed")
}

// CreateRecording inserts r (RoomRetentionS is ignored).
func (s *Store) CreateRecording(ctx context.Context, r Recording) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO recordings (id, room_id, started_by, started_us, ended_us, status, node)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, r.ID, r.RoomID, r.StartedBy, r.StartedUS, r.EndedUS, r.Status, r.Node)
	if isUniqueViolation(err) {
		return ErrConflict
	}
	if err != nil {
		return fmt.Errorf("create recording: %w", err)
	}
	return nil
}

// RecordingByID returns a recording or ErrNotFound.
func (s *Store) RecordingByID(ctx context.Context, id string) (Recording, error) {
	return scanRecording(s.db.QueryRowContext(ctx, `SELECT `+recordingColumns+recordingFrom+` WHERE r.id = $1`, id))
}

// ListRecordings returns every recording, newest first.
func (s *Store) ListRecordings(ctx context.Context) ([]Recording, error) {
	return s.queryRecordings(ctx, `SELECT `+recordingColumns+recordingFrom+` ORDER BY r.started_us DESC, r.id`)
}

// RecordingsWithStatus returns the recordings in one status, oldest first.
func (s *Store) RecordingsWithStatus(ctx context.Context, status string) ([]Recording, error) {
	return s.queryRecordings(ctx, `SELECT `+recordingColumns+recordingFrom+` WHERE r.status = $1 ORDER BY r.started_us, r.id`, status)
}

func (s *Store) queryRecordings(ctx context.Context, q string, args ...any) ([]Recording, error) {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list recordings: %w", err)
	}
	defer rows.Close()
	var out []Recording
	for rows.Next() {
		r, err := scanRecording(rows)
		if err != nil {
			return nil, fmt.Errorf("list recordings: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// FinishRecording sets a recording's status and end; ErrNotFound if there
// is no such recording. It is the recorder's own, unconditional end.
func (s *Store) FinishRecording(ctx context.Context, id, status string, endedUS int64) error {
	return s.execOne(ctx, "finish recording", `UPDATE recordings SET status = $1, ended_us = $2 WHERE id = $3`, status, endedUS, id)
}

// FinishRecordingIf ends a recording that is still in status from: in one
// transaction, its status and end become status and endedUS, and each of
// tracks that is still in status from gets its duration, size, status
// and note. It reports whether it changed the recording: false when there
// is no such recording or it has left status from (another node, running
// the same recovery at the same time, or its recorder, finished it
// first), and then nothing is written. Of several callers at once, one
// wins.
func (s *Store) FinishRecordingIf(ctx context.Context, id, from, status string, endedUS int64, tracks []RecordingTrack) (bool, error) {
	changed := false
	err := s.withTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE recordings SET status = $1, ended_us = $2 WHERE id = $3 AND status = $4`,
			status, endedUS, id, from)
		if err != nil {
			return fmt.Errorf("finish recording: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil
		}
		for _, t := range tracks {
			if _, err := tx.ExecContext(ctx, `UPDATE recording_tracks SET duration_ms = $1, size = $2, status = $3, note = $4
				WHERE id = $5 AND recording_id = $6 AND status = $7`,
				t.DurationMS, t.Size, t.Status, t.Note, t.ID, id, from); err != nil {
				return fmt.Errorf("finish recording: %w", err)
			}
		}
		changed = true
		return nil
	})
	if err != nil {
		return false, err
	}
	return changed, nil
}

// DeleteRecording removes a recording with its tracks and shares (the
// caller removes the files first); ErrNotFound if there is none.
func (s *Store) DeleteRecording(ctx context.Context, id string) error {
	return s.withTx(ctx, func(tx *sql.Tx) error {
		for _, q := range []string{`DELETE FROM recording_shares WHERE recording_id = $1`, `DELETE FROM recording_tracks WHERE recording_id = $1`} {
			if _, err := tx.ExecContext(ctx, q, id); err != nil {
				return fmt.Errorf("delete recording: %w", err)
			}
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM recordings WHERE id = $1`, id)
		if err != nil {
			return fmt.Errorf("delete recording: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		return nil
	})
}

// AddRecordingTrack inserts t; ErrNotFound if its recording does not exist.
func (s *Store) AddRecordingTrack(ctx context.Context, t RecordingTrack) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO recording_tracks (`+trackColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
		t.ID, t.RecordingID, t.File, t.Kind, t.ParticipantID, t.ParticipantName, t.Codecs,
		t.StartedUS, t.DurationMS, t.Size, t.Status, t.Note, t.HeaderSHA256)
	switch {
	case isForeignKeyViolation(err):
		return ErrNotFound
	case isUniqueViolation(err):
		return ErrConflict
	case err != nil:
		return fmt.Errorf("add recording track: %w", err)
	}
	return nil
}

// UpdateRecordingTrack writes what changes while a track is recorded and
// after: its duration, size, status and note.
func (s *Store) UpdateRecordingTrack(ctx context.Context, t RecordingTrack) error {
	return s.execOne(ctx, "update recording track", `UPDATE recording_tracks
		SET duration_ms = $1, size = $2, status = $3, note = $4 WHERE id = $5 AND recording_id = $6`,
		t.DurationMS, t.Size, t.Status, t.Note, t.ID, t.RecordingID)
}

// RecordingTrack returns one track of a recording or ErrNotFound.
func (s *Store) RecordingTrack(ctx context.Context, recordingID, trackID string) (RecordingTrack, error) {
	return scanTrack(s.db.QueryRowContext(ctx, `SELECT `+trackColumns+` FROM recording_tracks
		WHERE id = $1 AND recording_id = $2`, trackID, recordingID))
}

// RecordingTracks returns a recording's tracks in the order they started.
func (s *Store) RecordingTracks(ctx context.Context, recordingID string) ([]RecordingTrack, error) {
	return s.queryTracks(ctx, `SELECT `+trackColumns+` FROM recording_tracks WHERE recording_id = $1 ORDER BY started_us, id`, recordingID)
}

// AllRecordingTracks returns every track of every recording, each
// recording's in the order they started.
func (s *Store) AllRecordingTracks(ctx context.Context) ([]RecordingTrack, error) {
	return s.queryTracks(ctx, `SELECT `+trackColumns+` FROM recording_tracks ORDER BY recording_id, started_us, id`)
}

func (s *Store) queryTracks(ctx context.Context, q string, args ...any) ([]RecordingTrack, error) {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list recording tracks: %w", err)
	}
	defer rows.Close()
	var out []RecordingTrack
	for rows.Next() {
		t, err := scanTrack(rows)
		if err != nil {
			return nil, fmt.Errorf("list recording tracks: %w", err)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// PutRecordingShare shares a recording with a user, or changes the
// expiry of an existing share; ErrNotFound if the recording or the user
// does not exist.
func (s *Store) PutRecordingShare(ctx context.Context, sh RecordingShare) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO recording_shares (`+shareColumns+`) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (recording_id, user_id) DO UPDATE SET created_by = excluded.created_by,
			created_us = excluded.created_us, expires_us = excluded.expires_us`,
		sh.RecordingID, sh.UserID, sh.CreatedBy, sh.CreatedUS, sh.ExpiresUS)
	if isForeignKeyViolation(err) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("share recording: %w", err)
	}
	return nil
}

// DeleteRecordingShare ends a share; ErrNotFound if there is none.
func (s *Store) DeleteRecordingShare(ctx context.Context, recordingID, userID string) error {
	return s.execOne(ctx, "unshare recording", `DELETE FROM recording_shares WHERE recording_id = $1 AND user_id = $2`, recordingID, userID)
}

// RecordingShare returns one share (expired or not) or ErrNotFound.
func (s *Store) RecordingShare(ctx context.Context, recordingID, userID string) (RecordingShare, error) {
	return scanShare(s.db.QueryRowContext(ctx, `SELECT `+shareColumns+` FROM recording_shares
		WHERE recording_id = $1 AND user_id = $2`, recordingID, userID))
}

// RecordingShares returns a recording's shares, expired ones included,
// oldest first.
func (s *Store) RecordingShares(ctx context.Context, recordingID string) ([]RecordingShare, error) {
	return s.queryShares(ctx, `SELECT `+shareColumns+` FROM recording_shares WHERE recording_id = $1 ORDER BY created_us, user_id`, recordingID)
}

// AllRecordingShares returns every share of every recording.
func (s *Store) AllRecordingShares(ctx context.Context) ([]RecordingShare, error) {
	return s.queryShares(ctx, `SELECT `+shareColumns+` FROM recording_shares ORDER BY recording_id, created_us, user_id`)
}

func (s *Store) queryShares(ctx context.Context, q string, args ...any) ([]RecordingShare, error) {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list recording shares: %w", err)
	}
	defer rows.Close()
	var out []RecordingShare
	for rows.Next() {
		sh, err := scanShare(rows)
		if err != nil {
			return nil, fmt.Errorf("list recording shares: %w", err)
		}
		out = append(out, sh)
	}
	return out, rows.Err()
}

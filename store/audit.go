package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// AuditRecord is one row of the audit log as stored. The audit package
// computes PrevHash and Hash; this package only keeps them.
type AuditRecord struct {
	Seq      int64
	AtMicros int64 // UTC, microseconds since the Unix epoch
	Actor    string
	Action   string
	Target   string
	Outcome  string
	ClientIP string
	Details  string // canonical JSON object
	PrevHash string
	Hash     string
}

// AuditHead is the newest entry's sequence number and hash, kept apart from
// the log so that a log cut short at its tail does not look complete.
type AuditHead struct {
	Seq  int64
	Hash string
}

// ErrAuditHeadMoved is returned by AppendAudit when seal produced a record
// that does not follow the head it was given.
var ErrAuditHeadMoved = errors.New("audit record does not follow the head")

// AppendAudit appends one record to the audit log. In one transaction that
// holds the chain's lock it reads the head, lets seal fill in the record
// (sequence number, previous hash and hash) from it, inserts the record and
// moves the head. Concurrent appenders, in this process or another, are
// serialised, so the chain never forks.
func (s *Store) AppendAudit(ctx context.Context, seal func(head AuditHead) (AuditRecord, error)) (AuditRecord, error) {
	var rec AuditRecord
	err := s.withTx(ctx, func(tx *sql.Tx) error {
		headQuery := `SELECT seq, hash FROM audit_head WHERE id = 1`
		if s.engine == Postgres {
			headQuery += ` FOR UPDATE`
		}
		var head AuditHead
		if err := tx.QueryRowContext(ctx, headQuery).Scan(&head.Seq, &head.Hash); err != nil {
			return fmt.Errorf("read audit head: %w", err)
		}
		var err error
		if rec, err = seal(head); err != nil {
			return err
		}
		if rec.Seq != head.Seq+1 || rec.PrevHash != head.Hash {
			return ErrAuditHeadMoved
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO audit_log
			(seq, at_us, actor, action, target, outcome, client_ip, details, prev_hash, hash)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
			rec.Seq, rec.AtMicros, rec.Actor, rec.Action, rec.Target, rec.Outcome,
			rec.ClientIP, rec.Details, rec.PrevHash, rec.Hash); err != nil {
			return fmt.Errorf("insert audit record: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1`,
			rec.Seq, rec.Hash); err != nil {
			return fmt.Errorf("move audit head: %w", err)
		}
		return nil
	})
	return rec, err
}

// AuditHead returns the stored head of the audit chain.
func (s *Store) AuditHead(ctx context.Context) (AuditHead, error) {
	var h AuditHead
	err := s.db.QueryRowContext(ctx, `SELECT seq, hash FROM audit_head WHERE id = 1`).Scan(&h.Seq, &h.Hash)
	if err != nil {
		return h, fmt.Errorf("read audit head: %w", err)
	}
	return h, nil
}

// ScanAudit calls fn for every audit record in sequence order, stopping at
// the first error fn returns.
func (s *Store) ScanAudit(ctx context.Context, fn func(AuditRecord) error) error {
	rows, err := s.db.QueryContext(ctx, `SELECT seq, at_us, actor, action, target, outcome,
		client_ip, details, prev_hash, hash FROM audit_log ORDER BY seq`)
	if err != nil {
		return fmt.Errorf("read audit log: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var r AuditRecord
		if err := rows.Scan(&r.Seq, &r.AtMicros, &r.Actor, &r.Action, &r.Target, &r.Outcome,
			&r.ClientIP, &r.Details, &r.PrevHash, &r.Hash); err != nil {
			return fmt.Errorf("read audit log: %w", err)
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	return rows.Err()
}

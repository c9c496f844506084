package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"strings"
	"unicode/utf8"
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
	return s.ScanAuditThrough(ctx, math.MaxInt64, fn)
}

// AuditFilter selects audit records for QueryAudit. A zero field does not
// filter.
type AuditFilter struct {
	Actor  string // exact
	Target string // exact
	// Action is matched exactly, or as a prefix with ActionPrefix.
	Action       string
	ActionPrefix bool
	Outcome      string // exact
	FromUS       int64  // at_us >= FromUS
	ToUS         int64  // at_us < ToUS
	BeforeSeq    int64  // seq < BeforeSeq
	AfterSeq     int64  // seq > AfterSeq
	// Ascending returns the oldest records first; otherwise the newest.
	Ascending bool
	// Limit bounds the records returned; it must be positive.
	Limit int
}

// maxAuditQueryLimit bounds one QueryAudit page.
const maxAuditQueryLimit = 10000

// where renders the filter as a WHERE clause with $n placeholders.
func (f AuditFilter) where() (string, []any) {
	var conds []string
	var args []any
	add := func(cond string, arg any) {
		args = append(args, arg)
		conds = append(conds, fmt.Sprintf(cond, len(args)))
	}
	if f.Actor != "" {
		add("actor = $%d", f.Actor)
	}
	if f.Target != "" {
		add("target = $%d", f.Target)
	}
	if f.Action != "" {
		if f.ActionPrefix {
			// substr counts characters on both engines; LIKE would need
			// escaping (action names contain "_") and is case-insensitive
			// in SQLite.
			n := utf8.RuneCountInString(f.Action)
			args = append(args, n, f.Action)
			conds = append(conds, fmt.Sprintf("substr(action, 1, $%d) = $%d", len(args)-1, len(args)))
		} else {
			add("action = $%d", f.Action)
		}
	}
	if f.Outcome != "" {
		add("outcome = $%d", f.Outcome)
	}
	if f.FromUS != 0 {
		add("at_us >= $%d", f.FromUS)
	}
	if f.ToUS != 0 {
		add("at_us < $%d", f.ToUS)
	}
	if f.BeforeSeq != 0 {
		add("seq < $%d", f.BeforeSeq)
	}
	if f.AfterSeq != 0 {
		add("seq > $%d", f.AfterSeq)
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

// QueryAudit returns at most f.Limit audit records that match f, ordered
// by sequence number (newest first unless f.Ascending). The database does
// the filtering, ordering and limiting.
func (s *Store) QueryAudit(ctx context.Context, f AuditFilter) ([]AuditRecord, error) {
	if f.Limit <= 0 || f.Limit > maxAuditQueryLimit {
		return nil, fmt.Errorf("query audit log: limit %d out of range", f.Limit)
	}
	where, args := f.where()
	order := " ORDER BY seq DESC"
	if f.Ascending {
		order = " ORDER BY seq"
	}
	args = append(args, f.Limit)
	rows, err := s.db.QueryContext(ctx, `SELECT seq, at_us, actor, action, target, outcome,
		client_ip, details, prev_hash, hash FROM audit_log`+where+order+fmt.Sprintf(" LIMIT $%d", len(args)), args...)
	if err != nil {
		return nil, fmt.Errorf("query audit log: %w", err)
	}
	defer rows.Close()
	var out []AuditRecord
	for rows.Next() {
		var r AuditRecord
		if err := rows.Scan(&r.Seq, &r.AtMicros, &r.Actor, &r.Action, &r.Target, &r.Outcome,
			&r.ClientIP, &r.Details, &r.PrevHash, &r.Hash); err != nil {
			return nil, fmt.Errorf("query audit log: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// CountAuditRows returns how many rows the audit log holds.
func (s *Store) CountAuditRows(ctx context.Context) (int64, error) {
	var n int64
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM audit_log`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count audit log: %w", err)
	}
	return n, nil
}

// AuditBucketCount is how many records of one action and outcome fell into
// one time bucket.
type AuditBucketCount struct {
	Bucket  int64 // index from fromUS: bucket i covers [fromUS+i*bucketUS, fromUS+(i+1)*bucketUS)
	Action  string
	Outcome string
	Count   int64
}

// CountAuditByBucket counts the records of the given actions with
// fromUS <= at_us < toUS, grouped into buckets of bucketUS, by action and
// outcome. The database reads only that time range (audit_log_at) and does
// the counting.
func (s *Store) CountAuditByBucket(ctx context.Context, fromUS, toUS, bucketUS int64, actions []string) ([]AuditBucketCount, error) {
	if bucketUS <= 0 || toUS <= fromUS || len(actions) == 0 {
		return nil, fmt.Errorf("count audit log: empty range or no actions")
	}
	args := []any{fromUS, toUS, bucketUS}
	marks := make([]string, len(actions))
	for i, a := range actions {
		args = append(args, a)
		marks[i] = fmt.Sprintf("$%d", len(args))
	}
	rows, err := s.db.QueryContext(ctx, `SELECT (at_us - $1) / $3 AS bucket, action, outcome, COUNT(*)
		FROM audit_log WHERE at_us >= $1 AND at_us < $2 AND action IN (`+strings.Join(marks, ", ")+`)
		GROUP BY bucket, action, outcome ORDER BY bucket`, args...)
	if err != nil {
		return nil, fmt.Errorf("count audit log: %w", err)
	}
	defer rows.Close()
	var out []AuditBucketCount
	for rows.Next() {
		var c AuditBucketCount
		if err := rows.Scan(&c.Bucket, &c.Action, &c.Outcome, &c.Count); err != nil {
			return nil, fmt.Errorf("count audit log: %w", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// InactiveUsers returns at most limit enabled users, by username, who have
// not signed in since beforeUS (those who never did: created before it).
// It serves the administrators' security overview.
func (s *Store) InactiveUsers(ctx context.Context, beforeUS int64, limit int) ([]User, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+userColumns+` FROM users
		WHERE NOT disabled AND (CASE WHEN last_login_us > 0 THEN last_login_us ELSE created_us END) < $1
		ORDER BY username LIMIT $2`, beforeUS, limit)
	if err != nil {
		return nil, fmt.Errorf("list inactive users: %w", err)
	}
	defer rows.Close()
	var out []User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("list inactive users: %w", err)
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// ScanAuditThrough calls fn for every audit record with seq <= maxSeq in
// sequence order, stopping at the first error fn returns.
func (s *Store) ScanAuditThrough(ctx context.Context, maxSeq int64, fn func(AuditRecord) error) error {
	rows, err := s.db.QueryContext(ctx, `SELECT seq, at_us, actor, action, target, outcome,
		client_ip, details, prev_hash, hash FROM audit_log WHERE seq <= $1 ORDER BY seq`, maxSeq)
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

// MaxAuditSeq returns the highest sequence number stored (0 for none).
func (s *Store) MaxAuditSeq(ctx context.Context) (int64, error) {
	var n int64
	if err := s.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM audit_log`).Scan(&n); err != nil {
		return 0, fmt.Errorf("read audit log: %w", err)
	}
	return n, nil
}

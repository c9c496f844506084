package audit

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/parley-meet/parley/store"
)

// MaxPage is the most entries one Query returns.
const MaxPage = 500

// Filter selects entries of the log. A zero field does not filter.
type Filter struct {
	Actor   string // exact
	Target  string // exact
	Outcome string // exact: Success, Failure or Denied
	// Action is matched exactly; a trailing "*" makes the rest a prefix
	// ("auth.*" matches every action that starts with "auth.").
	Action string
	From   time.Time // at or after
	To     time.Time // before
	// BeforeSeq keeps entries older than that sequence number (paging
	// backwards); AfterSeq those newer (paging forwards).
	BeforeSeq int64
	AfterSeq  int64
	// Oldest returns the oldest entries first; otherwise the newest.
	Oldest bool
	// Limit is how many entries to return, 1 to MaxPage.
	Limit int
}

// ErrInvalidFilter is returned for a filter that cannot be asked.
var ErrInvalidFilter = errors.New("invalid audit filter")

// Validate reports whether f can be asked.
func (f Filter) Validate() error {
	switch f.Outcome {
	case "", Success, Failure, Denied:
	default:
		return fmt.Errorf("%w: outcome must be success, failure or denied", ErrInvalidFilter)
	}
	if f.Limit < 1 || f.Limit > MaxPage {
		return fmt.Errorf("%w: limit must be 1 to %d", ErrInvalidFilter, MaxPage)
	}
	if f.BeforeSeq < 0 || f.AfterSeq < 0 {
		return fmt.Errorf("%w: sequence numbers are positive", ErrInvalidFilter)
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		return fmt.Errorf("%w: from must be before to", ErrInvalidFilter)
	}
	for _, v := range []string{f.Actor, f.Target, f.Action} {
		if len(v) > maxFieldLen {
			return fmt.Errorf("%w: a value longer than %d bytes matches nothing", ErrInvalidFilter, maxFieldLen)
		}
	}
	if f.Action == "*" {
		return fmt.Errorf("%w: action \"*\" alone: leave it out to match every action", ErrInvalidFilter)
	}
	return nil
}

func (f Filter) store() store.AuditFilter {
	sf := store.AuditFilter{
		Actor: f.Actor, Target: f.Target, Outcome: f.Outcome, Action: f.Action,
		BeforeSeq: f.BeforeSeq, AfterSeq: f.AfterSeq, Ascending: f.Oldest, Limit: f.Limit,
	}
	if p, ok := strings.CutSuffix(f.Action, "*"); ok {
		sf.Action, sf.ActionPrefix = p, true
	}
	if !f.From.IsZero() {
		sf.FromUS = micros(f.From)
	}
	if !f.To.IsZero() {
		sf.ToUS = micros(f.To)
	}
	return sf
}

// micros is t in microseconds since the epoch, rounded up so that a bound
// with nanoseconds keeps its meaning for entries stored to the
// microsecond: at >= from and at < to hold alike before and after.
func micros(t time.Time) int64 {
	us := t.UnixMicro()
	if t.Sub(time.UnixMicro(us)) > 0 {
		us++
	}
	if us == 0 {
		us = 1 // 0 means "no bound" to the store
	}
	return us
}

// Query returns the entries that match f, paged by sequence number.
func (l *Log) Query(ctx context.Context, f Filter) ([]Entry, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	recs, err := l.store.QueryAudit(ctx, f.store())
	if err != nil {
		return nil, err
	}
	out := make([]Entry, len(recs))
	for i, r := range recs {
		out[i] = entryOf(r)
	}
	return out, nil
}

// Page is Query for paging backwards through the log: the newest entries
// that match f, and the BeforeSeq that asks for the next page (0 when
// there is none).
func (l *Log) Page(ctx context.Context, f Filter) ([]Entry, int64, error) {
	f.Oldest, f.AfterSeq = false, 0
	if err := f.Validate(); err != nil {
		return nil, 0, err
	}
	sf := f.store()
	sf.Limit++ // one more than asked tells whether there is another page
	recs, err := l.store.QueryAudit(ctx, sf)
	if err != nil {
		return nil, 0, err
	}
	var next int64
	if len(recs) > f.Limit {
		recs = recs[:f.Limit]
		next = recs[f.Limit-1].Seq
	}
	out := make([]Entry, len(recs))
	for i, r := range recs {
		out[i] = entryOf(r)
	}
	return out, next, nil
}

// Count is how many entries of one action and outcome fell into one
// bucket of a Histogram.
type Count struct {
	Start   time.Time // the bucket's start
	Action  string
	Outcome string
	N       int64
}

// Histogram counts the entries of the given actions recorded in
// [from, to), by action, outcome and bucket of width bucket (buckets start
// at from). Only buckets with entries are returned.
func (l *Log) Histogram(ctx context.Context, from, to time.Time, bucket time.Duration, actions []string) ([]Count, error) {
	if bucket < time.Microsecond || !from.Before(to) || len(actions) == 0 {
		return nil, fmt.Errorf("%w: empty histogram", ErrInvalidFilter)
	}
	fromUS, toUS, widthUS := from.UnixMicro(), to.UnixMicro(), bucket.Microseconds()
	rows, err := l.store.CountAuditByBucket(ctx, fromUS, toUS, widthUS, actions)
	if err != nil {
		return nil, err
	}
	out := make([]Count, len(rows))
	for i, r := range rows {
		out[i] = Count{Start: time.UnixMicro(fromUS + r.Bucket*widthUS).UTC(), Action: r.Action, Outcome: r.Outcome, N: r.Count}
	}
	return out, nil
}

// Head is the stored head of the chain and how many rows the log holds,
// for reports next to Verify.
type Head struct {
	Seq  int64
	Hash string
	Rows int64
}

// StoredHead reads the chain's stored head and row count.
func StoredHead(ctx context.Context, s *store.Store) (Head, error) {
	h, err := s.AuditHead(ctx)
	if err != nil {
		return Head{}, err
	}
	n, err := s.CountAuditRows(ctx)
	if err != nil {
		return Head{}, err
	}
	return Head{Seq: h.Seq, Hash: h.Hash, Rows: n}, nil
}

// VerifyLive is Verify for a log that is being written to: it walks the
// chain up to the head as stored when it starts, so that entries appended
// meanwhile are not taken for a tail the head does not know. Entries stored
// beyond the head (appended behind Parley's back without moving it) still
// break the chain. The result is the entries verified and their head.
func VerifyLive(ctx context.Context, s *store.Store) (VerifyResult, error) {
	head, err := s.AuditHead(ctx)
	if err != nil {
		return VerifyResult{}, err
	}
	prev := store.AuditHead{Seq: 0, Hash: GenesisHash}
	err = s.ScanAuditThrough(ctx, head.Seq, func(r store.AuditRecord) error {
		want := prev.Seq + 1
		switch {
		case r.Seq != want:
			return &BrokenError{Seq: want, Reason: fmt.Sprintf("entry is missing (next stored entry is %d)", r.Seq)}
		case r.PrevHash != prev.Hash:
			return &BrokenError{Seq: r.Seq, Reason: "previous-hash link does not match the entry before it (removed, inserted or reordered)"}
		case hashRecord(r) != r.Hash:
			return &BrokenError{Seq: r.Seq, Reason: "content does not match its hash (edited)"}
		}
		prev = store.AuditHead{Seq: r.Seq, Hash: r.Hash}
		return nil
	})
	if err != nil {
		return VerifyResult{}, err
	}
	if prev.Seq != head.Seq {
		return VerifyResult{}, &BrokenError{Seq: prev.Seq + 1, Reason: fmt.Sprintf("entry is missing (the head says the log ends at %d)", head.Seq)}
	}
	if prev.Hash != head.Hash {
		return VerifyResult{}, &BrokenError{Seq: prev.Seq, Reason: "the stored head does not match the last entry"}
	}
	// Rows past the head: read the highest row first, then the head again,
	// so that a legitimate append in between (row and head move together)
	// is never taken for one.
	maxSeq, err := s.MaxAuditSeq(ctx)
	if err != nil {
		return VerifyResult{}, err
	}
	now, err := s.AuditHead(ctx)
	if err != nil {
		return VerifyResult{}, err
	}
	if maxSeq > now.Seq {
		extra, err := s.QueryAudit(ctx, store.AuditFilter{AfterSeq: now.Seq, Ascending: true, Limit: 1})
		if err != nil {
			return VerifyResult{}, err
		}
		at := now.Seq + 1
		if len(extra) == 1 {
			at = extra[0].Seq
		}
		return VerifyResult{}, &BrokenError{Seq: at, Reason: fmt.Sprintf("entry stored after the head (the head says the log ends at %d)", now.Seq)}
	}
	return VerifyResult{Count: prev.Seq, Head: prev.Hash}, nil
}

// Package audit owns Parley's security log: an append-only chain of events
// (who, what, on what, the outcome, from where, when in UTC) kept in the
// store. Each entry carries the hash of the one before it and its own hash
// over that and a canonical encoding of the entry, so that editing, deleting
// or reordering any stored row is found by Verify (`parley audit verify`).
//
// Audit events are not logs: callers record them here, never through slog.
// Details must never carry a secret (password, TOTP code or seed, token,
// session id, TURN password); Record refuses the keys that name one.
package audit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/parley-meet/parley/store"
)

// Outcomes of an event.
const (
	Success = "success"
	Failure = "failure"
	Denied  = "denied"
)

// GenesisHash is the previous hash of the first entry.
const GenesisHash = "0000000000000000000000000000000000000000000000000000000000000000"

// Limits on the fields of an event, so that a client cannot grow the log
// with one request.
const (
	maxFieldLen   = 256
	maxDetailsLen = 8 << 10
)

// Event is one security-relevant happening.
type Event struct {
	Actor    string         // who acted: "user:<id>", "system", "anonymous", ...
	Action   string         // what was attempted, e.g. "auth.login"
	Target   string         // what it was done to, e.g. "room:<id>"; may be empty
	Outcome  string         // Success, Failure or Denied
	ClientIP string         // where from; empty for the system itself
	Details  map[string]any // extra facts; never secrets
}

// Entry is a recorded event as it stands in the chain.
type Entry struct {
	Seq      int64
	At       time.Time
	Actor    string
	Action   string
	Target   string
	Outcome  string
	ClientIP string
	Details  json.RawMessage
	PrevHash string
	Hash     string
}

// Log appends events to the chain.
type Log struct {
	store *store.Store
	now   func() time.Time

	observers atomic.Pointer[[]func(Entry)]
}

// Observe calls f with every entry recorded from now on, after it is
// stored, in the recording goroutine (metrics count them); f must be quick
// and must not record.
func (l *Log) Observe(f func(Entry)) {
	for {
		old := l.observers.Load()
		var fs []func(Entry)
		if old != nil {
			fs = append(fs, *old...)
		}
		fs = append(fs, f)
		if l.observers.CompareAndSwap(old, &fs) {
			return
		}
	}
}

// New returns a Log over s. now may be nil (time.Now).
func New(s *store.Store, now func() time.Time) *Log {
	if now == nil {
		now = time.Now
	}
	return &Log{store: s, now: now}
}

// secretKeys are detail keys that must never be recorded: a value under one
// of these names is a secret by definition.
var secretKeys = map[string]bool{
	"password": true, "secret": true, "token": true, "code": true, "totp": true, "otp": true,
	"seed": true, "session": true, "session_id": true, "cookie": true, "credential": true,
	"turn_password": true, "recovery_code": true,
}

// ErrInvalidEvent is returned for an event that cannot be recorded as given.
var ErrInvalidEvent = errors.New("invalid audit event")

// Record appends e to the chain and returns the stored entry.
func (l *Log) Record(ctx context.Context, e Event) (Entry, error) {
	if e.Actor == "" || e.Action == "" {
		return Entry{}, fmt.Errorf("%w: actor and action are required", ErrInvalidEvent)
	}
	switch e.Outcome {
	case Success, Failure, Denied:
	default:
		return Entry{}, fmt.Errorf("%w: outcome %q", ErrInvalidEvent, e.Outcome)
	}
	for k := range e.Details {
		if secretKeys[strings.ToLower(k)] {
			return Entry{}, fmt.Errorf("%w: detail key %q names a secret", ErrInvalidEvent, k)
		}
	}
	details := []byte("{}")
	if len(e.Details) > 0 {
		var err error
		// encoding/json writes map keys sorted, so this is canonical.
		if details, err = json.Marshal(e.Details); err != nil {
			return Entry{}, fmt.Errorf("%w: details: %v", ErrInvalidEvent, err)
		}
	}
	if len(details) > maxDetailsLen {
		return Entry{}, fmt.Errorf("%w: details longer than %d bytes", ErrInvalidEvent, maxDetailsLen)
	}
	at := l.now().UTC().Truncate(time.Microsecond)
	rec, err := l.store.AppendAudit(ctx, func(head store.AuditHead) (store.AuditRecord, error) {
		r := store.AuditRecord{
			Seq:      head.Seq + 1,
			AtMicros: at.UnixMicro(),
			Actor:    clip(e.Actor),
			Action:   clip(e.Action),
			Target:   clip(e.Target),
			Outcome:  e.Outcome,
			ClientIP: clip(e.ClientIP),
			Details:  string(details),
			PrevHash: head.Hash,
		}
		r.Hash = hashRecord(r)
		return r, nil
	})
	if err != nil {
		return Entry{}, fmt.Errorf("record audit event %s: %w", e.Action, err)
	}
	entry := entryOf(rec)
	if fs := l.observers.Load(); fs != nil {
		for _, f := range *fs {
			f(entry)
		}
	}
	return entry, nil
}

// clip makes a field valid UTF-8 without NUL bytes (PostgreSQL's text
// refuses both) and bounds its length, cutting at a rune boundary.
func clip(s string) string {
	s = strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", ""), "\uFFFD")
	if len(s) <= maxFieldLen {
		return s
	}
	cut := maxFieldLen
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

func entryOf(r store.AuditRecord) Entry {
	return Entry{
		Seq: r.Seq, At: time.UnixMicro(r.AtMicros).UTC(), Actor: r.Actor, Action: r.Action,
		Target: r.Target, Outcome: r.Outcome, ClientIP: r.ClientIP,
		Details: json.RawMessage(r.Details), PrevHash: r.PrevHash, Hash: r.Hash,
	}
}

// hashRecord is SHA-256 over the previous hash, a newline and the canonical
// encoding of the entry: a JSON array of its fields in a fixed order (JSON
// strings escape every byte unambiguously, so no two entries share an
// encoding).
func hashRecord(r store.AuditRecord) string {
	canonical, err := json.Marshal([]any{
		r.Seq, r.AtMicros, r.Actor, r.Action, r.Target, r.Outcome, r.ClientIP, r.Details,
	})
	if err != nil {
		// Marshalling ints and strings cannot fail.
		panic(err)
	}
	h := sha256.New()
	h.Write([]byte(r.PrevHash))
	h.Write([]byte{'\n'})
	h.Write(canonical)
	return hex.EncodeToString(h.Sum(nil))
}

// VerifyResult is the outcome of walking an intact chain.
type VerifyResult struct {
	Count int64
	Head  string
}

// BrokenError names the first entry at which the chain does not hold.
type BrokenError struct {
	Seq    int64 // sequence number of the first broken entry
	Reason string
}

func (e *BrokenError) Error() string {
	return fmt.Sprintf("audit chain broken at entry %d: %s", e.Seq, e.Reason)
}

// Verify walks the whole chain in sequence order. It returns the number of
// entries and the head hash, or a *BrokenError for the first entry that was
// edited, removed, inserted or moved, or that disagrees with the stored head.
// It is safe while the log is written to (VerifyLive).
func Verify(ctx context.Context, s *store.Store) (VerifyResult, error) {
	return VerifyLive(ctx, s)
}

package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"filippo.io/age"

	"github.com/parley-meet/parley/audit"
	"github.com/parley-meet/parley/config"
	"github.com/parley-meet/parley/recording"
	"github.com/parley-meet/parley/store"
)

// retentionInterval is how often expired recordings are looked for.
const retentionInterval = time.Hour

// startRecording opens the recording catalog and keys. It returns nil and
// 0 when recording is off, nil and an exit code on a configuration error.
// Recordings a crash left unfinished are marked incomplete.
func startRecording(ctx context.Context, cfg *config.Config, st *store.Store, rec auditRecorder, log *slog.Logger, e env) (*recording.Manager, int) {
	if !cfg.Recording {
		log.Info("recording is off (--recording=false)")
		return nil, 0
	}
	var recipients []age.Recipient
	var identities []age.Identity
	if len(cfg.RecordingRecipients) > 0 {
		rs, err := age.ParseRecipients(strings.NewReader(strings.Join(cfg.RecordingRecipients, "\n")))
		if err != nil {
			fmt.Fprintf(e.stderr, "parley: invalid value for option --recording-recipients: %v\n", err)
			return nil, 2
		}
		recipients = rs
	}
	switch {
	case cfg.RecordingIdentityFile != "":
		f, err := os.Open(cfg.RecordingIdentityFile)
		if err != nil {
			fmt.Fprintf(e.stderr, "parley: invalid value for option --recording-identity-file: %v\n", err)
			return nil, 2
		}
		ids, err := age.ParseIdentities(f)
		f.Close()
		if err != nil {
			fmt.Fprintf(e.stderr, "parley: invalid value for option --recording-identity-file: not an age identity file\n")
			return nil, 2
		}
		identities = ids
	case len(recipients) == 0:
		id, err := recording.LoadOrCreateIdentity(cfg.DataDir)
		if err != nil {
			fmt.Fprintf(e.stderr, "parley: recording identity: %v\n", err)
			return nil, 1
		}
		identities = []age.Identity{id}
		recipients = []age.Recipient{id.Recipient()}
	}
	if len(recipients) == 0 {
		// An identity file without recipients: encrypt to the identity.
		for _, id := range identities {
			if x, ok := id.(*age.X25519Identity); ok {
				recipients = append(recipients, x.Recipient())
			}
		}
		if len(recipients) == 0 {
			fmt.Fprintf(e.stderr, "parley: invalid value for option --recording-identity-file: give --recording-recipients too\n")
			return nil, 2
		}
	}
	m, err := recording.New(recording.Config{Dir: cfg.RecordingPath(), Recipients: recipients, Identities: identities,
		Store: st, Logger: log})
	if err != nil {
		fmt.Fprintf(e.stderr, "parley: recordings: %v (check --recording-dir)\n", err)
		return nil, 1
	}
	n, err := m.Recover(ctx)
	if err != nil {
		m.Close()
		fmt.Fprintf(e.stderr, "parley: recordings: %v\n", err)
		return nil, 1
	}
	if n > 0 {
		log.Warn("recordings left unfinished by a crash are marked incomplete", "count", n)
		rec.Record(ctx, audit.Event{Actor: "system", Action: "recording.recover", Outcome: audit.Success,
			Details: map[string]any{"incomplete": n}})
	}
	playable := "yes"
	if len(identities) == 0 {
		playable = "no (no identity on this node)"
	}
	log.Info("recording on", "dir", cfg.RecordingPath(), "recipients", len(recipients), "playable_here", playable,
		"retention", cfg.RecordingRetention.String())
	return m, 0
}

// runRetention deletes expired recordings every interval until ctx ends,
// auditing each; wg.Done when it returns.
func runRetention(ctx context.Context, m *recording.Manager, global time.Duration, rec auditRecorder, log *slog.Logger, interval time.Duration, wg *sync.WaitGroup) {
	defer wg.Done()
	sweep := func() {
		gone, err := m.DeleteExpired(ctx, time.Now(), global)
		if err != nil && ctx.Err() == nil {
			log.Error("deleting expired recordings", "err", err)
		}
		for _, r := range gone {
			rec.Record(context.Background(), audit.Event{Actor: "system", Action: "recording.expire", Target: "recording:" + r.ID,
				Outcome: audit.Success, Details: map[string]any{"room": r.RoomID, "started_at": r.StartedAt.UTC().Format(time.RFC3339)}})
		}
	}
	sweep()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			sweep()
		}
	}
}

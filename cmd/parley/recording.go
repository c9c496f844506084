package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
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

// recoveryInterval is how often, in multi-node mode, the recordings of
// nodes that are gone are looked for.
const recoveryInterval = 30 * time.Second

// startRecording opens the recording catalog and keys. It returns nil and
// 0 when recording is off, nil and an exit code on a configuration error.
// On a single node, recordings a crash left unfinished are marked
// incomplete here; in multi-node mode runRecovery does it once the node
// has joined the cluster (its id is then known to be its own).
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
		Store: st, Logger: log, Node: cfg.NodeID})
	if err != nil {
		fmt.Fprintf(e.stderr, "parley: recordings: %v (check --recording-dir)\n", err)
		return nil, 1
	}
	if !cfg.Clustered() {
		n, err := m.Recover(ctx, nil)
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
	every(ctx, interval, sweep)
}

// randomNodeID is the id of a node started in multi-node mode without
// --node-id. It is chosen before the recordings open (cmdServe), so that
// the recordings started here carry the id the node registers with.
func randomNodeID() string {
	b := make([]byte, 6)
	rand.Read(b)
	return "node-" + hex.EncodeToString(b)
}

// clusterView is what runRecovery needs of the cluster node.
type clusterView interface {
	Healthy() bool
	Live(id string) bool
}

// runRecovery, in multi-node mode, marks as incomplete at once, then
// every interval until ctx ends, the recordings left unfinished by this
// node (a former process with the same --node-id) and by nodes that are
// no longer live (recording.Manager.Recover), auditing how many; wg.Done
// when it returns. While Redis cannot be reached the view of the live
// nodes is stale: every node counts as live and only this node's own
// recordings are recovered.
func runRecovery(ctx context.Context, m *recording.Manager, node clusterView, rec auditRecorder, log *slog.Logger, interval time.Duration, wg *sync.WaitGroup) {
	defer wg.Done()
	live := func(id string) bool { return !node.Healthy() || node.Live(id) }
	sweep := func() {
		n, err := m.Recover(ctx, live)
		if err != nil && ctx.Err() == nil {
			log.Error("recovering interrupted recordings", "err", err)
		}
		if n > 0 {
			log.Warn("recordings left unfinished by this node or by a node that is gone are marked incomplete", "count", n)
			rec.Record(context.Background(), audit.Event{Actor: "system", Action: "recording.recover", Outcome: audit.Success,
				Details: map[string]any{"incomplete": n}})
		}
	}
	sweep()
	every(ctx, interval, sweep)
}

package main

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/parley-meet/parley/recording"
	"github.com/parley-meet/parley/store"
	"github.com/parley-meet/parley/store/storetest"
)

// recoveryCluster plays the cluster node for runRecovery.
type recoveryCluster struct {
	mu      sync.Mutex
	healthy bool
	live    map[string]bool
}

func (f *recoveryCluster) Healthy() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.healthy
}

func (f *recoveryCluster) Live(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.live[id]
}

// runRecovery recovers this node's recordings at once, and a gone node's
// only while Redis answers (the view of the live nodes is fresh); never a
// live node's. Each sweep that changes something is audited.
func TestRunRecovery(t *testing.T) {
	ctx := context.Background()
	st, _ := storetest.Targets()[0].Open(t)
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	m, err := recording.New(recording.Config{Dir: filepath.Join(t.TempDir(), "rec"), Recipients: []age.Recipient{id.Recipient()},
		Identities: []age.Identity{id}, Store: st, Node: "node-a"})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	old := time.Now().Add(-time.Hour).UnixMicro()
	for _, r := range []store.Recording{
		{ID: "own", Node: "node-a"}, {ID: "gone", Node: "node-c"}, {ID: "live", Node: "node-b"},
	} {
		r.RoomID, r.StartedBy, r.StartedUS, r.Status = "room-"+r.ID, "user:u1", old, recording.StatusRecording
		if err := st.CreateRecording(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	status := func(id string) string {
		r, err := m.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return r.Status
	}
	cl := &recoveryCluster{live: map[string]bool{"node-a": true, "node-b": true}} // Redis down at first
	audit := &fakeRecorder{}
	rctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go runRecovery(rctx, m, cl, audit, slog.New(slog.DiscardHandler), 20*time.Millisecond, &wg)
	defer func() { stop(); wg.Wait() }()

	waitRecovery(t, func() bool { return status("own") == recording.StatusIncomplete }, "this node's recording recovered at once")
	time.Sleep(100 * time.Millisecond) // several sweeps
	if status("gone") != recording.StatusRecording || status("live") != recording.StatusRecording {
		t.Errorf("recovered while Redis is down: gone %s, live %s", status("gone"), status("live"))
	}
	cl.mu.Lock()
	cl.healthy = true
	cl.mu.Unlock()
	waitRecovery(t, func() bool { return status("gone") == recording.StatusIncomplete }, "the gone node's recording recovered")
	time.Sleep(100 * time.Millisecond)
	if s := status("live"); s != recording.StatusRecording {
		t.Errorf("a live node's recording: %s", s)
	}
	stop()
	wg.Wait()
	events := audit.all()
	if len(events) != 2 {
		t.Fatalf("audit events = %+v, want one per sweep that changed something", events)
	}
	for _, e := range events {
		if e.Action != "recording.recover" || e.Actor != "system" || e.Details["incomplete"] != 1 {
			t.Errorf("audit event %+v", e)
		}
	}
}

func waitRecovery(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A node started in multi-node mode without --node-id gets a random id
// of the form the registry accepts.
func TestRandomNodeID(t *testing.T) {
	a, b := randomNodeID(), randomNodeID()
	if a == b || !strings.HasPrefix(a, "node-") || len(a) != 17 || strings.Trim(a[5:], "0123456789abcdef") != "" {
		t.Errorf("randomNodeID = %q, %q", a, b)
	}
}

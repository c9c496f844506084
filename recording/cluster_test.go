package recording_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-meet/parley/recording"
	"github.com/parley-meet/parley/sfu"
	"github.com/parley-meet/parley/store"
)

// liveSet plays the cluster's registry: which nodes are live.
type liveSet struct {
	mu    sync.Mutex
	nodes map[string]bool
	asked []string
}

func newLiveSet(nodes ...string) *liveSet {
	l := &liveSet{nodes: map[string]bool{}}
	for _, n := range nodes {
		l.nodes[n] = true
	}
	return l
}

func (l *liveSet) live(node string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.asked = append(l.asked, node)
	return l.nodes[node]
}

func (l *liveSet) kill(node string) {
	l.mu.Lock()
	delete(l.nodes, node)
	l.mu.Unlock()
}

// A node that dies mid-recording (SIGKILL) leaves its recording
// "recording": another node leaves it alone while the node is live, and
// recovers it, measuring the file in the shared directory, once it is not.
func TestRecoverAnotherNodesRecording(t *testing.T) {
	e := newEnv(t)
	t0 := time.Date(2026, 11, 26, 14, 0, 0, 0, time.UTC)
	e.clock = &fakeClock{now: t0}
	ctx := context.Background()

	b := e.managerOn("node-b")
	src := &fakeSource{}
	rec, err := b.Start(ctx, src, recording.StartOptions{RoomID: "r", StartedBy: "user:u1", Names: func(string) string { return "Ann" }})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Node != "node-b" {
		t.Errorf("Start returned node %q", rec.Node)
	}
	v := src.publish(t, sfu.TrackInfo{ID: "cam", Participant: "p1", Kind: "video", Source: "camera"}, vp8)
	a := src.publish(t, sfu.TrackInfo{ID: "mic", Participant: "p1", Kind: "audio", Source: "microphone"}, opus)
	stream(v, a, 2*time.Second, 5000, 10, false)
	eventually(t, 5*time.Second, func() bool {
		r, _ := b.Get(ctx, rec.ID)
		return len(r.Tracks) == 1
	}, "the file is in the catalog")
	b.SimulateCrash()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	r, _ := b.Get(ctx, rec.ID)
	if r.Node != "node-b" || r.Status != recording.StatusRecording {
		t.Fatalf("in the catalog: %+v", r)
	}
	prefix, _ := decryptFile(t, e.trackFile(rec.ID, r.Tracks[0].ID), e.id)

	other := e.managerOn("node-a")
	cluster := newLiveSet("node-a", "node-b")
	e.clock.Set(t0.Add(time.Hour))
	if n, err := other.Recover(ctx, cluster.live); err != nil || n != 0 {
		t.Fatalf("Recover while node-b is live = %d, %v", n, err)
	}
	if r, _ := other.Get(ctx, rec.ID); r.Status != recording.StatusRecording || r.Tracks[0].Status != recording.StatusRecording || !r.EndedAt.IsZero() {
		t.Errorf("a live node's recording was changed: %+v", r)
	}

	cluster.kill("node-b")
	if n, err := other.Recover(ctx, cluster.live); err != nil || n != 1 {
		t.Fatalf("Recover once node-b is gone = %d, %v", n, err)
	}
	if n, _ := other.Recover(ctx, cluster.live); n != 0 {
		t.Errorf("a second Recover changed %d", n)
	}
	r, _ = other.Get(ctx, rec.ID)
	tr := r.Tracks[0]
	if r.Status != recording.StatusIncomplete || r.Node != "node-b" || r.EndedAt.IsZero() ||
		tr.Status != recording.StatusIncomplete || tr.Size != int64(len(prefix)) || tr.Duration < 500*time.Millisecond {
		t.Errorf("recovered: %+v, track %+v (decryptable %d)", r, tr, len(prefix))
	}
	md, err := other.Open(ctx, rec.ID, tr.ID)
	if err != nil {
		t.Fatalf("open the recovered file on another node: %v", err)
	}
	if !md.Incomplete || md.Size <= 0 {
		t.Errorf("media: incomplete %v, size %d", md.Incomplete, md.Size)
	}
	md.Close()
}

// fileName is a name the recorder could have made, for a file that does
// not exist.
func fileName(c byte) string { return strings.Repeat(string(c), 22) + ".webm.age" }

// Recover on a cluster: this node's interrupted recordings, and those of
// nodes that are gone once they are OrphanAge old; never a live node's,
// nor one this manager is making.
func TestRecoverOnACluster(t *testing.T) {
	e := newEnv(t)
	now := time.Date(2026, 11, 26, 14, 0, 0, 0, time.UTC)
	e.clock = &fakeClock{now: now}
	ctx := context.Background()
	old := now.Add(-time.Hour).UnixMicro()
	type row struct {
		id, node string
		started  int64
		file     string
	}
	rows := []row{
		{"own", "node-a", now.Add(-5 * time.Second).UnixMicro(), fileName('A')},
		{"live", "node-b", old, fileName('B')},
		{"dead", "node-c", old, fileName('C')},
		{"young", "node-c", now.Add(-10 * time.Second).UnixMicro(), fileName('D')},
		{"legacy", "", old, fileName('E')},
	}
	for _, r := range rows {
		if err := e.store.CreateRecording(ctx, store.Recording{ID: r.id, RoomID: "room-" + r.id, StartedBy: "user:u1",
			StartedUS: r.started, Status: recording.StatusRecording, Node: r.node}); err != nil {
			t.Fatal(err)
		}
		// The last progress saved: 4 s, 1234 bytes; the file is not in
		// this node's directory.
		if err := e.store.AddRecordingTrack(ctx, store.RecordingTrack{ID: "t-" + r.id, RecordingID: r.id, File: r.file, Kind: "av",
			ParticipantID: "p1", Codecs: "[]", StartedUS: r.started + 1000, DurationMS: 4000, Size: 1234, Status: recording.StatusRecording}); err != nil {
			t.Fatal(err)
		}
	}
	m := e.managerOn("node-a")
	// A recording this node is making now is not touched.
	active, err := m.Start(ctx, &fakeSource{}, recording.StartOptions{RoomID: "room-active", StartedBy: "user:u1"})
	if err != nil {
		t.Fatal(err)
	}
	cluster := newLiveSet("node-a", "node-b")
	n, err := m.Recover(ctx, cluster.live)
	if err != nil || n != 3 {
		t.Fatalf("Recover = %d, %v; want own, dead and legacy", n, err)
	}
	status := func(id string) (recording.Recording, recording.Track) {
		t.Helper()
		r, err := m.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		var tr recording.Track
		if len(r.Tracks) > 0 {
			tr = r.Tracks[0]
		}
		return r, tr
	}
	// Its own recording: a missing file failed, as on a single node.
	if r, tr := status("own"); r.Status != recording.StatusIncomplete || tr.Status != recording.StatusFailed || tr.Note != "the file is missing" {
		t.Errorf("own: %+v, track %+v", r, tr)
	}
	// A gone node's: the file is not here, the saved progress is kept.
	for _, id := range []string{"dead", "legacy"} {
		r, tr := status(id)
		if r.Status != recording.StatusIncomplete || tr.Status != recording.StatusIncomplete || tr.Size != 1234 ||
			tr.Duration != 4*time.Second || !r.EndedAt.Equal(time.UnixMicro(old+1000).Add(4*time.Second)) {
			t.Errorf("%s: %+v, track %+v", id, r, tr)
		}
	}
	for _, id := range []string{"live", "young", active.ID} {
		if r, tr := status(id); r.Status != recording.StatusRecording || !r.EndedAt.IsZero() || (id != active.ID && tr.Status != recording.StatusRecording) {
			t.Errorf("%s was changed: %+v, track %+v", id, r, tr)
		}
	}
	if len(cluster.asked) == 0 || strings.Contains(strings.Join(cluster.asked, ","), "node-a") {
		t.Errorf("live was asked about %v (not about this node itself)", cluster.asked)
	}

	// Once OrphanAge old, the recording of the gone node is recovered too;
	// the live node's still is not.
	e.clock.Set(now.Add(recording.OrphanAge))
	if n, err := m.Recover(ctx, cluster.live); err != nil || n != 1 {
		t.Errorf("Recover after OrphanAge = %d, %v; want young", n, err)
	}
	if r, _ := status("young"); r.Status != recording.StatusIncomplete {
		t.Errorf("young: %+v", r)
	}
	if r, _ := status("live"); r.Status != recording.StatusRecording {
		t.Errorf("live: %+v", r)
	}
	cluster.kill("node-b")
	if n, err := m.Recover(ctx, cluster.live); err != nil || n != 1 {
		t.Errorf("Recover once node-b is gone = %d, %v", n, err)
	}
	if r, _ := status(active.ID); r.Status != recording.StatusRecording {
		t.Errorf("the active recording: %+v", r)
	}
	if _, err := m.Stop(ctx, "room-active"); err != nil {
		t.Fatal(err)
	}
	if r, _ := status(active.ID); r.Status != recording.StatusComplete || r.Node != "node-a" {
		t.Errorf("stopped: %+v", r)
	}
}

// On a single node (live nil) no other node can be recording: every
// recording left "recording", whatever its node, is recovered at once.
func TestRecoverSingleNodeTakesEveryNode(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for i, node := range []string{"", "node-x"} {
		if err := e.store.CreateRecording(ctx, store.Recording{ID: fmt.Sprintf("rec%d", i), RoomID: "r", StartedBy: "user:u1",
			StartedUS: time.Now().UnixMicro(), Status: recording.StatusRecording, Node: node}); err != nil {
			t.Fatal(err)
		}
	}
	m := e.manager()
	if n, err := m.Recover(ctx, nil); err != nil || n != 2 {
		t.Errorf("Recover = %d, %v", n, err)
	}
}

// Nodes recovering a gone node's recordings at the same time change each
// recording once.
func TestRecoverConcurrently(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	const recs = 20
	for i := range recs {
		id := fmt.Sprintf("rec%02d", i)
		if err := e.store.CreateRecording(ctx, store.Recording{ID: id, RoomID: "r" + id, StartedBy: "user:u1",
			StartedUS: time.Now().Add(-time.Hour).UnixMicro(), Status: recording.StatusRecording, Node: "node-gone"}); err != nil {
			t.Fatal(err)
		}
		if err := e.store.AddRecordingTrack(ctx, store.RecordingTrack{ID: "t" + id, RecordingID: id, File: fileName('Z'), Kind: "av",
			Codecs: "[]", StartedUS: 1, DurationMS: 1000, Size: 10, Status: recording.StatusRecording}); err != nil {
			t.Fatal(err)
		}
	}
	cluster := newLiveSet("node-a", "node-b", "node-c")
	managers := []*recording.Manager{e.managerOn("node-a"), e.managerOn("node-b"), e.managerOn("node-c")}
	counts := make([]int, len(managers))
	var wg sync.WaitGroup
	for i, m := range managers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := m.Recover(ctx, cluster.live)
			if err != nil {
				t.Errorf("node %d: %v", i, err)
			}
			counts[i] = n
		}()
	}
	wg.Wait()
	if total := counts[0] + counts[1] + counts[2]; total != recs {
		t.Errorf("the nodes changed %v recordings, %d in all; want %d", counts, total, recs)
	}
	list, _ := managers[0].List(ctx)
	for _, r := range list {
		if r.Status != recording.StatusIncomplete || r.Tracks[0].Status != recording.StatusIncomplete || r.Tracks[0].Size != 10 {
			t.Errorf("%s: %+v", r.ID, r)
		}
	}
}

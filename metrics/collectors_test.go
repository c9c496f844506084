package metrics_test

import (
	"bytes"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"

	"github.com/parley-meet/parley/audit"
	"github.com/parley-meet/parley/metrics"
	"github.com/parley-meet/parley/sfu"
	"github.com/parley-meet/parley/signaling"
	"github.com/parley-meet/parley/turn"
)

// fakeRoom is a media room whose stats the test sets.
type fakeRoom struct {
	mu    sync.Mutex
	stats []sfu.ParticipantStats
}

func (r *fakeRoom) Stats() []sfu.ParticipantStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]sfu.ParticipantStats(nil), r.stats...)
}

func (r *fakeRoom) set(ps ...sfu.ParticipantStats) {
	r.mu.Lock()
	r.stats = ps
	r.mu.Unlock()
}

type fakeMedia struct {
	mu    sync.Mutex
	rooms []metrics.MediaRoom
}

func (m *fakeMedia) MediaRooms() []metrics.MediaRoom {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]metrics.MediaRoom(nil), m.rooms...)
}

type fakeHub struct {
	stats signaling.Stats
	live  []signaling.LiveRoom
}

func (h *fakeHub) Stats() signaling.Stats     { return h.stats }
func (h *fakeHub) Live() []signaling.LiveRoom { return h.live }

type fakeTURN struct{ st turn.Stats }

func (f *fakeTURN) Stats() turn.Stats { return f.st }

type fakeRecorder struct{ n int }

func (f *fakeRecorder) ActiveCount() int { return f.n }

func track(id, kind, source string) sfu.TrackInfo {
	return sfu.TrackInfo{ID: id, Kind: kind, Source: source}
}

// publisher publishes a microphone and a two-layer simulcast camera.
func publisher(id string, packets uint64) sfu.ParticipantStats {
	return sfu.ParticipantStats{
		ID: id, ConnectionState: "connected", Transport: "tcp", RefusedCandidates: 2,
		Published: []sfu.TrackStats{
			{TrackInfo: track("mic", "audio", "microphone"), Packets: packets, PacketsLost: 1, Bitrate: 32000},
			{TrackInfo: track("cam", "video", "camera"), Layer: "h", Packets: 2 * packets, PacketsLost: 2, KeyframeRequests: 3, BadPackets: 5, Bitrate: 1000000},
			{TrackInfo: track("cam", "video", "camera"), Layer: "l", Packets: packets, KeyframeRequests: 1, BadPackets: 5, Bitrate: 200000},
		},
	}
}

// subscriber receives the microphone and the camera.
func subscriber(id string, mic, cam uint64) sfu.ParticipantStats {
	return sfu.ParticipantStats{
		ID: id, ConnectionState: "connected", Transport: "udp",
		Subscribed: []sfu.TrackStats{
			{TrackInfo: track("mic", "audio", "microphone"), Packets: mic, PacketsLost: 7, Bitrate: 32000},
			{TrackInfo: track("cam", "video", "camera"), Layer: "h", Packets: cam, NACKs: 5, Retransmitted: 4, KeyframeRequests: 2, Bitrate: 1000000},
		},
	}
}

func TestMediaCollector(t *testing.T) {
	reg := metrics.New("test")
	roomA, roomB := &fakeRoom{}, &fakeRoom{}
	media := &fakeMedia{rooms: []metrics.MediaRoom{roomA, roomB}}
	reg.AddMedia(media)

	roomA.set(publisher("p1", 100), subscriber("p2", 100, 50),
		sfu.ParticipantStats{ID: "p3", ConnectionState: "something new"})
	// The same participant id in another room is another participant.
	roomB.set(subscriber("p2", 20, 0))
	f := families(t, reg.Gatherer())
	checks := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"parley_media_rooms", nil, 2},
		{"parley_media_participants", []string{"state=connected"}, 3},
		{"parley_media_participants", []string{"state=other"}, 1},
		{"parley_media_participants", []string{"state=failed"}, 0},
		{"parley_media_participant_transports", []string{"transport=udp"}, 2},
		{"parley_media_participant_transports", []string{"transport=tcp"}, 1},
		{"parley_media_participant_transports", []string{"transport=none"}, 1},
		// A simulcast track counts once.
		{"parley_media_published_tracks", []string{"kind=video", "source=camera"}, 1},
		{"parley_media_published_tracks", []string{"kind=audio", "source=microphone"}, 1},
		{"parley_media_published_tracks", []string{"kind=video", "source=screen"}, 0},
		{"parley_media_subscribed_tracks", []string{"kind=audio"}, 2},
		{"parley_media_subscribed_tracks", []string{"kind=video"}, 2},
		{"parley_media_received_packets_total", nil, 100 + 200 + 100},
		{"parley_media_forwarded_packets_total", nil, 100 + 50 + 20},
		{"parley_media_nacks_received_total", nil, 10},
		{"parley_media_retransmitted_packets_total", nil, 8},
		{"parley_media_keyframe_requests_total", []string{"direction=to_publishers"}, 4},
		{"parley_media_keyframe_requests_total", []string{"direction=from_subscribers"}, 4},
		{"parley_media_published_packets_lost_total", nil, 3},
		{"parley_media_subscriber_packets_lost_total", nil, 14},
		// The track's bad packets are repeated in each layer's entry.
		{"parley_media_bad_packets_total", nil, 5},
		{"parley_media_refused_candidates_total", nil, 2},
		{"parley_media_received_bits_per_second", nil, 1232000},
		{"parley_media_forwarded_bits_per_second", nil, 2064000},
	}
	for _, c := range checks {
		if got := sample(t, f, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}

	// The counters grow by what the tracks grew by.
	roomA.set(publisher("p1", 150), subscriber("p2", 130, 60),
		sfu.ParticipantStats{ID: "p3", ConnectionState: "something new"})
	f = families(t, reg.Gatherer())
	if got := sample(t, f, "parley_media_forwarded_packets_total"); got != 130+60+20 {
		t.Errorf("forwarded after growth: %v, want 210", got)
	}
	if got := sample(t, f, "parley_media_received_packets_total"); got != 150+300+150 {
		t.Errorf("received after growth: %v, want 600", got)
	}

	// Participants leave, a room closes: the totals do not go down; the
	// subscriber's reported loss going down (duplicates) takes nothing off.
	roomA.set(publisher("p1", 160))
	roomB.set(sfu.ParticipantStats{ID: "p2", ConnectionState: "connected", Transport: "udp",
		Subscribed: []sfu.TrackStats{{TrackInfo: track("mic", "audio", "microphone"), Packets: 25, PacketsLost: 3}}})
	f = families(t, reg.Gatherer())
	if got := sample(t, f, "parley_media_forwarded_packets_total"); got != 130+60+25 {
		t.Errorf("forwarded after leaving: %v, want 215", got)
	}
	if got := sample(t, f, "parley_media_subscriber_packets_lost_total"); got != 14 {
		t.Errorf("subscriber loss after a report went down: %v, want 14", got)
	}
	if got := sample(t, f, "parley_media_subscribed_tracks", "kind=video"); got != 0 {
		t.Errorf("video subscriptions after leaving: %v", got)
	}
	media.mu.Lock()
	media.rooms = []metrics.MediaRoom{roomA}
	media.mu.Unlock()
	// Room B closed; p2 comes back into room A with fresh counters: all of
	// them count.
	roomA.set(publisher("p1", 160), subscriber("p2", 10, 0))
	f = families(t, reg.Gatherer())
	if got := sample(t, f, "parley_media_forwarded_packets_total"); got != 215+10 {
		t.Errorf("forwarded after a room closed and a new subscription: %v, want 225", got)
	}
	if got := sample(t, f, "parley_media_rooms"); got != 1 {
		t.Errorf("rooms: %v", got)
	}
}

func TestComponentCollectors(t *testing.T) {
	reg := metrics.New("v1.2.3")
	hub := &fakeHub{stats: signaling.Stats{Rooms: 2, Sockets: 6}, live: []signaling.LiveRoom{
		{ID: "r1", Name: "Secret board meeting", Participants: []signaling.LiveParticipant{
			{ID: "a", Name: "Alice <script>"}, {ID: "b", Name: "Bob"}, {ID: "c", Name: "Carol", InLobby: true},
		}},
		{ID: "r2", Name: "Standup", Participants: []signaling.LiveParticipant{{ID: "d", Name: "Dave"}}},
	}}
	reg.AddHub(hub)
	reg.AddTURN(&fakeTURN{st: turn.Stats{AllocationsActive: 3, AllocationsTotal: 10, AuthFailures: 4,
		PermissionRefusals: 5, QuotaRefusals: 6, ConnectionsRefused: 7, PeerDrops: 8, RelayedBytesIn: 1000, RelayedBytesOut: 2000}})
	reg.AddRecordings(&fakeRecorder{n: 2})
	reg.ObserveJoin(300 * time.Millisecond)
	reg.ObserveJoin(2 * time.Second)

	f := families(t, reg.Gatherer())
	checks := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"parley_meetings", nil, 2},
		{"parley_meeting_participants", []string{"state=meeting"}, 3},
		{"parley_meeting_participants", []string{"state=lobby"}, 1},
		{"parley_websocket_connections", nil, 6},
		{"parley_turn_allocations", nil, 3},
		{"parley_turn_allocations_total", nil, 10},
		{"parley_turn_refusals_total", []string{"reason=auth"}, 4},
		{"parley_turn_refusals_total", []string{"reason=permission"}, 5},
		{"parley_turn_refusals_total", []string{"reason=quota"}, 6},
		{"parley_turn_refusals_total", []string{"reason=connections"}, 7},
		{"parley_turn_peer_drops_total", nil, 8},
		{"parley_turn_relayed_bytes_total", []string{"direction=in"}, 1000},
		{"parley_turn_relayed_bytes_total", []string{"direction=out"}, 2000},
		{"parley_recordings_active", nil, 2},
		{"parley_join_wait_seconds", nil, 2},
		{"parley_build_info", []string{"version=v1.2.3"}, 1},
	}
	for _, c := range checks {
		if got := sample(t, f, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	h := f["parley_join_wait_seconds"].GetMetric()[0].GetHistogram()
	if math.Abs(h.GetSampleSum()-2.3) > 1e-9 {
		t.Errorf("join wait sum %v, want 2.3", h.GetSampleSum())
	}
	for _, b := range h.GetBucket() {
		want := uint64(0)
		if b.GetUpperBound() >= 2 {
			want = 2
		} else if b.GetUpperBound() >= 0.3 {
			want = 1
		}
		if b.GetCumulativeCount() != want {
			t.Errorf("join wait bucket le=%v: %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
		}
	}
	for _, fam := range []string{"go_goroutines", "process_cpu_seconds_total"} {
		if f[fam] == nil {
			t.Errorf("no %s: the Go runtime and process collectors are missing", fam)
		}
	}

	// Names of rooms and people never reach the exposition.
	var buf bytes.Buffer
	for _, mf := range f {
		if _, err := expfmt.MetricFamilyToText(&buf, mf); err != nil {
			t.Fatal(err)
		}
	}
	for _, secret := range []string{"Secret", "Alice", "Standup", "r1", "Dave"} {
		if strings.Contains(buf.String(), secret) {
			t.Errorf("the exposition contains %q", secret)
		}
	}
}

func TestAuditCounters(t *testing.T) {
	reg := metrics.New("test")
	entry := func(action, outcome string, details map[string]any) audit.Entry {
		d, _ := json.Marshal(details)
		if details == nil {
			d = []byte("{}")
		}
		return audit.Entry{Actor: "user:x", Action: action, Outcome: outcome, Details: d, ClientIP: "192.0.2.7", Target: "username:mallory"}
	}
	for _, e := range []audit.Entry{
		entry("auth.login", audit.Success, map[string]any{"method": "totp"}),
		entry("auth.login", audit.Success, map[string]any{"method": "recovery_code"}),
		entry("auth.password", audit.Success, nil), // a first step, not a sign-in
		entry("auth.login", audit.Failure, map[string]any{"reason": "wrong password"}),
		entry("auth.login", audit.Failure, map[string]any{"reason": "unknown user"}),
		entry("auth.login", audit.Denied, map[string]any{"reason": "account disabled"}),
		entry("auth.mfa", audit.Failure, map[string]any{"reason": "wrong code"}),
		entry("auth.mfa_replay", audit.Denied, nil),
		entry("auth.recovery_code", audit.Failure, nil),
		entry("auth.throttled", audit.Denied, map[string]any{"scope": "address"}),
		entry("auth.throttled", audit.Denied, map[string]any{"scope": "account", "locked": true}),
		entry("auth.throttled", audit.Denied, map[string]any{"scope": "a user's very own scope"}),
		entry("auth.locked", audit.Success, map[string]any{"failures": 10}),
		entry("room.create", audit.Success, nil),
		entry("signal.join", audit.Denied, nil),
		entry("frobnicate.things", audit.Success, nil),
		entry("auth.login", "weird", nil),
	} {
		reg.ObserveAudit(e)
	}
	var nilReg *metrics.Registry
	nilReg.ObserveAudit(entry("auth.login", audit.Success, nil))
	nilReg.ObserveJoin(time.Second)

	f := families(t, reg.Gatherer())
	checks := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"parley_signins_total", nil, 2},
		{"parley_signin_failures_total", []string{"step=password"}, 2},
		{"parley_signin_failures_total", []string{"step=disabled"}, 1},
		{"parley_signin_failures_total", []string{"step=totp"}, 1},
		{"parley_signin_failures_total", []string{"step=recovery_code"}, 1},
		{"parley_signin_throttled_total", []string{"scope=address"}, 1},
		{"parley_signin_throttled_total", []string{"scope=account"}, 1},
		{"parley_signin_throttled_total", []string{"scope=other"}, 1},
		{"parley_signin_lockouts_total", nil, 1},
		{"parley_audit_entries_total", []string{"class=auth", "outcome=success"}, 4},
		{"parley_audit_entries_total", []string{"class=auth", "outcome=failure"}, 4},
		{"parley_audit_entries_total", []string{"class=auth", "outcome=denied"}, 5},
		{"parley_audit_entries_total", []string{"class=auth", "outcome=other"}, 1},
		{"parley_audit_entries_total", []string{"class=room", "outcome=success"}, 1},
		{"parley_audit_entries_total", []string{"class=signal", "outcome=denied"}, 1},
		{"parley_audit_entries_total", []string{"class=other", "outcome=success"}, 1},
		{"parley_audit_entries_total", []string{"class=turn", "outcome=failure"}, 0},
	}
	for _, c := range checks {
		if got := sample(t, f, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// The labels keep to fixed sets, whatever the entries said.
	classes := labelValues(f, "parley_audit_entries_total", "class")
	for _, c := range slices.Compact(classes) {
		if !slices.Contains([]string{"admin", "auth", "guest", "other", "recording", "room", "server", "setup", "signal", "turn", "user"}, c) {
			t.Errorf("unexpected class %q", c)
		}
	}
	if got := slices.Compact(labelValues(f, "parley_signin_throttled_total", "scope")); !slices.Equal(got, []string{"account", "address", "other"}) {
		t.Errorf("throttle scopes %v", got)
	}
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	pionturn "github.com/pion/turn/v5"

	"github.com/parley-meet/parley/audit"
	"github.com/parley-meet/parley/store"
	"github.com/parley-meet/parley/store/storetest"
	"github.com/parley-meet/parley/turn"
)

var testTURNSecret = []byte(strings.Repeat("0123456789abcdef", 4))

func TestICEServersFunc(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	urls := []string{"turn:meet.example.org:3478?transport=udp", "turns:meet.example.org:5349?transport=tcp"}
	ice := iceServersFunc(testTURNSecret, urls, 10*time.Minute, func() time.Time { return now })
	urls[0] = "turn:changed" // the hook keeps its own copy

	servers, expires := ice("pA1_b-2")
	if len(servers) != 1 {
		t.Fatalf("servers = %+v", servers)
	}
	s := servers[0]
	if !slices.Equal(s.URLs, []string{"turn:meet.example.org:3478?transport=udp", "turns:meet.example.org:5349?transport=tcp"}) {
		t.Errorf("URLs = %q", s.URLs)
	}
	if !expires.Equal(now.Add(10 * time.Minute)) {
		t.Errorf("expires %v, want %v", expires, now.Add(10*time.Minute))
	}
	if s.Username != strconv.FormatInt(now.Add(10*time.Minute).Unix(), 10)+":pA1_b-2" {
		t.Errorf("username %q", s.Username)
	}
	if p, err := turn.Verify(testTURNSecret, s.Username, s.Credential, now); err != nil || p != "pA1_b-2" {
		t.Errorf("Verify: %q %v", p, err)
	}
	if _, err := turn.Verify(testTURNSecret, s.Username, s.Credential, expires); err == nil {
		t.Error("the credential is still valid at its expiry")
	}
	if _, err := turn.Verify([]byte(strings.Repeat("f", 64)), s.Username, s.Credential, now); err == nil {
		t.Error("the credential verifies under another secret")
	}
	// Each call mints for its participant; the slices are the caller's.
	other, _ := ice("other")
	if other[0].Username == s.Username || other[0].Credential == s.Credential {
		t.Error("two participants got the same credential")
	}
	other[0].URLs[0] = "turn:mutated"
	if again, _ := ice("pA1_b-2"); again[0].URLs[0] != "turn:meet.example.org:3478?transport=udp" {
		t.Error("a caller changed the hook's URLs")
	}
	// Ids a credential cannot carry, and no URLs: no ICE servers.
	for _, id := range []string{"", "a:b", strings.Repeat("x", turn.MaxParticipantLen+1)} {
		if servers, exp := ice(id); servers != nil || !exp.IsZero() {
			t.Errorf("participant %q: %+v %v", id, servers, exp)
		}
	}
	if servers, exp := iceServersFunc(testTURNSecret, nil, time.Minute, time.Now)("p"); servers != nil || !exp.IsZero() {
		t.Errorf("no URLs: %+v %v", servers, exp)
	}
}

func TestDefaultTURNURLs(t *testing.T) {
	ap := netip.MustParseAddrPort
	all := turn.Addrs{UDP: ap("0.0.0.0:3478"), TCP: ap("0.0.0.0:3478"), TLS: ap("0.0.0.0:5349")}
	v4 := netip.IPv4Unspecified()
	for _, tc := range []struct {
		host   string
		listen netip.Addr
		addrs  turn.Addrs
		want   []string
	}{
		{"meet.example.org", v4, all, []string{"turn:meet.example.org:3478?transport=udp",
			"turn:meet.example.org:3478?transport=tcp", "turns:meet.example.org:5349?transport=tcp"}},
		{"meet.example.org", v4, turn.Addrs{UDP: ap("127.0.0.1:40001")}, []string{"turn:meet.example.org:40001?transport=udp"}},
		{"meet.example.org", v4, turn.Addrs{TCP: ap("127.0.0.1:40002"), TLS: ap("127.0.0.1:40003")},
			[]string{"turn:meet.example.org:40002?transport=tcp", "turns:meet.example.org:40003?transport=tcp"}},
		{"2001:db8::7", netip.IPv6Unspecified(), turn.Addrs{UDP: ap("[::]:3478")}, []string{"turn:[2001:db8::7]:3478?transport=udp"}},
		{"203.0.113.9", v4, turn.Addrs{UDP: ap("0.0.0.0:3478")}, []string{"turn:203.0.113.9:3478?transport=udp"}},
		{"localhost", netip.MustParseAddr("127.0.0.1"), turn.Addrs{UDP: ap("127.0.0.1:3478")}, []string{"turn:127.0.0.1:3478?transport=udp"}},
		{"LocalHost", v4, turn.Addrs{UDP: ap("0.0.0.0:3478")}, []string{"turn:127.0.0.1:3478?transport=udp"}},
		{"localhost", netip.IPv6Loopback(), turn.Addrs{UDP: ap("[::1]:3478")}, []string{"turn:[::1]:3478?transport=udp"}},
		{"meet.example.org", v4, turn.Addrs{}, nil},
	} {
		if got := defaultTURNURLs(tc.host, tc.listen, tc.addrs); !slices.Equal(got, tc.want) {
			t.Errorf("%s %s %+v: %q, want %q", tc.host, tc.listen, tc.addrs, got, tc.want)
		}
	}
}

func TestTURNAuditEvent(t *testing.T) {
	client := netip.MustParseAddrPort("[::ffff:198.51.100.7]:50000")
	for _, tc := range []struct {
		in   turn.Event
		want audit.Event
		ok   bool
	}{
		{turn.Event{Kind: turn.EventAuthFailed, Transport: "udp", Client: client, Participant: "victim", Method: "Allocate", Reason: turn.AuthBadIntegrity},
			audit.Event{Actor: "anonymous", Action: "turn.auth", Outcome: audit.Failure, ClientIP: "198.51.100.7",
				Details: map[string]any{"transport": "udp", "reason": "bad-integrity", "method": "Allocate", "claimed_participant": "victim"}}, true},
		{turn.Event{Kind: turn.EventAuthFailed, Transport: "tls", Client: client, Reason: turn.AuthMalformed},
			audit.Event{Actor: "anonymous", Action: "turn.auth", Outcome: audit.Failure, ClientIP: "198.51.100.7",
				Details: map[string]any{"transport": "tls", "reason": "malformed"}}, true},
		{turn.Event{Kind: turn.EventPermissionRefused, Transport: "tcp", Client: client, Participant: "p1",
			Peer: netip.MustParseAddr("169.254.169.254"), Reason: turn.ReasonMetadata},
			audit.Event{Actor: "participant:p1", Action: "turn.permission", Outcome: audit.Denied, ClientIP: "198.51.100.7",
				Details: map[string]any{"transport": "tcp", "reason": "metadata", "peer": "169.254.169.254"}}, true},
		{turn.Event{Kind: turn.EventQuotaRefused, Transport: "udp", Client: client, Participant: "p1", Reason: turn.QuotaParticipant},
			audit.Event{Actor: "participant:p1", Action: "turn.quota", Outcome: audit.Denied, ClientIP: "198.51.100.7",
				Details: map[string]any{"transport": "udp", "reason": "participant-quota"}}, true},
		{turn.Event{Kind: turn.EventQuotaRefused, Participant: "p2", Reason: turn.QuotaServer},
			audit.Event{Actor: "participant:p2", Action: "turn.quota", Outcome: audit.Denied,
				Details: map[string]any{"reason": "server-capacity"}}, true},
		{turn.Event{Kind: turn.EventAllocationCreated, Transport: "udp", Client: client, Participant: "p1",
			Relay: netip.MustParseAddrPort("203.0.113.1:49200")},
			audit.Event{Actor: "participant:p1", Action: "turn.allocate", Outcome: audit.Success, ClientIP: "198.51.100.7",
				Details: map[string]any{"transport": "udp", "relay": "203.0.113.1:49200"}}, true},
		{turn.Event{Kind: turn.EventAllocationDeleted, Participant: "p1"}, audit.Event{}, false},
		{turn.Event{Kind: "something-new"}, audit.Event{}, false},
	} {
		got, ok := turnAuditEvent(tc.in)
		if ok != tc.ok || fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%+v:\n got %v %+v\nwant %v %+v", tc.in, ok, got, tc.ok, tc.want)
		}
	}
}

// fakeRecorder collects audit events; gate, if set, holds every Record
// until it is closed.
type fakeRecorder struct {
	mu     sync.Mutex
	events []audit.Event
	gate   chan struct{}
	first  chan struct{} // closed at the first Record
	once   sync.Once
}

func (f *fakeRecorder) Record(ctx context.Context, e audit.Event) (audit.Entry, error) {
	if f.first != nil {
		f.once.Do(func() { close(f.first) })
	}
	if f.gate != nil {
		<-f.gate
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, e)
	return audit.Entry{}, nil
}

func (f *fakeRecorder) all() []audit.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.events)
}

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// waitRecorded waits until the auditor has written n entries.
func waitRecorded(t *testing.T, a *turnAuditor, n uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for a.recorded.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("recorded %d entries, want %d", a.recorded.Load(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestTURNAuditorLimitsEachActorAndAction(t *testing.T) {
	rec := &fakeRecorder{}
	clock := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	a := newTURNAuditor(rec, discardLogger(), clock.now, time.Hour)
	refused := func(participant string) turn.Event {
		return turn.Event{Kind: turn.EventPermissionRefused, Participant: participant, Peer: netip.MustParseAddr("10.0.0.1"), Reason: turn.ReasonPrivate}
	}
	for range 15 {
		a.OnEvent(refused("p1"))
	}
	a.OnEvent(refused("p2"))                                                    // another actor has its own budget
	a.OnEvent(turn.Event{Kind: turn.EventAllocationCreated, Participant: "p1"}) // and another action
	a.OnEvent(turn.Event{Kind: turn.EventAllocationDeleted, Participant: "p1"}) // not audited
	waitRecorded(t, a, 12)
	clock.add(1500 * time.Millisecond) // one token back
	a.OnEvent(refused("p1"))
	waitRecorded(t, a, 13)
	for range 3 {
		a.OnEvent(refused("p1")) // over the budget again
	}
	for range 20 {
		a.OnEvent(turn.Event{Kind: turn.EventAuthFailed, Participant: fmt.Sprintf("claimed-%d", time.Now().UnixNano()), Reason: turn.AuthBadIntegrity})
	}
	a.Close()
	a.OnEvent(refused("p1")) // after Close: ignored, no panic

	evs := rec.all()
	count := map[string]int{}
	var withSuppressed []audit.Event
	for _, e := range evs {
		count[e.Actor+" "+e.Action]++
		if e.Details["suppressed"] != nil {
			withSuppressed = append(withSuppressed, e)
		}
	}
	// p1: 10 of the burst, the one a second later (carrying the 5
	// suppressed), and a summary of the 3 suppressed at Close.
	want := map[string]int{"participant:p1 turn.permission": 12, "participant:p2 turn.permission": 1,
		"participant:p1 turn.allocate": 1, "anonymous turn.auth": 11}
	if fmt.Sprint(count) != fmt.Sprint(want) {
		t.Errorf("entries %v, want %v", count, want)
	}
	var sup []string
	for _, e := range withSuppressed {
		sup = append(sup, fmt.Sprintf("%s %s %v", e.Actor, e.Action, e.Details["suppressed"]))
	}
	wantSup := []string{"participant:p1 turn.permission 5", "anonymous turn.auth 10", "participant:p1 turn.permission 3"}
	slices.Sort(sup)
	slices.Sort(wantSup)
	if !slices.Equal(sup, wantSup) {
		t.Errorf("suppressed counts %q, want %q", sup, wantSup)
	}
}

func TestTURNAuditorDropsWhenFull(t *testing.T) {
	rec := &fakeRecorder{gate: make(chan struct{}), first: make(chan struct{})}
	a := newTURNAuditor(rec, discardLogger(), time.Now, time.Hour)
	ev := func(i int) turn.Event {
		return turn.Event{Kind: turn.EventAllocationCreated, Participant: fmt.Sprintf("p%d", i)}
	}
	a.OnEvent(ev(0))
	<-rec.first // the pump is now stuck in Record
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 1; i <= turnAuditQueue+7; i++ {
			a.OnEvent(ev(i)) // must never block
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("OnEvent blocked on a full queue")
	}
	if got := a.dropped.Load(); got != 7 {
		t.Errorf("dropped %d, want 7", got)
	}
	close(rec.gate)
	a.Close()
	evs := rec.all()
	if len(evs) != turnAuditQueue+2 {
		t.Fatalf("%d entries, want %d", len(evs), turnAuditQueue+2)
	}
	last := evs[len(evs)-1]
	if last.Actor != "system" || last.Action != "turn.audit_dropped" || last.Outcome != audit.Failure || fmt.Sprint(last.Details["dropped"]) != "7" {
		t.Errorf("last entry %+v, want turn.audit_dropped with 7", last)
	}
}

func TestTURNAuditorFlushesPeriodically(t *testing.T) {
	rec := &fakeRecorder{}
	clock := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	a := newTURNAuditor(rec, discardLogger(), clock.now, 5*time.Millisecond)
	defer a.Close()
	for range 12 {
		a.OnEvent(turn.Event{Kind: turn.EventQuotaRefused, Participant: "p", Reason: turn.QuotaParticipant})
	}
	waitRecorded(t, a, 11) // 10 and the summary of 2, without Close
	evs := rec.all()
	if n := evs[len(evs)-1].Details["suppressed"]; fmt.Sprint(n) != "2" {
		t.Errorf("summary %+v", evs[len(evs)-1])
	}
}

// turnLog is the "TURN server listening" line of serve's JSON log.
type turnLog struct {
	UDP, TCP, TLS string
	Announced     string `json:"announced_relay_ip"`
	URLs          string `json:"urls"`
}

func findTURNLog(logs string) (turnLog, bool) {
	for _, line := range strings.Split(logs, "\n") {
		var rec struct {
			Msg string `json:"msg"`
			turnLog
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "TURN server listening" {
			return rec.turnLog, true
		}
	}
	return turnLog{}, false
}

// turnTestArgs keep the embedded TURN server off fixed ports.
var turnTestArgs = []string{"--turn-udp-port", "0", "--turn-tcp-port", "0", "--turn-tls-port", "0", "--turn-relay-ports", "0"}

func TestServeRunsTURN(t *testing.T) {
	dataDir := t.TempDir()
	_, logs, stop := serveInProcess(t, append([]string{"--data-dir", dataDir, "--turn-allowed-peers", "127.0.0.0/8"}, turnTestArgs...), nil)
	tl, ok := findTURNLog(logs.String())
	if !ok {
		t.Fatalf("no TURN log line: %s", logs.String())
	}
	if tl.Announced != "127.0.0.1" || tl.UDP == "off" || tl.TCP == "off" || tl.TLS == "off" {
		t.Errorf("TURN log: %+v", tl)
	}
	udp := netip.MustParseAddrPort(tl.UDP)
	wantURLs := fmt.Sprintf("turn:127.0.0.1:%d?transport=udp turn:127.0.0.1:%s?transport=tcp turns:127.0.0.1:%s?transport=tcp",
		udp.Port(), portOf(t, tl.TCP), portOf(t, tl.TLS))
	if tl.URLs != wantURLs {
		t.Errorf("URLs %q, want %q", tl.URLs, wantURLs)
	}
	fi, err := os.Stat(filepath.Join(dataDir, turn.SecretFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("secret file: %v %v", fi, err)
	}
	secret, err := turn.LoadOrCreateSecret(dataDir)
	if err != nil {
		t.Fatal(err)
	}

	// A credential as the hub mints it allocates; a wrong password does
	// not; a refused peer is refused.
	cred := turn.Mint(secret, "alice-part", time.Minute, time.Now())
	c := newTURNClient(t, tl.UDP, cred.Username, cred.Password)
	relay, err := c.Allocate()
	if err != nil {
		t.Fatalf("allocate: %v", err)
	}
	if ra := netip.MustParseAddrPort(relay.LocalAddr().String()); ra.Addr() != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("relayed address %s", ra)
	}
	if err := c.CreatePermission(&net.UDPAddr{IP: net.ParseIP("127.0.0.1"), Port: 9}); err != nil {
		t.Errorf("permission for an allowed peer: %v", err)
	}
	if err := c.CreatePermission(&net.UDPAddr{IP: net.ParseIP("10.1.2.3"), Port: 9}); err == nil {
		t.Error("permission for a private peer granted")
	}
	relay.Close()
	c.Close()
	bad := newTURNClient(t, tl.UDP, turn.Mint(secret, "mallory", time.Minute, time.Now()).Username, "wrong-password")
	if _, err := bad.Allocate(); err == nil {
		t.Error("allocated with a wrong password")
	}
	bad.Close()
	if code := stop(); code != 0 {
		t.Fatalf("serve exited %d: %s", code, logs.String())
	}

	db := storetest.DB(t, store.Options{DataDir: dataDir})
	rows, err := db.Query(`SELECT actor, action, outcome, client_ip, details FROM audit_log ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var actor, action, outcome, ip, details string
		if err := rows.Scan(&actor, &action, &outcome, &ip, &details); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(details, cred.Password) || strings.Contains(details, string(secret)) || strings.Contains(details, "wrong-password") {
			t.Errorf("a credential reached the audit log: %s %s", action, details)
		}
		switch {
		case action == "server.start" && !strings.Contains(details, `"turn":"embedded"`):
			t.Errorf("server.start details: %s", details)
		case strings.HasPrefix(action, "turn."):
			got = append(got, fmt.Sprintf("%s %s %s %s", actor, action, outcome, ip))
			var d map[string]any
			json.Unmarshal([]byte(details), &d)
			switch action {
			case "turn.permission":
				if d["peer"] != "10.1.2.3" || d["reason"] != "private" || d["transport"] != "udp" {
					t.Errorf("turn.permission details %s", details)
				}
			case "turn.auth":
				if d["claimed_participant"] != "mallory" || d["reason"] != "bad-integrity" {
					t.Errorf("turn.auth details %s", details)
				}
			}
		}
	}
	want := []string{"participant:alice-part turn.allocate success 127.0.0.1", "participant:alice-part turn.permission denied 127.0.0.1",
		"anonymous turn.auth failure 127.0.0.1"}
	if !slices.Equal(got, want) {
		t.Errorf("TURN audit entries:\n%q\nwant\n%q", got, want)
	}
	for _, s := range []string{cred.Password, string(secret), "wrong-password"} {
		if strings.Contains(logs.String(), s) {
			t.Errorf("a credential or the secret reached the log")
		}
	}
	if code, out, _ := runCmd(context.Background(), []string{"audit", "verify", "--data-dir", dataDir}, nil); code != 0 {
		t.Errorf("audit verify: %d %s", code, out)
	}
}

func portOf(t *testing.T, addr string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func newTURNClient(t *testing.T, server, user, pass string) *pionturn.Client {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := pionturn.NewClient(&pionturn.ClientConfig{TURNServerAddr: server, Username: user, Password: pass,
		Realm: turn.DefaultRealm, Conn: pc, RTO: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); pc.Close() })
	return c
}

func TestServeTURNModes(t *testing.T) {
	secret := strings.Repeat("ab", 32)
	// Off: no listener, no secret file.
	dataDir := t.TempDir()
	_, logs, stop := serveInProcess(t, []string{"--data-dir", dataDir, "--turn=false"}, nil)
	stop()
	if _, ok := findTURNLog(logs.String()); ok {
		t.Error("TURN listening with --turn=false")
	}
	if _, err := os.Stat(filepath.Join(dataDir, turn.SecretFile)); !os.IsNotExist(err) {
		t.Errorf("--turn=false created the secret file: %v", err)
	}
	// External: no listener, no secret file, the URLs announced.
	dataDir = t.TempDir()
	_, logs, stop = serveInProcess(t, []string{"--data-dir", dataDir, "--turn=false", "--turn-urls", "turn:turn.example.org:3478"},
		map[string]string{"PARLEY_TURN_SECRET": secret})
	stop()
	if _, ok := findTURNLog(logs.String()); ok || !strings.Contains(logs.String(), "external TURN server") || strings.Contains(logs.String(), secret) {
		t.Errorf("external TURN: %s", logs.String())
	}
	if _, err := os.Stat(filepath.Join(dataDir, turn.SecretFile)); !os.IsNotExist(err) {
		t.Errorf("external TURN created the secret file: %v", err)
	}
	// PARLEY_TURN_SECRET replaces the file for the embedded server too.
	dataDir = t.TempDir()
	_, logs, stop = serveInProcess(t, append([]string{"--data-dir", dataDir}, turnTestArgs...), map[string]string{"PARLEY_TURN_SECRET": secret})
	tl, ok := findTURNLog(logs.String())
	if !ok {
		t.Fatalf("no TURN: %s", logs.String())
	}
	cred := turn.Mint([]byte(secret), "p", time.Minute, time.Now())
	c := newTURNClient(t, tl.UDP, cred.Username, cred.Password)
	if relay, err := c.Allocate(); err != nil {
		t.Errorf("allocate with a PARLEY_TURN_SECRET credential: %v", err)
	} else {
		relay.Close()
	}
	c.Close()
	stop()
	if _, err := os.Stat(filepath.Join(dataDir, turn.SecretFile)); !os.IsNotExist(err) {
		t.Errorf("PARLEY_TURN_SECRET given, yet the secret file was created: %v", err)
	}
	// Without TLS (--insecure-http) there is no TURN over TLS.
	_, logs, stop = serveInProcess(t, append([]string{"--data-dir", t.TempDir(), "--insecure-http"}, turnTestArgs...), nil)
	stop()
	if tl, ok := findTURNLog(logs.String()); !ok || tl.TLS != "off" || strings.Contains(tl.URLs, "turns:") {
		t.Errorf("TURN with --insecure-http: %+v", tl)
	}
}

func TestServeTURNErrors(t *testing.T) {
	udpBusy, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udpBusy.Close()
	tcpBusy, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcpBusy.Close()
	udpPort := strconv.Itoa(udpBusy.LocalAddr().(*net.UDPAddr).Port)
	tcpPort := strconv.Itoa(tcpBusy.Addr().(*net.TCPAddr).Port)
	badSecretDir := t.TempDir()
	os.WriteFile(filepath.Join(badSecretDir, turn.SecretFile), []byte(strings.Repeat("a", 64)), 0o644)

	cases := []struct {
		name string
		args []string
		env  map[string]string
		code int
		want string
	}{
		{"UDP port in use", []string{"--turn-udp-port", udpPort}, nil, 1, "--turn-udp-port"},
		{"TCP port in use", []string{"--turn-tcp-port", tcpPort}, nil, 1, "--turn-tcp-port"},
		{"TLS port in use", []string{"--turn-tls-port", tcpPort}, nil, 1, "--turn-tls-port"},
		{"TCP on the HTTPS port", []string{"--listen", "127.0.0.1:" + tcpPort, "--turn-tcp-port", tcpPort}, nil, 2, "--turn-tcp-port"},
		{"TLS on the HTTPS port", []string{"--listen", "127.0.0.1:" + tcpPort, "--turn-tls-port", tcpPort}, nil, 2, "--turn-tls-port"},
		{"secret file readable by others", []string{"--data-dir", badSecretDir}, nil, 2, "PARLEY_TURN_SECRET"},
		{"external without a secret", []string{"--turn=false", "--turn-urls", "turn:turn.example.org"}, nil, 2, "PARLEY_TURN_SECRET"},
		{"announced address unknown", []string{"--listen", "0.0.0.0:0", "--public-url", "https://meet.example.org"}, nil, 2, "--turn-announced-ip"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			args := append([]string{"serve", "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0", "--media-udp-port", "0",
				"--media-tcp-port", "-1", "--turn-udp-port", "0", "--turn-tcp-port", "0", "--turn-tls-port", "0"}, c.args...)
			code, _, stderr := runCmd(ctx, args, c.env)
			if code != c.code || !strings.Contains(stderr, c.want) {
				t.Errorf("exit %d (want %d), stderr does not name %s? %s", code, c.code, c.want, stderr)
			}
		})
	}
}

package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
)

func TestVP8Packetization(t *testing.T) {
	var pk vp8Packetizer
	now := time.Unix(1700000000, 123456789)
	for _, key := range []bool{true, false} {
		ps := pk.packetize(key, vp8FrameBytes, now)
		if len(ps) != 6 {
			t.Fatalf("key=%v: %d packets, want 6", key, len(ps))
		}
		total := 0
		for i, p := range ps {
			if len(p) > maxPayload {
				t.Errorf("packet %d: %d bytes > %d", i, len(p), maxPayload)
			}
			if (p[0]&0x10 != 0) != (i == 0) {
				t.Errorf("packet %d: S bit %v", i, p[0]&0x10 != 0)
			}
			ts, ok := sendTime(p)
			if !ok || ts != now.UnixNano() {
				t.Errorf("packet %d: send time %d, want %d", i, ts, now.UnixNano())
			}
			total += len(p) - 1 - tsLen
		}
		if total != vp8FrameBytes {
			t.Errorf("frame bytes %d, want %d", total, vp8FrameBytes)
		}
		if got := isVP8Keyframe(ps[0]); got != key {
			t.Errorf("isVP8Keyframe(first) = %v, want %v", got, key)
		}
		if isVP8Keyframe(ps[1]) {
			t.Error("a continuation packet is taken for a keyframe")
		}
		f := ps[0][1:]
		if key != (f[0]&1 == 0) {
			t.Errorf("frame tag bit 0 = %d for key=%v", f[0]&1, key)
		}
		if f[0]&0x10 == 0 {
			t.Error("show_frame not set")
		}
		if key && (f[3] != 0x9d || f[4] != 0x01 || f[5] != 0x2a || f[6] != 0x80 || f[7] != 0x02 || f[8] != 0xe0 || f[9] != 0x01) {
			t.Errorf("keyframe header % x", f[:10])
		}
	}
}

func TestRTPPayload(t *testing.T) {
	p := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: 7, CSRC: []uint32{1, 2}}, Payload: []byte{1, 2, 3, 4, 5, 6, 7, 8, 9}}
	if err := p.SetExtension(1, []byte{0xaa, 0xbb}); err != nil {
		t.Fatal(err)
	}
	p.Header.Extension = true
	p.Header.ExtensionProfile = 0xBEDE
	p.Header.Padding, p.PaddingSize = true, 3
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, ok := rtpPayload(b)
	if !ok || !bytes.Equal(got, p.Payload) {
		t.Fatalf("rtpPayload = %v %v, want %v", got, ok, p.Payload)
	}
	if _, ok := rtpPayload(b[:10]); ok {
		t.Error("a short packet parsed")
	}
}

func TestHistQuantiles(t *testing.T) {
	var h Hist
	if h.Count() != 0 || quantiles(&h) != nil {
		t.Fatal("empty histogram has samples")
	}
	for v := int64(1); v <= 100000; v++ {
		h.Record(v)
	}
	for _, c := range []struct{ q, want float64 }{{0.5, 50000}, {0.99, 99000}, {0.999, 99900}} {
		got := h.Quantile(c.q)
		if d := (got - c.want) / c.want; d < -0.02 || d > 0.02 {
			t.Errorf("q%.3f = %.0f, want %.0f ±2%%", c.q, got, c.want)
		}
	}
	var small Hist
	for _, v := range []int64{-5, 0, 3, 3, 3, 120} {
		small.Record(v)
	}
	if got := small.Quantile(0.5); got != 3 {
		t.Errorf("exact small values: p50 = %v, want 3", got)
	}
	if got := small.Quantile(1); got != 120 {
		t.Errorf("max = %v, want 120", got)
	}
	for v := uint64(0); v < 1<<20; v += 997 {
		low, w := bucketRange(bucketOf(v))
		if v < low || v >= low+w {
			t.Fatalf("value %d outside its bucket [%d, %d)", v, low, low+w)
		}
	}
	var big Hist
	big.Record(1 << 62)
	if q := big.Quantile(0.5); q <= 0 {
		t.Errorf("huge value: %v", q)
	}
	var m Hist
	m.Merge(&h)
	m.Merge(&small)
	if m.Count() != h.Count()+small.Count() {
		t.Error("merge lost samples")
	}
}

func TestProcParsing(t *testing.T) {
	stat, err := os.ReadFile("testdata/stat.txt")
	if err != nil {
		t.Fatal(err)
	}
	c, err := parseStat(stat)
	if err != nil {
		t.Fatal(err)
	}
	if c.User != 12.34 || c.System != 5.67 || c.Total() < 18.009 || c.Total() > 18.011 {
		t.Errorf("parseStat = %+v, want user 12.34 s, system 5.67 s", c)
	}
	if _, err := parseStat([]byte("1 (x) S 1 2")); err == nil {
		t.Error("a short stat line parsed")
	}
	status, err := os.ReadFile("testdata/status.txt")
	if err != nil {
		t.Fatal(err)
	}
	rss, err := parseVmRSS(status)
	if err != nil || rss != 1892 {
		t.Errorf("parseVmRSS = %d, %v; want 1892", rss, err)
	}
	if _, err := parseVmRSS([]byte("Name: x\n")); err == nil {
		t.Error("status without VmRSS parsed")
	}
	if _, err := procCPU("self"); err != nil {
		t.Errorf("own stat: %v", err)
	}
	if _, err := procRSS("self"); err != nil {
		t.Errorf("own status: %v", err)
	}
}

func TestFlags(t *testing.T) {
	if _, err := parseFlags([]string{"-url", "https://127.0.0.1:1", "-token", "x", "-scenario", "nope"}, io.Discard); err == nil {
		t.Error("unknown scenario accepted")
	}
	if _, err := parseFlags([]string{"-url", "https://127.0.0.1:1", "-scenario", "fanout"}, io.Discard); err == nil && os.Getenv("PARLEY_LOAD_TOKEN") == "" {
		t.Error("no credentials accepted")
	}
	c, err := parseFlags([]string{"-url", "https://127.0.0.1:1", "-token", "x", "-scenario", "chat", "-n", "7"}, io.Discard)
	if err != nil || c.N != 7 || c.Scenario != "chat" || c.RoomSize != 25 {
		t.Errorf("parseFlags = %+v, %v", c, err)
	}
	if _, err := parseFlags([]string{"-url", "https://127.0.0.1:1", "-token", "x", "-scenario", "idle-ws", "-room-size", "-1"}, io.Discard); err == nil {
		t.Error("a negative -room-size accepted")
	}
}

func TestFlagsSeveralNodes(t *testing.T) {
	c, err := parseFlags([]string{"-url", "https://127.0.0.1:1, https://127.0.0.1:2", "-server-pid", "10,20", "-token", "x",
		"-scenario", "fanout", "-rooms", "4"}, io.Discard)
	if err != nil || c.Rooms != 4 {
		t.Fatalf("parseFlags = %+v, %v", c, err)
	}
	if got := splitList(c.URL); !slices.Equal(got, []string{"https://127.0.0.1:1", "https://127.0.0.1:2"}) {
		t.Errorf("URLs %q", got)
	}
	for _, bad := range [][]string{
		{"-url", "https://127.0.0.1:1,https://127.0.0.1:2", "-server-pid", "10"}, // a pid per node
		{"-url", "https://127.0.0.1:1,,https://127.0.0.1:2"},                     // an empty URL
		{"-url", "https://127.0.0.1:1", "-scenario", "chat", "-rooms", "2"},      // chat has one room
		{"-url", "https://127.0.0.1:1", "-scenario", "idle-ws", "-rooms", "2"},   // idle-ws: -room-size
		{"-url", "https://127.0.0.1:1", "-rooms", "0"},
		{"-url", "https://127.0.0.1:1", "-rooms", "2", "-room", "abc"},
	} {
		if _, err := parseFlags(append(bad, "-token", "x"), io.Discard); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestSpreadOverNodes: client i dials node i mod the number of nodes, and
// consecutive clients of a room land on different nodes.
func TestSpreadOverNodes(t *testing.T) {
	r := &run{nodes: []node{{url: "https://a"}, {url: "https://b"}, {url: "https://c"}}}
	var got []int
	for range 7 {
		got = append(got, r.nextNode())
	}
	if want := []int{0, 1, 2, 0, 1, 2, 0}; !slices.Equal(got, want) {
		t.Errorf("nodes %v, want %v", got, want)
	}
	rooms := []roomOf{{id: "r0"}, {id: "r1"}}
	in := inRooms(rooms, 3)
	var ids []string
	for i := range 6 {
		id, _ := in(i)
		ids = append(ids, id)
	}
	if want := []string{"r0", "r0", "r0", "r1", "r1", "r1"}; !slices.Equal(ids, want) {
		t.Errorf("rooms %v, want %v", ids, want)
	}
	a := newAPI("https://a", true).as("tok")
	b := a.at("https://b")
	if b.base != "https://b" || b.bearer != "tok" || a.base != "https://a" || a.at("https://a") != a {
		t.Errorf("at: %+v from %+v", b, a)
	}
	if b.originURL() != "https://a" || b.at("https://c").originURL() != "https://a" || a.originURL() != "https://a" {
		t.Errorf("Origin %q, want the first URL's", b.originURL())
	}
}

// TestNodeFigures: clients, relayed sockets, rooms and copies are
// attributed to the nodes by the rooms' owners; CPU per copy is each
// node's CPU over its own meetings' copies.
func TestNodeFigures(t *testing.T) {
	rep := &Report{Nodes: []nodeRep{{URL: "https://a", PID: "1"}, {URL: "https://b", PID: "2"}}}
	ids := []string{"na", "nb"}
	owner := map[string]string{"r0": "na", "r1": "nb", "r2": "nb"}
	// r0 runs on na: sockets on a, b, a. r1 on nb: a, b. r2 on nb: b.
	// "gone" is in no live view: its client counts on b, nowhere else.
	ms := time.Millisecond
	places := []clientPlace{{0, "r0", 10 * ms}, {1, "r0", 50 * ms}, {0, "r0", 20 * ms}, {0, "r1", 60 * ms}, {1, "r1", 30 * ms},
		{1, "r2", 0}, {1, "gone", 99 * ms}}
	rep.placeClients(places, ids, owner)
	a, b := rep.Nodes[0], rep.Nodes[1]
	if a.ID != "na" || b.ID != "nb" {
		t.Errorf("ids %q %q", a.ID, b.ID)
	}
	if a.Clients != 3 || b.Clients != 4 {
		t.Errorf("clients %d, %d; want 3, 4", a.Clients, b.Clients)
	}
	if a.Relayed != 1 || b.Relayed != 1 { // a's client of r1, b's of r0
		t.Errorf("relayed %d, %d; want 1, 1", a.Relayed, b.Relayed)
	}
	if a.RoomsOwned != 1 || b.RoomsOwned != 2 || a.Hosted != 3 || b.Hosted != 3 {
		t.Errorf("rooms %d, %d, hosted %d, %d; want 1, 2, 3, 3", a.RoomsOwned, b.RoomsOwned, a.Hosted, b.Hosted)
	}
	// Direct: 10, 20, 30 ms (r2's client has no join time, "gone" no node);
	// relayed: 50, 60 ms.
	if d, r := rep.JoinDirectMS, rep.JoinRelayedMS; d == nil || r == nil || d.Samples != 3 || d.P50 != 20 || d.Max != 30 ||
		r.Samples != 2 || r.P50 != 50 || r.Max != 60 {
		t.Errorf("join direct %+v, relayed %+v", d, r)
	}

	copies := copiesByNode(map[string]int64{"r0": 1000, "r1": 3000, "r2": 1000, "quiet": 0}, ids, owner)
	if !slices.Equal(copies, []int64{1000, 4000}) {
		t.Fatalf("copies %v, want [1000 4000]", copies)
	}
	if c := copiesByNode(map[string]int64{"r0": 10, "elsewhere": 5}, ids, owner); c != nil {
		t.Errorf("a room with media and no known node attributed: %v", c)
	}
	rep.serverCPU([]*cpuTimes{{User: 0.010, System: 0.002}, {User: 0.030, System: 0.008}}, copies, 5000, 2)
	if !rep.CopiesByNode {
		t.Error("copies_by_node not set")
	}
	near := func(got, want float64) bool { return got > want-1e-6 && got < want+1e-6 }
	s := rep.Server
	if !near(s.CPUUserS, 0.040) || !near(s.CPUSystemS, 0.010) || !near(s.CPUPercent, 2.5) || s.CPUUSPerCopy == nil || !near(s.CPUUSPerCopy.Total, 10) {
		t.Errorf("server totals %+v (per copy %+v)", s, s.CPUUSPerCopy)
	}
	a, b = rep.Nodes[0], rep.Nodes[1]
	if a.CPUUSPerCopy == nil || !near(a.CPUUSPerCopy.Total, 12) || !near(a.CPUUSPerCopy.User, 10) || !near(a.CPUUS, 10000) {
		t.Errorf("node a per copy %+v, µs %v", a.CPUUSPerCopy, a.CPUUS)
	}
	if b.CPUUSPerCopy == nil || !near(b.CPUUSPerCopy.Total, 9.5) || !near(b.CPUShare, 0.76) || !near(a.CPUShare, 0.24) || b.Copies != 4000 {
		t.Errorf("node b %+v", b)
	}

	// Not attributed: totals only, a share per node, no per-node cost.
	rep.serverCPU([]*cpuTimes{{User: 0.010}, nil}, nil, 5000, 2)
	if rep.CopiesByNode || rep.Nodes[0].CPUUSPerCopy != nil || !near(rep.Nodes[0].CPUShare, 1) || rep.Server.CPUUSPerCopy == nil ||
		rep.Nodes[1].CPUUserS != 0 || rep.Nodes[1].Copies != 0 {
		t.Errorf("unattributed: %+v", rep)
	}

	rep.Server.RSSAfterKiB, rep.Nodes[0].RSSAfterKiB, rep.Nodes[1].RSSAfterKiB = 3, 1, 2
	var out bytes.Buffer
	rep.printSummary(&out)
	for _, want := range []string{"node na https://a (pid 1): 3 clients dialed it (1 relayed", "node nb https://b (pid 2): 4 clients", "all 2 nodes: CPU"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}
}

var parleyBin = flag.String("parley-bin", "", "path of the parley binary: runs the end-to-end smoke test (or PARLEY_BIN)")

// smokeServer is a parley serve on loopback with the account "load".
type smokeServer struct {
	url, pid, dir string
}

const smokePassword = "smoke-test-load-password"

// startSmokeServer starts parley serve (-parley-bin or PARLEY_BIN; the test
// is skipped without) and stops it when the test ends. Run it inside
// unshare -n (make e2e does).
func startSmokeServer(ctx context.Context, t *testing.T) *smokeServer {
	t.Helper()
	bin := *parleyBin
	if bin == "" {
		bin = os.Getenv("PARLEY_BIN")
	}
	if bin == "" {
		t.Skip("no -parley-bin or PARLEY_BIN: end-to-end smoke test skipped")
	}
	dir := t.TempDir()
	port := freePort(t)
	url := fmt.Sprintf("https://127.0.0.1:%d", port)
	// The account first: the server reads role bindings when it starts.
	add := exec.CommandContext(ctx, bin, "user", "add", "--username", "load", "--password-stdin",
		"--data-dir", dir, "--public-url", url, "--log-format", "json")
	add.Env = cleanEnv()
	add.Stdin = strings.NewReader(smokePassword + "\n")
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("parley user add: %v\n%s", err, out)
	}
	var logs bytes.Buffer
	srv := exec.Command(bin, "serve", "--data-dir", dir, "--listen", fmt.Sprintf("127.0.0.1:%d", port),
		"--public-url", url, "--media-udp-port", "0", "--media-tcp-port", "-1", "--turn=false",
		"--metrics-listen", "off", "--media-allowed-remote", "127.0.0.0/8",
		"--ws-max-per-user", "1000", "--ws-max-per-ip", "100000", "--log-format", "json")
	srv.Env = cleanEnv()
	srv.Stdout, srv.Stderr = &logs, &logs
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = srv.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = srv.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = srv.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("parley serve output:\n%s", logs.String())
		}
	})
	waitReady(ctx, t, url, exited)
	return &smokeServer{url: url, pid: strconv.Itoa(srv.Process.Pid), dir: dir}
}

// runSmoke runs cfg against s, logging the report.
func runSmoke(ctx context.Context, t *testing.T, s *smokeServer, cfg config) *Report {
	t.Helper()
	cfg.URL, cfg.Insecure, cfg.Username, cfg.Password = s.url, true, "load", smokePassword
	cfg.TOTPSecretFile, cfg.ServerPID, cfg.JSON = filepath.Join(s.dir, "totp-secret"), s.pid, filepath.Join(s.dir, "report.json")
	var stderr bytes.Buffer
	rep, err := Run(ctx, cfg, &stderr)
	if rep != nil {
		var out bytes.Buffer
		rep.printSummary(&out)
		t.Logf("report:\n%s", out.String())
		if werr := rep.writeJSON(cfg.JSON); werr != nil {
			t.Error(werr)
		}
	}
	if err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	return rep
}

// TestSmokeFanout runs fanout with three subscribers for 3 s.
func TestSmokeFanout(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := startSmokeServer(ctx, t)
	rep := runSmoke(ctx, t, s, config{Scenario: "fanout", N: 3, K: 1, Rate: 20, Duration: 3 * time.Second, Warmup: 3 * time.Second})
	if rep.ClientsOK != 4 || rep.ClientsFailed != 0 {
		t.Errorf("clients %d ok, %d failed; want 4, 0", rep.ClientsOK, rep.ClientsFailed)
	}
	if rep.Tracks != 6 {
		t.Errorf("%d tracks received, want 6 (audio and video at each of 3 subscribers)", rep.Tracks)
	}
	if rep.PacketsReceived == 0 || rep.ForwardedPPS <= 0 {
		t.Errorf("no packets: %+v", rep)
	}
	if rep.LossPercent >= 5 {
		t.Errorf("loss %.2f %% ≥ 5 %%", rep.LossPercent)
	}
	if rep.LatencyUS == nil || rep.LatencyUS.P50 <= 0 || rep.LatencyUS.P99 < rep.LatencyUS.P50 {
		t.Errorf("latency %+v", rep.LatencyUS)
	}
	if rep.JoinMS == nil || rep.JoinMS.Samples != 3 {
		t.Errorf("join times %+v, want 3 samples", rep.JoinMS)
	}
	if rep.Server.RSSAfterKiB <= 0 || rep.Server.CPUUSPerCopy == nil {
		t.Errorf("server figures missing: %+v", rep.Server)
	}
	if rep.WindowS < 2.5 {
		t.Errorf("window %.1f s", rep.WindowS)
	}
	if _, err := os.Stat(filepath.Join(s.dir, "report.json")); err != nil {
		t.Error(err)
	}
}

// TestSmokeFanoutRooms runs fanout in two rooms at once (one publisher and
// two subscribers each) on one node: both rooms' media arrives, and the
// node's figures are the run's.
func TestSmokeFanoutRooms(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := startSmokeServer(ctx, t)
	rep := runSmoke(ctx, t, s, config{Scenario: "fanout", N: 2, K: 1, Rooms: 2, Rate: 20, Duration: 2 * time.Second, Warmup: 2 * time.Second})
	if rep.ClientsOK != 6 || rep.ClientsFailed != 0 || rep.Rooms != 2 {
		t.Errorf("clients %d ok, %d failed, %d rooms; want 6, 0, 2", rep.ClientsOK, rep.ClientsFailed, rep.Rooms)
	}
	if rep.Tracks != 8 {
		t.Errorf("%d tracks received, want 8 (audio and video at each of 2×2 subscribers)", rep.Tracks)
	}
	if len(rep.Nodes) != 1 {
		t.Fatalf("%d nodes reported, want 1", len(rep.Nodes))
	}
	n := rep.Nodes[0]
	if n.URL != s.url || n.PID != s.pid || n.Clients != 6 || n.Hosted != 6 || n.RoomsOwned != 2 || n.Relayed != 0 {
		t.Errorf("node %+v", n)
	}
	if !rep.CopiesByNode || n.Copies != rep.PacketsReceived || n.Copies == 0 || n.CPUUSPerCopy == nil || n.RSSAfterKiB != rep.Server.RSSAfterKiB {
		t.Errorf("node figures %+v against the run's %d copies, server %+v", n, rep.PacketsReceived, rep.Server)
	}
}

// TestSmokeIdleWSRooms runs idle-ws with 7 sockets, 3 to a room: 3 rooms,
// every socket welcomed, the server's RSS per socket reported.
func TestSmokeIdleWSRooms(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := startSmokeServer(ctx, t)
	rep := runSmoke(ctx, t, s, config{Scenario: "idle-ws", N: 7, K: 1, RoomSize: 3, Rate: 50, Duration: time.Second, Warmup: 0})
	if rep.ClientsOK != 7 || rep.ClientsFailed != 0 {
		t.Errorf("clients %d ok, %d failed; want 7, 0", rep.ClientsOK, rep.ClientsFailed)
	}
	if rep.Rooms != 3 || rep.RoomSize != 3 {
		t.Errorf("%d rooms of %d, want 3 of 3", rep.Rooms, rep.RoomSize)
	}
	if rep.JoinMS == nil || rep.JoinMS.Samples != 7 {
		t.Errorf("join times %+v, want 7 samples", rep.JoinMS)
	}
	if rep.Server.RSSAfterKiB <= 0 || rep.Server.RSSPerClientOf != "socket" {
		t.Errorf("server figures missing: %+v", rep.Server)
	}
}

func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PARLEY_") {
			env = append(env, kv)
		}
	}
	return env
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func waitReady(ctx context.Context, t *testing.T, url string, exited <-chan struct{}) {
	t.Helper()
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // the test server's self-signed certificate
	for {
		resp, err := c.Get(url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		select {
		case <-exited:
			t.Fatal("parley serve exited before it was ready")
		case <-ctx.Done():
			t.Fatal("parley serve not ready in time")
		case <-time.After(100 * time.Millisecond):
		}
	}
}

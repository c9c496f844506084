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

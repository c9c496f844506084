package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parley-meet/parley/config"
)

func TestMetricsListenOption(t *testing.T) {
	for _, c := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{nil, nil, "127.0.0.1:9464"},
		{[]string{"--metrics-listen", "off"}, nil, ""},
		{[]string{"--metrics-listen="}, nil, ""},
		{nil, map[string]string{"PARLEY_METRICS_LISTEN": "off"}, ""},
		{nil, map[string]string{"PARLEY_METRICS_LISTEN": "[::1]:9100"}, "[::1]:9100"},
		{[]string{"--metrics-listen", "localhost:0"}, map[string]string{"PARLEY_METRICS_LISTEN": "off"}, "localhost:0"},
		{[]string{"--metrics-listen", "0.0.0.0:9464"}, nil, "0.0.0.0:9464"},
	} {
		cfg, err := config.Load("serve", c.args, func(k string) string { return c.env[k] }, io.Discard)
		if err != nil {
			t.Errorf("%v %v: %v", c.args, c.env, err)
			continue
		}
		if cfg.MetricsListen != c.want {
			t.Errorf("%v %v: %q, want %q", c.args, c.env, cfg.MetricsListen, c.want)
		}
	}
	for _, bad := range []string{"everywhere", "127.0.0.1", "127.0.0.1:99999", "example.org:9464", "127.0.0.1:http", "on"} {
		_, err := config.Load("serve", []string{"--metrics-listen", bad}, func(string) string { return "" }, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "--metrics-listen") {
			t.Errorf("--metrics-listen %q: %v", bad, err)
		}
	}
}

// metricsAddr is the metrics endpoint's address from serve's JSON log.
func metricsAddr(logs string) string {
	for _, line := range strings.Split(logs, "\n") {
		var rec struct {
			Msg  string `json:"msg"`
			Addr string `json:"addr"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "metrics endpoint listening" {
			return rec.Addr
		}
	}
	return ""
}

// serve exposes the components' metrics on their own plain-HTTP listener,
// /metrics only, and stops it on shutdown.
func TestServeExposesMetrics(t *testing.T) {
	_, logs, stop := serveInProcess(t, []string{"--data-dir", t.TempDir()}, nil)
	addr := metricsAddr(logs.String())
	if addr == "" {
		t.Fatalf("no metrics endpoint in the log: %s", logs.String())
	}
	if strings.Contains(logs.String(), "reachable from other machines") {
		t.Error("a loopback endpoint was warned about")
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %d", resp.StatusCode)
	}
	for _, want := range []string{
		"parley_build_info{", "parley_meetings 0", "parley_websocket_connections 0", "parley_media_rooms 0",
		"parley_turn_allocations 0", "parley_recordings_active 0", "parley_join_wait_seconds_count 0",
		"go_goroutines ", "process_resident_memory_bytes ",
	} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("the scrape has no %q", want)
		}
	}
	// The audit log is counted: server.start at least (and the setup link).
	m := regexp.MustCompile(`parley_audit_entries_total\{class="server",outcome="success"\} (\d+)`).FindSubmatch(body)
	if m == nil || string(m[1]) == "0" {
		t.Errorf("server.start was not counted: %q", m)
	}
	resp, err = c.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /: %d, want 404", resp.StatusCode)
	}

	if code := stop(); code != 0 {
		t.Fatalf("serve exited %d", code)
	}
	c.CloseIdleConnections()
	if conn, err := net.DialTimeout("tcp", addr, 5*time.Second); err == nil {
		conn.Close()
		t.Error("the metrics endpoint still accepts connections after serve stopped")
	}
}

func TestServeMetricsOff(t *testing.T) {
	_, logs, stop := serveInProcess(t, []string{"--data-dir", t.TempDir(), "--metrics-listen", "off"}, nil)
	stop()
	if metricsAddr(logs.String()) != "" || !strings.Contains(logs.String(), "metrics endpoint is off") {
		t.Errorf("--metrics-listen off: %s", logs.String())
	}
}

func TestServeMetricsWarnsWhenNotLoopback(t *testing.T) {
	// 0.0.0.0 with a free port: reachable from other machines, so serve warns.
	_, logs, stop := serveInProcess(t, []string{"--data-dir", t.TempDir(), "--metrics-listen", "0.0.0.0:0"}, nil)
	stop()
	if !strings.Contains(logs.String(), "reachable from other machines") {
		t.Errorf("no warning for a metrics endpoint on every interface: %s", logs.String())
	}
}

func TestServeMetricsListenErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyAddr := busy.Addr().String()

	free := freeTCPPort(t)
	dir := t.TempDir()
	for _, c := range []struct {
		name string
		args []string
		code int
	}{
		{"the HTTPS port", []string{"--listen", "127.0.0.1:" + free, "--metrics-listen", "127.0.0.1:" + free}, 2},
		{"the HTTPS port, every interface", []string{"--listen", "127.0.0.1:" + free, "--metrics-listen", "0.0.0.0:" + free}, 2},
		{"the HTTPS port, localhost", []string{"--listen", "localhost:" + free, "--metrics-listen", "127.0.0.1:" + free}, 2},
		{"a port in use", []string{"--listen", "127.0.0.1:0", "--metrics-listen", busyAddr}, 1},
		{"the profiler on every interface", []string{"--listen", "127.0.0.1:0", "--metrics-listen", "0.0.0.0:0", "--debug-pprof"}, 2},
		{"the profiler without the metrics listener", []string{"--listen", "127.0.0.1:0", "--metrics-listen", "off", "--debug-pprof"}, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			args := append([]string{"serve", "--data-dir", filepath.Join(dir, "data"), "--media-udp-port", "0",
				"--media-tcp-port", "-1"}, turnTestArgs...)
			code, _, stderr := runCmd(ctx, append(args, c.args...), nil)
			if code != c.code || !strings.Contains(stderr, "--metrics-listen") && !strings.Contains(stderr, "--debug-pprof") {
				t.Errorf("exit %d (want %d), stderr: %s", code, c.code, stderr)
			}
		})
	}
}

// freeTCPPort is a loopback TCP port that was free a moment ago.
func freeTCPPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

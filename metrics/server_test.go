package metrics_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parley-meet/parley/metrics"
)

// serve starts a metrics server for reg on a free loopback port.
func serve(t *testing.T, reg *metrics.Registry) (base string, srv *metrics.Server) {
	return serveWith(t, reg, metrics.Serve)
}

func serveWith(t *testing.T, reg *metrics.Registry, serveFunc func(net.Listener, http.Handler, *slog.Logger) *metrics.Server) (base string, srv *metrics.Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv = serveFunc(ln, reg.Handler(nil), nil)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return "http://" + srv.Addr().String(), srv
}

func get(t *testing.T, c *http.Client, method, url string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(body)
}

func TestServerServesOnlyMetrics(t *testing.T) {
	reg := metrics.New("test")
	reg.ObserveJoin(time.Second)
	base, srv := serve(t, reg)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	defer c.CloseIdleConnections()

	code, h, body := get(t, c, "GET", base+"/metrics")
	if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics: %d %v", code, h)
	}
	for _, want := range []string{`parley_build_info{version="test"} 1`, "parley_join_wait_seconds_count 1", "go_goroutines ", "process_start_time_seconds "} {
		if !strings.Contains(body, want) {
			t.Errorf("the scrape has no %q", want)
		}
	}
	for _, path := range []string{"/", "/metrics/", "/metrics.json", "/debug/pprof/", "/healthz"} {
		if code, _, _ := get(t, c, "GET", base+path); code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, code)
		}
	}
	if code, _, _ := get(t, c, "POST", base+"/metrics"); code != http.StatusMethodNotAllowed {
		t.Errorf("POST /metrics: %d, want 405", code)
	}
	if code, _, _ := get(t, c, "HEAD", base+"/metrics"); code != 200 {
		t.Errorf("HEAD /metrics: %d", code)
	}

	// Close stops serving: the port no longer answers.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Close(ctx); err != nil {
		t.Fatal(err)
	}
	c.CloseIdleConnections()
	if _, err := c.Get(base + "/metrics"); err == nil {
		t.Error("the server still answers after Close")
	}
}

func TestServerWithProfiler(t *testing.T) {
	base, _ := serveWith(t, metrics.New("test"), metrics.ServeWithProfiler)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	if code, _, body := get(t, c, "GET", base+"/debug/pprof/heap?debug=1"); code != 200 || !strings.Contains(body, "heap profile") {
		t.Errorf("GET /debug/pprof/heap: %d %.80q", code, body)
	}
	if code, _, body := get(t, c, "GET", base+"/debug/pprof/goroutine?debug=1"); code != 200 || !strings.Contains(body, "goroutine profile") {
		t.Errorf("GET /debug/pprof/goroutine: %d %.80q", code, body)
	}
	if code, _, _ := get(t, c, "GET", base+"/metrics"); code != 200 {
		t.Errorf("GET /metrics: %d", code)
	}
	if code, _, _ := get(t, c, "GET", base+"/"); code != http.StatusNotFound {
		t.Errorf("GET /: %d, want 404", code)
	}
}

package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/parley-meet/parley/audit"
	"github.com/parley-meet/parley/auth"
	"github.com/parley-meet/parley/config"
	"github.com/parley-meet/parley/internal/leakcheck"
	"github.com/parley-meet/parley/internal/syncbuf"
	"github.com/parley-meet/parley/rbac"
	"github.com/parley-meet/parley/store"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

// testServer is a real server on 127.0.0.1:0.
type testServer struct {
	*Server
	base   string
	client *http.Client
	logs   *syncbuf.Buffer
	store  *store.Store
	keys   *auth.Keyring
	authz  *rbac.Authorizer
	clock  *fakeClock
	pool   *x509.CertPool
	done   chan error
}

// fakeClock is the time the auth service sees; tests move it.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type serverOpt func(cfg *config.Config)

// startServer starts a server with the default configuration (changed by
// opts), a fresh SQLite store and a self-signed certificate. extra adds
// test-only routes before it starts.
func startServer(t *testing.T, extra func(s *Server), opts ...serverOpt) *testServer {
	t.Helper()
	cfg, err := config.Load("serve", []string{"--data-dir", t.TempDir(), "--log-level", "debug"}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range opts {
		o(cfg)
	}
	st, err := store.Open(context.Background(), store.Options{DataDir: cfg.DataDir})
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncbuf.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var tlsCfg *tls.Config
	pool := x509.NewCertPool()
	if !cfg.InsecureHTTP {
		setup, err := NewTLS(TLSOptions{DataDir: cfg.DataDir, PublicHost: cfg.PublicURL.Hostname()})
		if err != nil {
			t.Fatal(err)
		}
		tlsCfg = setup.Config
		pool.AddCert(setup.Config.Certificates[0].Leaf)
	}
	// In the future: the session cookie's Expires follows this clock, and
	// the test client's cookie jar compares it with the real time (a date
	// in the past made every test fail once the real day passed its
	// sessions' 12-hour lifetime).
	clock := &fakeClock{t: time.Date(2036, 11, 26, 9, 0, 10, 0, time.UTC)}
	keys, _, err := auth.LoadKeyring(cfg.DataDir, "")
	if err != nil {
		t.Fatal(err)
	}
	policy, _ := auth.NewPasswordPolicy(cfg.PasswordMinLength)
	auditLog := audit.New(st, clock.Now)
	authz, err := rbac.New(context.Background(), st, log)
	if err != nil {
		t.Fatal(err)
	}
	authz.SetUserState(func(ctx context.Context, id string) (bool, bool, error) {
		u, err := st.UserByID(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			return false, false, nil
		}
		return err == nil, u.Disabled, err
	})
	svc, err := auth.NewService(auth.Deps{
		Store: st, Audit: auditLog, RBAC: authz, Hasher: auth.NewHasher(4), Keys: keys, Policy: policy, Now: clock.Now, Logger: log,
		Config: auth.Config{Issuer: cfg.PublicOrigin(), LoginBurst: cfg.LoginBurst, LoginPerMinute: float64(cfg.LoginPerMinute)},
	})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Deps{Config: cfg, Logger: log, Store: st, Audit: auditLog, Auth: svc, RBAC: authz, TLS: tlsCfg, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if extra != nil {
		extra(s)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{Server: s, logs: logs, store: st, keys: keys, authz: authz, clock: clock, pool: pool, done: make(chan error, 1)}
	go func() { ts.done <- s.Serve(ln) }()
	scheme := "https"
	if cfg.InsecureHTTP {
		scheme = "http"
	}
	ts.base = scheme + "://" + ln.Addr().String()
	transport := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}}
	ts.client = &http.Client{Transport: transport, Timeout: 10 * time.Second}
	t.Cleanup(func() {
		transport.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		<-ts.done
		st.Close()
	})
	return ts
}

func (ts *testServer) do(t *testing.T, method, path string, body io.Reader, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, ts.base+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := ts.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

var wantHeaders = map[string]string{
	"Strict-Transport-Security":  "max-age=31536000; includeSubDomains",
	"X-Content-Type-Options":     "nosniff",
	"Referrer-Policy":            "no-referrer",
	"Cross-Origin-Opener-Policy": "same-origin",
}

func checkSecurityHeaders(t *testing.T, what string, h http.Header) {
	t.Helper()
	for k, v := range wantHeaders {
		if got := h.Get(k); got != v {
			t.Errorf("%s: %s = %q, want %q", what, k, got, v)
		}
	}
	csp := h.Get("Content-Security-Policy")
	for _, d := range []string{"default-src 'self'", "object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, d) {
			t.Errorf("%s: CSP %q lacks %q", what, csp, d)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
		t.Errorf("%s: CSP allows unsafe code: %q", what, csp)
	}
	pp := h.Get("Permissions-Policy")
	for _, f := range []string{"camera=(self)", "microphone=(self)", "display-capture=(self)"} {
		if !strings.Contains(pp, f) {
			t.Errorf("%s: Permissions-Policy %q lacks %q", what, pp, f)
		}
	}
}

func checkJSONError(t *testing.T, what string, resp *http.Response, body []byte, status int, code string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Errorf("%s: status %d, want %d (body %s)", what, resp.StatusCode, status, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s: content type %q", what, ct)
	}
	var e struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error != code || e.Message == "" {
		t.Errorf("%s: body %s, want error %q with a message", what, body, code)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("%s: Cache-Control %q", what, cc)
	}
	checkSecurityHeaders(t, what, resp.Header)
}

func TestHealthAndReadiness(t *testing.T) {
	ts := startServer(t, nil)
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, body := ts.do(t, "GET", path, nil, nil)
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Errorf("%s: %d %s", path, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		var m map[string]string
		if err := json.Unmarshal(body, &m); err != nil || m["status"] == "" {
			t.Errorf("%s: body %s", path, body)
		}
		checkSecurityHeaders(t, path, resp.Header)
	}
	// With the store gone, the process is alive but not ready.
	ts.store.Close()
	resp, body := ts.do(t, "GET", "/readyz", nil, nil)
	checkJSONError(t, "readyz without store", resp, body, 503, "not_ready")
	if resp, _ := ts.do(t, "GET", "/healthz", nil, nil); resp.StatusCode != 200 {
		t.Errorf("healthz without store: %d", resp.StatusCode)
	}
}

func TestErrorsCarryHeadersAndNoInternals(t *testing.T) {
	ts := startServer(t, func(s *Server) {
		s.app.Get("/test/panic", func(*fiber.Ctx) error { panic("secret internal detail /etc/parley") })
		s.app.Get("/test/fail", func(*fiber.Ctx) error { return errors.New("db password=hunter2 failed") })
	})
	resp, body := ts.do(t, "GET", "/no/such/page", nil, nil)
	checkJSONError(t, "404", resp, body, 404, "not_found")
	resp, body = ts.do(t, "GET", "/api/v1/nothing", nil, nil)
	checkJSONError(t, "api 404", resp, body, 404, "not_found")
	resp, body = ts.do(t, "POST", "/healthz", nil, nil)
	checkJSONError(t, "405", resp, body, 405, "method_not_allowed")

	for _, p := range []string{"/test/panic", "/test/fail"} {
		resp, body = ts.do(t, "GET", p, nil, nil)
		checkJSONError(t, p, resp, body, 500, "internal")
		for _, leak := range []string{"secret", "hunter2", "goroutine", ".go:"} {
			if bytes.Contains(body, []byte(leak)) {
				t.Errorf("%s: body leaks %q: %s", p, leak, body)
			}
		}
	}
	if !strings.Contains(ts.logs.String(), "panic while serving a request") {
		t.Error("the panic was not logged")
	}
	// The server survived.
	if resp, _ := ts.do(t, "GET", "/healthz", nil, nil); resp.StatusCode != 200 {
		t.Errorf("after panic: %d", resp.StatusCode)
	}
	// Reflected input comes back inert: the path is not echoed.
	resp, body = ts.do(t, "GET", "/%3Cscript%3Ealert(1)%3C/script%3E?q=<script>", nil, nil)
	if bytes.Contains(body, []byte("script")) {
		t.Errorf("404 reflects input: %s", body)
	}
}

// rawRequest sends req on a fresh TLS connection while reading the answer,
// as a client that does not stop writing when the server refuses would.
func (ts *testServer) rawRequest(t *testing.T, req []byte) (*http.Response, []byte, error) {
	t.Helper()
	conn, err := tls.Dial("tcp", strings.TrimPrefix(ts.base, "https://"), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	go conn.Write(req)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, body, nil
}

func TestSizeLimits(t *testing.T) {
	ts := startServer(t, nil)
	// Just over the header limit: a 431 JSON error with every header.
	req := "GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: " + strings.Repeat("a", 17<<10) + "\r\n\r\n"
	resp, body, err := ts.rawRequest(t, []byte(req))
	if err != nil {
		t.Fatalf("17 KiB header: %v", err)
	}
	checkJSONError(t, "17 KiB header", resp, body, 431, "headers_too_large")

	// A 1 MB token is refused at once: the answer is a 431 or, when the
	// server closed before the client finished writing, a reset.
	start := time.Now()
	req = "GET /healthz HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer " + strings.Repeat("a", 1<<20) + "\r\n\r\n"
	resp, _, err = ts.rawRequest(t, []byte(req))
	if err == nil && resp.StatusCode != 431 {
		t.Errorf("1 MB header: status %d", resp.StatusCode)
	}
	if isTimeout(err) {
		t.Errorf("1 MB header: no answer: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("1 MB header took %v to refuse", d)
	}

	// A declared body over the limit is refused before it is read.
	resp, body, err = ts.rawRequest(t, []byte("POST /healthz HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1048577\r\n\r\n{"))
	if err != nil {
		t.Fatalf("body over 1 MiB: %v", err)
	}
	checkJSONError(t, "body over 1 MiB", resp, body, 413, "body_too_large")
	if resp, _ := ts.do(t, "GET", "/healthz", nil, nil); resp.StatusCode != 200 {
		t.Errorf("after refusals: %d", resp.StatusCode)
	}
}

func TestTLSPolicy(t *testing.T) {
	ts := startServer(t, nil)
	addr := strings.TrimPrefix(ts.base, "https://")
	for name, c := range map[string]*tls.Config{
		"TLS 1.1":         {MaxVersion: tls.VersionTLS11, InsecureSkipVerify: true},
		"TLS 1.0":         {MaxVersion: tls.VersionTLS10, InsecureSkipVerify: true},
		"TLS 1.2 CBC/RSA": {MaxVersion: tls.VersionTLS12, InsecureSkipVerify: true, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_RSA_WITH_AES_128_GCM_SHA256}},
	} {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, c)
		if err == nil {
			conn.Close()
			t.Errorf("%s handshake succeeded", name)
		}
	}
	conn, err := tls.Dial("tcp", addr, &tls.Config{MaxVersion: tls.VersionTLS12, InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("TLS 1.2 AEAD refused: %v", err)
	}
	conn.Close()

	// Plain HTTP on the TLS port gets no HTTP answer.
	plain := &http.Client{Timeout: 5 * time.Second}
	if resp, err := plain.Get("http://" + addr + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("plain HTTP was served on the TLS port")
		}
	}
}

func TestSlowlorisCutByReadTimeout(t *testing.T) {
	ts := startServer(t, nil, func(c *config.Config) { c.ReadTimeout = time.Second })
	addr := strings.TrimPrefix(ts.base, "https://")

	// A header block dripped a line at a time.
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	if _, err := conn.Write([]byte("GET /healthz HTTP/1.1\r\nHost: localhost\r\n")); err != nil {
		t.Fatal(err)
	}
	cut := false
	for i := 0; i < 40 && !cut; i++ {
		time.Sleep(250 * time.Millisecond)
		if _, err := conn.Write([]byte("X-Drip: 1\r\n")); err != nil {
			cut = true
		}
		// A normal client keeps being served meanwhile.
		if i == 2 {
			if resp, _ := ts.do(t, "GET", "/healthz", nil, nil); resp.StatusCode != 200 {
				t.Errorf("normal request during slowloris: %d", resp.StatusCode)
			}
		}
	}
	if !cut {
		t.Fatalf("slow header connection still open after %v", time.Since(start))
	}

	// A connection that never starts the TLS handshake is closed too.
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetReadDeadline(time.Now().Add(10 * time.Second))
	start = time.Now()
	if _, err := raw.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Errorf("silent connection: read = %v after %v, want the server to close it", err, time.Since(start))
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestGracefulShutdownFinishesRequestsInFlight(t *testing.T) {
	started := make(chan struct{})
	ts := startServer(t, func(s *Server) {
		s.app.Get("/test/slow", func(c *fiber.Ctx) error {
			close(started)
			time.Sleep(500 * time.Millisecond)
			return c.SendString("done")
		})
	})
	type result struct {
		body string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := ts.client.Get(ts.base + "/test/slow")
		if err != nil {
			got <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		got <- result{body: string(b)}
	}()
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ts.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	r := <-got
	if r.err != nil || r.body != "done" {
		t.Errorf("request in flight: %q, %v", r.body, r.err)
	}
	select {
	case err := <-ts.done:
		if err != nil {
			t.Errorf("Serve returned %v", err)
		}
		ts.done <- nil // for the cleanup
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after Shutdown")
	}
	if _, err := ts.client.Get(ts.base + "/healthz"); err == nil {
		t.Error("server still answers after shutdown")
	}
}

func TestInsecureHTTPBehindProxy(t *testing.T) {
	ts := startServer(t, func(s *Server) {
		s.app.Get("/test/ip", func(c *fiber.Ctx) error { return c.SendString(s.ClientIP(c)) })
	}, func(c *config.Config) {
		c.InsecureHTTP = true
		c.PublicURL, _ = url.Parse("https://meet.example.org")
	})
	resp, body := ts.do(t, "GET", "/test/ip", nil, map[string]string{"X-Forwarded-For": "203.0.113.9"})
	if resp.StatusCode != 200 || string(body) != "127.0.0.1" {
		t.Errorf("untrusted X-Forwarded-For believed: %d %s", resp.StatusCode, body)
	}
	checkSecurityHeaders(t, "insecure-http", resp.Header)
}

func TestTrustedProxyDecidesClientIP(t *testing.T) {
	ts := startServer(t, func(s *Server) {
		s.app.Get("/test/ip", func(c *fiber.Ctx) error { return c.SendString(s.ClientIP(c)) })
	}, func(c *config.Config) {
		c.TrustedProxies = mustPrefixes("127.0.0.0/8")
		c.ReadTimeout = 5 * time.Second
	})
	resp, body := ts.do(t, "GET", "/test/ip", nil, map[string]string{"X-Forwarded-For": "198.51.100.1, 203.0.113.9"})
	if resp.StatusCode != 200 || string(body) != "203.0.113.9" {
		t.Errorf("client behind a trusted proxy = %s", body)
	}
}

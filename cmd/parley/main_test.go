package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/parley-meet/parley/config"
	"github.com/parley-meet/parley/internal/leakcheck"
	"github.com/parley-meet/parley/internal/syncbuf"
	"github.com/parley-meet/parley/store"
	"github.com/parley-meet/parley/store/storetest"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

// syncBuffer is what a command writes to while the test reads it.
type syncBuffer = syncbuf.Buffer

// runCmd runs a command in-process and returns its status and output.
func runCmd(ctx context.Context, args []string, environ map[string]string) (int, string, string) {
	var out, errOut syncBuffer
	code := run(ctx, args, env{getenv: func(k string) string { return environ[k] }, stdout: &out, stderr: &errOut})
	return code, out.String(), errOut.String()
}

func TestConfigurationErrorsExit2(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	os.WriteFile(garbage, []byte("not a certificate"), 0o600)
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", []string{"serve", "--frobnicate"}, "frobnicate"},
		{"unknown command", []string{"frobnicate"}, "unknown command"},
		{"no command", nil, "Usage"},
		{"bad database URL scheme", []string{"serve", "--database-url", "mysql://h/db"}, "--database-url"},
		{"unparseable database URL", []string{"serve", "--database-url", "postgres://u@h:notaport/db"}, "--database-url"},
		{"database URL pgx refuses", []string{"serve", "--database-url", "postgres://h/db?sslmode=bogus"}, "--database-url"},
		{"unreachable database", []string{"serve", "--database-url", "postgres://parley:pw@127.0.0.1:1/parley?sslmode=disable&connect_timeout=1"}, "--database-url"},
		{"missing certificate", []string{"serve", "--tls-cert", filepath.Join(dir, "none.pem"), "--tls-key", garbage}, "--tls-cert"},
		{"unreadable certificate", []string{"serve", "--tls-cert", garbage, "--tls-key", garbage}, "--tls-cert"},
		{"certificate without key", []string{"serve", "--tls-cert", garbage}, "--tls-cert"},
		{"bad listen", []string{"serve", "--listen", "everywhere"}, "--listen"},
		{"ICE-TCP on the HTTPS port", []string{"serve", "--listen", "127.0.0.1:9443", "--media-tcp-port", "9443"}, "--media-tcp-port"},
		{"recording recipient that is not one", []string{"serve", "--recording-recipients", "age1notavalidrecipientatall", "--media-udp-port", "0", "--media-tcp-port", "-1", "--turn=false"}, "--recording-recipients"},
		{"recording recipient syntax", []string{"serve", "--recording-recipients", "ssh-ed25519 AAAA"}, "--recording-recipients"},
		{"recording identity file missing", []string{"serve", "--recording-identity-file", filepath.Join(dir, "none.txt"), "--media-udp-port", "0", "--media-tcp-port", "-1", "--turn=false"}, "--recording-identity-file"},
		{"recording identity file garbage", []string{"serve", "--recording-identity-file", garbage, "--media-udp-port", "0", "--media-tcp-port", "-1", "--turn=false"}, "--recording-identity-file"},
		{"retention", []string{"serve", "--recording-retention", "3weeks"}, "--recording-retention"},
		{"audit without verify", []string{"audit"}, "Usage"},
		{"audit verify, no database", []string{"audit", "verify", "--data-dir", filepath.Join(dir, "empty")}, "--data-dir"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			args := c.args
			if len(args) > 0 && args[0] == "serve" {
				args = append([]string{"serve", "--data-dir", filepath.Join(dir, "data"), "--listen", "127.0.0.1:0"}, args[1:]...)
			}
			code, _, stderr := runCmd(ctx, args, nil)
			if code != 2 {
				t.Errorf("exit %d, want 2; stderr: %s", code, stderr)
			}
			if !strings.Contains(stderr, c.want) {
				t.Errorf("stderr does not mention %q: %s", c.want, stderr)
			}
			if strings.Contains(stderr, ":pw@") {
				t.Errorf("stderr leaks the database password: %s", stderr)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "empty")); !os.IsNotExist(err) {
		t.Error("audit verify created a data directory")
	}
}

func TestHelpListsEveryOption(t *testing.T) {
	code, out, stderr := runCmd(context.Background(), []string{"serve", "--help"}, nil)
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, o := range config.Options() {
		want := "-" + o.Name
		if o.EnvOnly {
			want = o.Env()
		}
		if !strings.Contains(out+stderr, want) {
			t.Errorf("--help does not list %s", want)
		}
	}
}

// serveInProcess starts `parley serve` in-process and returns its base URL
// once it listens; stop ends it and returns its exit status.
func serveInProcess(t *testing.T, args []string, environ map[string]string) (base string, logs *syncBuffer, stop func() int) {
	base, logs, _, stop = serveWithStdout(t, args, environ)
	return base, logs, stop
}

// serveWithStdout is serveInProcess that also returns what serve printed
// on standard output (the first-run setup link).
func serveWithStdout(t *testing.T, args []string, environ map[string]string) (base string, logs, stdout *syncBuffer, stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs, stdout = &syncBuffer{}, &syncBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, append(append([]string{"serve", "--listen", "127.0.0.1:0", "--log-format", "json",
			"--media-udp-port", "0", "--media-tcp-port", "0", "--metrics-listen", "127.0.0.1:0"}, turnTestArgs...), args...),
			env{getenv: func(k string) string { return environ[k] }, stdout: stdout, stderr: logs})
	}()
	deadline := time.Now().Add(20 * time.Second)
	for base == "" {
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("server did not start: %s", logs.String())
		}
		select {
		case code := <-done:
			cancel()
			t.Fatalf("serve exited %d: %s", code, logs.String())
		case <-time.After(20 * time.Millisecond):
		}
		base = listeningAddr(logs.String())
	}
	stopped := false
	code := 0
	stop = func() int {
		if !stopped {
			stopped = true
			cancel()
			code = <-done
		}
		return code
	}
	t.Cleanup(func() { stop() })
	return "https://" + base, logs, stdout, stop
}

func listeningAddr(logs string) string {
	for _, line := range strings.Split(logs, "\n") {
		var rec struct {
			Msg  string `json:"msg"`
			Addr string `json:"addr"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "Parley is listening" {
			return rec.Addr
		}
	}
	return ""
}

func insecureClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
}

func TestServeThenVerifyAndTamper(t *testing.T) {
	storetest.Each(t, func(t *testing.T, tg storetest.Target) {
		o := tg.Options(t)
		dataDir := o.DataDir
		if dataDir == "" {
			dataDir = t.TempDir()
		}
		storeArgs := []string{"--data-dir", dataDir}
		if o.DatabaseURL != "" {
			storeArgs = append(storeArgs, "--database-url", o.DatabaseURL)
		}
		base, logs, stdout, stop := serveWithStdout(t, storeArgs, nil)
		resp, err := insecureClient().Get(base + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Strict-Transport-Security") == "" || resp.Header.Get("Content-Security-Policy") == "" {
			t.Errorf("healthz: %d %v", resp.StatusCode, resp.Header)
		}
		if !regexp.MustCompile(`"sha256":"([0-9A-F]{2}:){31}[0-9A-F]{2}"`).MatchString(logs.String()) {
			t.Errorf("the self-signed certificate's fingerprint was not logged: %s", logs.String())
		}
		// First start: the setup link goes to standard output, not the log.
		link := regexp.MustCompile(`https://localhost:8443/setup#[A-Za-z0-9_-]{43}`).FindString(stdout.String())
		if link == "" {
			t.Errorf("no setup link on standard output: %q", stdout.String())
		} else if strings.Contains(logs.String(), link[strings.Index(link, "#")+1:]) {
			t.Error("the setup token reached the log")
		}
		if code := stop(); code != 0 {
			t.Fatalf("serve exited %d after cancel: %s", code, logs.String())
		}

		// server.start, setup.link_issued, server.stop
		code, out, stderr := runCmd(context.Background(), append([]string{"audit", "verify"}, storeArgs...), nil)
		if code != 0 || !regexp.MustCompile(`intact: 3 entries, head [0-9a-f]{64}`).MatchString(out) {
			t.Fatalf("verify untouched chain: exit %d, %q %q", code, out, stderr)
		}
		// Environment variables select the store too.
		envArgs := map[string]string{"PARLEY_DATA_DIR": dataDir, "PARLEY_DATABASE_URL": o.DatabaseURL}
		if code, out, _ := runCmd(context.Background(), []string{"audit", "verify"}, envArgs); code != 0 || !strings.Contains(out, "3 entries") {
			t.Errorf("verify through the environment: %d %q", code, out)
		}

		db := storetest.DB(t, store.Options{DataDir: dataDir, DatabaseURL: o.DatabaseURL})
		if _, err := db.Exec(`UPDATE audit_log SET actor = 'user:mallory' WHERE seq = 1`); err != nil {
			t.Fatal(err)
		}
		code, out, _ = runCmd(context.Background(), append([]string{"audit", "verify"}, storeArgs...), nil)
		if code != 1 || !strings.Contains(out, "first broken entry is 1") {
			t.Errorf("verify edited chain: exit %d, %q", code, out)
		}
	})
}

func TestNoSecretsInLogs(t *testing.T) {
	base := os.Getenv(storetest.EnvDatabaseURL)
	if base == "" {
		t.Skip(storetest.EnvDatabaseURL + " is not set")
	}
	// PostgreSQL here trusts local connections, so any password works: the
	// point is that it is never printed.
	u, _ := url.Parse(base)
	u.User = url.UserPassword(u.User.Username(), "very-secret-db-password")
	_, logs, stop := serveInProcess(t, []string{"--data-dir", t.TempDir(), "--database-url", u.String(), "--log-level", "debug"}, nil)
	stop()
	if strings.Contains(logs.String(), "very-secret-db-password") {
		t.Errorf("the database password reached the log: %s", logs.String())
	}
}

// TestBinaryLifecycle runs the real binary: it starts, serves, answers the
// container health check, and stops cleanly on SIGTERM.
func TestBinaryLifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "parley")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		t.Fatalf("go build: %v", err)
	}
	dataDir := t.TempDir()
	cmd := exec.Command(bin, append([]string{"serve", "--listen", "127.0.0.1:0", "--media-udp-port", "0", "--media-tcp-port", "0",
		"--metrics-listen", "127.0.0.1:0"}, turnTestArgs...)...)
	cmd.Env = append(os.Environ(), "PARLEY_DATA_DIR="+dataDir, "PARLEY_LOG_FORMAT=json")
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var addr string
	timeout := time.After(20 * time.Second)
	for addr == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("serve exited before listening")
			}
			addr = listeningAddr(l)
		case <-timeout:
			t.Fatal("serve did not start")
		}
	}
	resp, err := insecureClient().Get("https://" + addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("readyz: %d", resp.StatusCode)
	}
	hc := exec.Command(bin, "healthcheck", "--listen", addr)
	hc.Env = append(os.Environ(), "PARLEY_DATA_DIR="+dataDir)
	if out, err := hc.CombinedOutput(); err != nil || !strings.Contains(string(out), "ready") {
		t.Errorf("healthcheck: %v %s", err, out)
	}

	cmd.Process.Signal(syscall.SIGTERM)
	exited := make(chan error, 1)
	go func() {
		for range lines {
		}
		exited <- cmd.Wait()
	}()
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no exit within 15 s of SIGTERM")
	}
	hc = exec.Command(bin, "healthcheck", "--listen", addr)
	hc.Env = append(os.Environ(), "PARLEY_DATA_DIR="+dataDir)
	if err := hc.Run(); err == nil {
		t.Error("healthcheck passed with the server stopped")
	}
}

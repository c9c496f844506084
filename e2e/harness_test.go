package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/parley-meet/parley/internal/leakcheck"
	"github.com/parley-meet/parley/internal/syncbuf"
)

var (
	flagParleyBin = flag.String("parley-bin", "../bin/parley", "path to a prebuilt parley binary (relative paths are taken from the working directory)")
	flagChromium  = flag.String("chromium", "/usr/lib/chromium/chromium", "path to the Chromium binary")
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

// environment checks that the test runs where it may and has what it needs,
// and returns the absolute paths of the parley and Chromium binaries.
//
// Outside a private network namespace (more interfaces than lo) the test is
// skipped: the host has a real interface that a browser or a server would
// use. Inside one, everything it needs must be there, because CI runs it
// there on purpose.
func environment(t *testing.T) (parleyBin, chromium string) {
	t.Helper()
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatalf("listing network interfaces: %v", err)
	}
	var names []string
	for _, ifc := range ifs {
		names = append(names, ifc.Name)
	}
	if len(ifs) != 1 || ifs[0].Name != "lo" {
		t.Skipf("not inside a private network namespace (interfaces: %s): browser tests run only where "+
			"lo is the one interface; run `make e2e`, which runs them under `unshare -n`", strings.Join(names, ", "))
	}
	if ifs[0].Flags&net.FlagUp == 0 {
		t.Fatal("lo is down in this network namespace: run `ip link set lo up` first (make e2e does)")
	}

	chromium = *flagChromium
	if fi, err := os.Stat(chromium); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		msg := fmt.Sprintf("no Chromium at %s (-chromium flag): install Debian's chromium package (.ci/run does)", chromium)
		if os.Getenv("PARLEY_E2E_OPTIONAL") == "1" {
			t.Skip(msg + "; skipped because PARLEY_E2E_OPTIONAL=1")
		}
		t.Fatal(msg)
	}

	parleyBin, err = filepath.Abs(*flagParleyBin)
	if err != nil {
		t.Fatalf("-parley-bin %q: %v", *flagParleyBin, err)
	}
	if fi, err := os.Stat(parleyBin); err != nil || fi.IsDir() {
		wd, _ := os.Getwd()
		t.Fatalf("no parley binary at %s (-parley-bin %q, working directory %s): build it with "+
			"`go build -o bin/parley ./cmd/parley` or run `make e2e`", parleyBin, *flagParleyBin, wd)
	}
	return parleyBin, chromium
}

// syncBuffer is what a child process writes to while the test reads it.
type syncBuffer = syncbuf.Buffer

// waitFor polls cond every 50 ms until it is true, ctx ends or the process
// behind exited ends. It returns why it stopped.
func waitFor(ctx context.Context, exited <-chan struct{}, what string, cond func() bool) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if cond() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-exited:
			if cond() {
				return nil
			}
			return fmt.Errorf("waiting for %s: the process exited", what)
		case <-tick.C:
		}
	}
}

// freeLoopbackPort asks the kernel for a free TCP port on 127.0.0.1. Parley
// needs its port before it starts, because --public-url names it.
func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if err := ln.Close(); err != nil {
		t.Fatalf("closing the probe listener: %v", err)
	}
	return port
}

// parleyServer is a running `parley serve` on loopback with its own data
// directory.
type parleyServer struct {
	bin       string
	dataDir   string
	publicURL string // https://127.0.0.1:PORT
	setupLink string // https://127.0.0.1:PORT/setup#<token>
	stdout    *syncBuffer
	stderr    *syncBuffer
	port      int
	extra     []string
	// kill ends the process with SIGKILL, as a crash would (the test's
	// cleanup then has nothing to stop).
	kill func()
}

var (
	setupLinkRE  = regexp.MustCompile(`https://\S+/setup#\S+`)
	enrollLinkRE = regexp.MustCompile(`https://\S+/enroll#\S+`)
)

// startParley starts the parley binary on a free loopback port, waits until
// /readyz answers, and reads the first-run setup link from its stdout. It is
// stopped (SIGTERM, then SIGKILL) when the test ends; a server that does not
// stop cleanly fails the test.
//
// extra are more arguments of `parley serve`, such as the media options of
// the meeting test.
func startParley(ctx context.Context, t *testing.T, bin string, extra ...string) *parleyServer {
	t.Helper()
	dataDir := t.TempDir()
	var lastErr error
	// A free port can be taken between the probe and the server's bind, so
	// try a few ports.
	for attempt := 0; attempt < 3; attempt++ {
		srv, err := tryStartParley(ctx, t, bin, dataDir, freeLoopbackPort(t), true, extra...)
		if err == nil {
			return srv
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	t.Fatalf("parley serve did not start: %v", lastErr)
	return nil
}

// restart starts parley serve again on s's port and data directory (after
// s.kill), with the same options; the first-run setup is behind it.
func (s *parleyServer) restart(ctx context.Context, t *testing.T) *parleyServer {
	t.Helper()
	srv, err := tryStartParley(ctx, t, s.bin, s.dataDir, s.port, false, s.extra...)
	if err != nil {
		t.Fatalf("parley serve did not start again: %v", err)
	}
	return srv
}

// tryStartParley starts parley serve; firstRun: wait for the setup link.
func tryStartParley(ctx context.Context, t *testing.T, bin, dataDir string, port int, firstRun bool, extra ...string) (*parleyServer, error) {
	t.Helper()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s := &parleyServer{
		bin:       bin,
		dataDir:   dataDir,
		publicURL: "https://" + addr,
		stdout:    &syncBuffer{},
		stderr:    &syncBuffer{},
		port:      port,
		extra:     extra,
	}
	args := append([]string{"serve",
		"--listen", addr,
		"--public-url", s.publicURL,
		"--data-dir", dataDir,
		"--log-format", "json",
		// Media on a free UDP port of 127.0.0.1 (the host of --listen) and
		// no ICE-TCP, so that no fixed port can clash.
		"--media-udp-port", "0",
		"--media-tcp-port", "-1",
		// TURN on free ports too (its tests allow it to relay to loopback
		// where they need it).
		"--turn-udp-port", "0",
		"--turn-tcp-port", "0",
		"--turn-tls-port", "0",
		"--turn-relay-ports", "0"}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Stdout = s.stdout
	cmd.Stderr = s.stderr
	cmd.Env = parleyEnv()
	// If the test binary dies (a -test.timeout panic), so does the server.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()

	stopped := false
	s.kill = func() {
		if !stopped {
			stopped = true
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		select {
		case <-exited:
			return fmt.Errorf("parley serve exited early: %v", waitErr)
		default:
		}
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			return fmt.Errorf("SIGTERM: %w", err)
		}
		select {
		case <-exited:
			if waitErr != nil {
				return fmt.Errorf("parley serve ended with %v after SIGTERM", waitErr)
			}
			return nil
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			return errors.New("parley serve did not stop within 15 s of SIGTERM; killed")
		}
	}

	startCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	listening := func() bool {
		return strings.Contains(s.stderr.String(), `"msg":"Parley is listening"`)
	}
	if err := waitFor(startCtx, exited, "the listening log line", listening); err != nil {
		_ = stop()
		return nil, fmt.Errorf("%w\nstderr:\n%s", err, s.stderr.String())
	}

	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("stopping parley serve: %v", err)
		}
		if t.Failed() {
			t.Logf("parley serve stdout:\n%s\nparley serve stderr:\n%s", s.stdout.String(), s.stderr.String())
		}
	})

	if err := s.waitReady(startCtx, exited); err != nil {
		t.Fatal(err)
	}
	if !firstRun {
		return s, nil
	}
	if err := waitFor(startCtx, exited, "the setup link on stdout", func() bool {
		s.setupLink = setupLinkRE.FindString(s.stdout.String())
		return s.setupLink != ""
	}); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(s.setupLink, s.publicURL+"/setup#") {
		t.Fatalf("setup link %q does not start with the public URL %s", s.setupLink, s.publicURL)
	}
	return s, nil
}

// parleyEnv is the environment for parley processes: the test's own, less
// any PARLEY_* setting that would change what the test asked for.
func parleyEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PARLEY_") {
			env = append(env, kv)
		}
	}
	return env
}

// waitReady polls /readyz over TLS, trusting only the server's own
// self-signed certificate, until it answers 200.
func (s *parleyServer) waitReady(ctx context.Context, exited <-chan struct{}) error {
	pem, err := os.ReadFile(filepath.Join(s.dataDir, "tls", "selfsigned.crt"))
	if err != nil {
		return fmt.Errorf("reading the self-signed certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return errors.New("the self-signed certificate file holds no certificate")
	}
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		DisableKeepAlives: true, // no idle connection (and goroutine) outlives the check
		Proxy:             nil,  // loopback only, never through a proxy from the environment
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 2 * time.Second}
	var last string
	err = waitFor(ctx, exited, s.publicURL+"/readyz", func() bool {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.publicURL+"/readyz", nil)
		if err != nil {
			last = err.Error()
			return false
		}
		resp, err := client.Do(req)
		if err != nil {
			last = err.Error()
			return false
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		_ = resp.Body.Close()
		last = fmt.Sprintf("%d %s", resp.StatusCode, body)
		return resp.StatusCode == http.StatusOK
	})
	if err != nil {
		return fmt.Errorf("%w (last answer: %s)", err, last)
	}
	return nil
}

// addUser runs `parley user add` against the server's data directory, as an
// operator would while the server runs, and returns the enrolment link.
func (s *parleyServer) addUser(ctx context.Context, t *testing.T, username string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.bin, "user", "add",
		"--username", username,
		"--data-dir", s.dataDir,
		"--public-url", s.publicURL,
		"--log-format", "json")
	cmd.Env = parleyEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("parley user add --username %s: %v\nstdout:\n%s\nstderr:\n%s", username, err, stdout.String(), stderr.String())
	}
	link := enrollLinkRE.FindString(stdout.String())
	if link == "" {
		t.Fatalf("parley user add printed no enrolment link:\nstdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	}
	if !strings.HasPrefix(link, s.publicURL+"/enroll#") {
		t.Fatalf("enrolment link %q does not start with the public URL %s", link, s.publicURL)
	}
	return link
}

// addUserWithPassword runs `parley user add --password-stdin` against the
// server's data directory, piping the password on standard input as an
// operator's script would. The account has a password and no authenticator
// yet (it enrols TOTP at its first sign-in).
func (s *parleyServer) addUserWithPassword(ctx context.Context, t *testing.T, a account) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	args := []string{"user", "add",
		"--username", a.username,
		"--password-stdin",
		"--data-dir", s.dataDir,
		"--public-url", s.publicURL,
		"--log-format", "json"}
	if a.displayName != "" {
		args = append(args, "--display-name", a.displayName)
	}
	cmd := exec.CommandContext(ctx, s.bin, args...)
	cmd.Env = parleyEnv()
	cmd.Stdin = strings.NewReader(a.password + "\n")
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("parley user add --username %s --password-stdin: %v\nstdout:\n%s\nstderr:\n%s", a.username, err, stdout.String(), stderr.String())
	}
	if !strings.Contains(stdout.String(), "created "+a.username) {
		t.Fatalf("parley user add did not say it created %s:\nstdout:\n%s\nstderr:\n%s", a.username, stdout.String(), stderr.String())
	}
	if link := enrollLinkRE.FindString(stdout.String()); link != "" {
		t.Errorf("parley user add --password-stdin printed an enrolment link anyway: %s", link)
	}
}

// TOTP as Parley uses it: RFC 6238, SHA-1, 6 digits, 30-second steps.
const totpPeriod = 30

func totpStep(at time.Time) int64 { return at.Unix() / totpPeriod }

// totpCode computes the code for the step that holds at, as an
// authenticator app would.
func totpCode(t *testing.T, secret string, at time.Time) string {
	t.Helper()
	code, err := totp.GenerateCodeCustom(secret, at, totp.ValidateOpts{
		Period:    totpPeriod,
		Digits:    otp.DigitsSix,
		Algorithm: otp.AlgorithmSHA1,
	})
	if err != nil {
		t.Fatalf("computing a TOTP code: %v", err)
	}
	return code
}

// freshTOTP returns a code and its step, computed at least two seconds
// before the step ends so that the server checks it in the same step.
// If after is given, the step is later than after: the server refuses a
// code whose step is not later than the last one it accepted.
func freshTOTP(ctx context.Context, t *testing.T, secret string, after ...int64) (string, int64) {
	t.Helper()
	for {
		now := time.Now()
		step := totpStep(now)
		stepEnd := time.Unix((step+1)*totpPeriod, 0)
		late := stepEnd.Sub(now) < 2*time.Second
		replay := len(after) > 0 && step <= after[0]
		if !late && !replay {
			return totpCode(t, secret, now), step
		}
		wait := time.Until(stepEnd) + 50*time.Millisecond
		t.Logf("waiting %v for the next TOTP step", wait.Round(100*time.Millisecond))
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for the next TOTP step: %v", ctx.Err())
		case <-time.After(wait):
		}
	}
}

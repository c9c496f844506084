package e2e

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// consoleWatcher collects what a page reports that a working page must not:
// console.error and console.assert calls, uncaught exceptions and unhandled
// rejections, browser log entries at level error or about the Content
// Security Policy (a CSP violation is one of those), and JavaScript dialogs
// (alert, confirm, prompt: Parley's pages never open one, so one is script
// that should not have run). Its listen method is a chromedp listener: it
// runs on the tab's reading goroutine and only appends under a lock.
type consoleWatcher struct {
	mu       sync.Mutex
	problems []string
	notes    []string // warnings and other entries, logged but not failed
	allowed  []allowedHTTPError
	dialogs  int
}

// dialogCount is how many JavaScript dialogs opened so far.
func (w *consoleWatcher) dialogCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.dialogs
}

// allowedHTTPError is an error status that a page's request may get as part
// of its normal work; see allowHTTPError.
type allowedHTTPError struct {
	path   string
	status int
}

// allowHTTPError accepts, from now on, the console entry Chromium writes
// ("Failed to load resource: the server responded with a status of 401")
// when a request for exactly this path answers this status: a page learns
// some things only that way, such as the join page, which asks /api/v1/me
// to know whether its visitor is signed in. The entry becomes a note; every
// other failed request stays a problem.
func (w *consoleWatcher) allowHTTPError(path string, status int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.allowed = append(w.allowed, allowedHTTPError{path: path, status: status})
}

var failedStatus = regexp.MustCompile(`status of (\d{3})\b`)

// expectedHTTPError reports whether a network log entry is one that
// allowHTTPError accepted.
func (w *consoleWatcher) expectedHTTPError(e *log.Entry) bool {
	if e.Source != log.EntrySourceNetwork || e.URL == "" {
		return false
	}
	u, err := url.Parse(e.URL)
	if err != nil {
		return false
	}
	m := failedStatus.FindStringSubmatch(e.Text)
	if m == nil {
		return false
	}
	status, _ := strconv.Atoi(m[1])
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, a := range w.allowed {
		if a.path == u.Path && a.status == status {
			return true
		}
	}
	return false
}

func (w *consoleWatcher) listen(ev any) {
	var problem, note string
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		text := remoteArgs(ev.Args)
		switch ev.Type {
		case runtime.ConsoleAPICalledTypeError, runtime.ConsoleAPICalledTypeAssert:
			problem = fmt.Sprintf("console.%s: %s%s", ev.Type, text, stackTop(ev.StackTrace))
		case runtime.ConsoleAPICalledTypeWarning:
			note = "console.warn: " + text
		}
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		text := d.Text
		if d.Exception != nil && d.Exception.Description != "" {
			text += " " + d.Exception.Description
		}
		problem = fmt.Sprintf("uncaught exception: %s at %s:%d:%d", text, d.URL, d.LineNumber+1, d.ColumnNumber+1)
	case *cdppage.EventJavascriptDialogOpening:
		problem = fmt.Sprintf("a JavaScript %s dialog opened on %s: %q", ev.Type, ev.URL, ev.Message)
		w.mu.Lock()
		w.dialogs++
		w.mu.Unlock()
	case *log.EventEntryAdded:
		e := ev.Entry
		where := ""
		if e.URL != "" {
			where = fmt.Sprintf(" (%s:%d)", e.URL, e.LineNumber+1)
		}
		msg := fmt.Sprintf("browser log [%s/%s]: %s%s", e.Source, e.Level, e.Text, where)
		switch {
		case isCSPText(e.Text):
			problem = msg
		case e.Level == log.EntryLevelError && w.expectedHTTPError(e):
			note = "expected: " + msg
		case e.Level == log.EntryLevelError:
			problem = msg
		case e.Level == log.EntryLevelWarning:
			note = msg
		}
	}
	if problem == "" && note == "" {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if problem != "" {
		w.problems = append(w.problems, problem)
	}
	if note != "" {
		w.notes = append(w.notes, note)
	}
}

func isCSPText(s string) bool {
	return strings.Contains(s, "Content Security Policy") || strings.Contains(s, "Content-Security-Policy")
}

func remoteArgs(args []*runtime.RemoteObject) string {
	parts := make([]string, 0, len(args))
	for _, a := range args {
		switch {
		case a == nil:
		case a.Description != "":
			parts = append(parts, a.Description)
		case len(a.Value) > 0:
			parts = append(parts, strings.Trim(string(a.Value), `"`))
		default:
			parts = append(parts, string(a.Type))
		}
	}
	return strings.Join(parts, " ")
}

func stackTop(st *runtime.StackTrace) string {
	if st == nil || len(st.CallFrames) == 0 {
		return ""
	}
	f := st.CallFrames[0]
	return fmt.Sprintf(" at %s:%d:%d", f.URL, f.LineNumber+1, f.ColumnNumber+1)
}

// check fails the test with every problem seen since the last check, and
// logs the notes.
func (w *consoleWatcher) check(t *testing.T, step string) {
	t.Helper()
	w.mu.Lock()
	problems, notes := w.problems, w.notes
	w.problems, w.notes = nil, nil
	w.mu.Unlock()
	for _, n := range notes {
		t.Logf("%s: %s", step, n)
	}
	if len(problems) > 0 {
		t.Errorf("%s: the browser reported %d problem(s):\n  %s", step, len(problems), strings.Join(problems, "\n  "))
	}
}

// take removes and returns the problems seen so far that match, leaving
// the rest.
func (w *consoleWatcher) take(match func(string) bool) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var taken, rest []string
	for _, p := range w.problems {
		if match(p) {
			taken = append(taken, p)
		} else {
			rest = append(rest, p)
		}
	}
	w.problems = rest
	return taken
}

// expect waits up to five seconds for a problem that matches and removes
// it; it returns the first one, or "" when none came.
func (w *consoleWatcher) expect(match func(string) bool) string {
	deadline := time.Now().Add(5 * time.Second)
	for {
		if got := w.take(match); len(got) > 0 {
			return got[0]
		}
		if time.Now().After(deadline) {
			return ""
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// browser is a headless Chromium with a fresh profile, and the watcher that
// every tab opened through it reports to.
type browser struct {
	ctx     context.Context // the first tab; its context owns the browser
	watcher *consoleWatcher
	output  *syncBuffer
}

// startBrowser starts headless Chromium with the flags that work on these
// machines (see shared/e2e/README.md) and --ignore-certificate-errors for
// the server's self-signed certificate. It is closed when the test ends.
func startBrowser(ctx context.Context, t *testing.T, chromium string) *browser {
	t.Helper()
	b := &browser{watcher: &consoleWatcher{}, output: &syncBuffer{}}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-breakpad", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("use-mock-keychain", true),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("allow-loopback-in-peer-connection", true),
		chromedp.Flag("disable-features", "WebRtcHideLocalIpsWithMdns,Translate"),
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
		// Test only: the server's certificate is self-signed.
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.WindowSize(1280, 900),
		// No UserDataDir: chromedp makes a fresh profile directory in the
		// temporary directory and removes it when the browser has exited.
		chromedp.CombinedOutput(b.output),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	tabCtx, cancelTab := chromedp.NewContext(allocCtx, chromedp.WithListener(b.watcher.listen))
	t.Cleanup(func() {
		// Close the browser gracefully, then make sure the process is gone:
		// cancelAlloc waits for it and for its profile directory's removal.
		closeCtx, cancelClose := context.WithTimeout(tabCtx, 10*time.Second)
		if err := chromedp.Cancel(closeCtx); err != nil && ctx.Err() == nil {
			t.Logf("closing Chromium: %v", err)
		}
		cancelClose()
		cancelTab()
		cancelAlloc()
		if t.Failed() {
			t.Logf("Chromium output:\n%s", b.output.String())
		}
	})
	// The first Do starts the browser; its lifetime is tied to tabCtx, which
	// has no deadline of its own (ctx has the test's overall one).
	if err := chromedp.Do(tabCtx); err != nil {
		t.Fatalf("starting Chromium %s: %v\noutput:\n%s", chromium, err, b.output.String())
	}
	b.ctx = tabCtx
	return b
}

// newIncognitoTab opens a tab in a new browser context (its own cookies and
// storage), watched like the first tab, and closes it when the test ends.
func (b *browser) newIncognitoTab(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx,
		chromedp.WithNewBrowserContext(),
		chromedp.WithListener(b.watcher.listen))
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("opening a tab in a new browser context: %v", err)
	}
	return ctx
}

// page drives one tab for one test, failing the test with the step's name
// and the page's state when an action fails.
type page struct {
	t       *testing.T
	ctx     context.Context
	watcher *consoleWatcher
}

const stepTimeout = 30 * time.Second

// do runs actions with a per-step timeout.
func (p *page) do(step string, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.fatal(step, err)
	}
}

// eval evaluates a JavaScript expression in the page and decodes its value.
func eval[T any](p *page, step, expr string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		p.fatal(step, err)
	}
	return v
}

// waitTrue polls a JavaScript expression until it is truthy.
func (p *page) waitTrue(step, expr string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, stepTimeout)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool]("!!("+expr+")", chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
		p.fatal(step, err)
	}
}

// settled waits until the page's document has loaded. Call it after a
// navigation the page made itself (a link, location.assign) and before the
// next action that finds elements: chromedp learns of the new document
// from an event and fetches it again in the background, and an element
// found before that fetch ends can be gone by the next step ("Could not
// find node with given id").
func (p *page) settled(step string) {
	p.t.Helper()
	p.waitTrue(step+": the document has loaded", `document.readyState === 'complete'`)
}

func (p *page) location() string {
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	defer cancel()
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		return "(unknown: " + err.Error() + ")"
	}
	return loc
}

// fatal ends the test, saying where the page was and what it showed.
func (p *page) fatal(step string, err error) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	defer cancel()
	state, serr := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify({
		url: location.href,
		alerts: [...document.querySelectorAll('[role=alert]')].map(e => e.id + ': ' + e.textContent.trim()).filter(s => !s.endsWith(': ')),
		text: document.body ? document.body.innerText.slice(0, 1500) : ''
	})`))
	if serr != nil {
		state = "(could not read the page: " + serr.Error() + ")"
	}
	p.watcher.check(p.t, step)
	p.t.Fatalf("%s: %v\npage: %s", step, err, state)
}

// screenshot writes a PNG of the whole page to testdata/out/name when
// PARLEY_E2E_SCREENSHOTS=1. The directory is relative to the working
// directory, which is the package directory under go test and make e2e.
func (p *page) screenshot(name string) {
	p.t.Helper()
	if os.Getenv("PARLEY_E2E_SCREENSHOTS") != "1" {
		return
	}
	ctx, cancel := context.WithTimeout(p.ctx, stepTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		p.fatal("screenshot "+name, err)
	}
	dir := filepath.Join("testdata", "out")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		p.t.Fatalf("screenshot: %v", err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		p.t.Fatalf("screenshot: %v", err)
	}
	abs, _ := filepath.Abs(path)
	p.t.Logf("screenshot: %s", abs)
}

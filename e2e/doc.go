// Package e2e owns Parley's real-browser end-to-end tests: they start the
// real parley binary and a headless Chromium driven through the DevTools
// protocol (chromedp), and walk the pages as a person would.
//
// The tests run only inside a private network namespace whose one interface
// is the loopback, so that neither the browser nor the server can send a
// packet anywhere else; elsewhere they skip. `make e2e` builds bin/parley
// and the test binary outside, then runs the tests under `unshare -n`.
// Flags of the test binary: -parley-bin (default ../bin/parley) and
// -chromium (default /usr/lib/chromium/chromium). Environment:
// PARLEY_E2E_OPTIONAL=1 skips instead of failing when Chromium is missing,
// PARLEY_E2E_SCREENSHOTS=1 writes screenshots to testdata/out/.
package e2e

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
//
// TestMeeting runs three Chromium processes with a fake camera and
// microphone against one server whose media plane binds 127.0.0.1 and
// accepts loopback peers (--media-allowed-remote 127.0.0.0/8). To read
// getStats() and to make the viewer's page try to publish, the test adds a
// script to each meeting tab through the DevTools protocol
// (Page.addScriptToEvaluateOnNewDocument) that records the page's
// RTCPeerConnections in window.__e2e.pcs; the pages themselves have no
// test hook.
package e2e

package server

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-meet/parley/config"
	"github.com/parley-meet/parley/signaling"
)

// refused checks that an upgrade was refused before 101 with a JSON error.
func refused(t *testing.T, what string, resp *http.Response, body []byte, err error, status int, code string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: the socket opened", what)
	}
	if resp == nil {
		t.Fatalf("%s: no HTTP answer: %v", what, err)
	}
	if resp.StatusCode != status {
		t.Fatalf("%s: status %d (%s), want %d", what, resp.StatusCode, body, status)
	}
	var e struct{ Error, Message string }
	if json.Unmarshal(body, &e) != nil || e.Error != code || e.Message == "" {
		t.Fatalf("%s: body %s, want error %q", what, body, code)
	}
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Errorf("%s: content type %q", what, resp.Header.Get("Content-Type"))
	}
}

// Case 24: a valid cookie from a foreign page, a null origin, a look-alike
// host or no Origin at all: refused before 101.
func TestCase24OriginRefusedBeforeUpgrade(t *testing.T) {
	f := newMeetingFixture(t, false, nil, func(c *config.Config) {
		c.WSAllowedOrigins = []string{"https://meet.example.org"}
	})
	ms := f.ms
	cookie := f.host.cookieHeader()
	for _, origin := range []string{
		"https://evil.example", "null", "https://localhost:8443.evil.example", "https://evil.example/https://localhost:8443",
		"http://localhost:8443", "https://localhost:8444", "https://localhost", "https://LOCALHOST:8443",
		"https://meet.example.org.evil.example", "https://evilmeet.example.org", "https://localhost:8443/", "*",
	} {
		_, resp, body, err := ms.dialWS(t, f.room, http.Header{"Origin": {origin}, "Cookie": {cookie}})
		refused(t, "origin "+origin, resp, body, err, 403, "forbidden_origin")
	}
	_, resp, body, err := ms.dialWS(t, f.room, http.Header{"Cookie": {cookie}})
	refused(t, "no origin with a cookie", resp, body, err, 403, "forbidden_origin")
	if !ms.hasAudit(t, "signal.upgrade/denied") {
		t.Error("origin refusals not audited")
	}
	// The public URL's origin and an allow-listed one open.
	ms.open(t, f.host, f.room).join()
	s, _, _, err := ms.dialWS(t, f.room, http.Header{"Origin": {"https://meet.example.org"}, "Cookie": {cookie}})
	if err != nil {
		t.Fatalf("allow-listed origin: %v", err)
	}
	s.join()
}

// Case 25 (with cases 7, 16 and 17 at the upgrade): no authentication, an
// expired or forged token, a guest cookie of another room, an outsider.
func TestCase25UnauthenticatedRefusedBeforeUpgrade(t *testing.T) {
	f := newMeetingFixture(t, false, nil)
	ms := f.ms
	origin := http.Header{"Origin": {ms.origin}}
	_, resp, body, err := ms.dialWS(t, f.room, origin)
	refused(t, "no credentials", resp, body, err, 401, "unauthenticated")
	_, resp, body, err = ms.dialWS(t, f.room, http.Header{"Origin": {ms.origin}, "Cookie": {"__Host-parley=forged"}})
	refused(t, "forged cookie", resp, body, err, 401, "unauthenticated")

	// A half-finished sign-in (password only) authenticates nothing.
	half := ms.browser(t)
	expect(t, "password step", half.post("/api/v1/auth/login", map[string]string{"username": "bob", "password": goodPassword}), 200, "")
	_, resp, body, err = ms.dialWS(t, f.room, ms.wsHeaders(half))
	refused(t, "half signed in", resp, body, err, 401, "unauthenticated")

	tok := f.bob.post("/api/v1/auth/token", map[string]string{}).str("token")
	if tok == "" {
		t.Fatal("no token")
	}
	// A token needs no Origin (no page can send one), and opens the socket.
	s, _, _, err := ms.dialWS(t, f.room, http.Header{"Authorization": {"Bearer " + tok}})
	if err != nil {
		t.Fatalf("token: %v", err)
	}
	s.join()
	forged := tok[:len(tok)-3] + map[bool]string{true: "AAA", false: "BBB"}[!strings.HasSuffix(tok, "AAA")]
	_, resp, body, err = ms.dialWS(t, f.room, http.Header{"Authorization": {"Bearer " + forged}})
	refused(t, "forged token", resp, body, err, 401, "unauthenticated")
	_, resp, body, err = ms.dialWS(t, f.room, http.Header{"Authorization": {"Basic Ym9iOng="}})
	refused(t, "basic auth", resp, body, err, 401, "unauthenticated")
	ms.clock.Advance(16 * time.Minute)
	_, resp, body, err = ms.dialWS(t, f.room, http.Header{"Authorization": {"Bearer " + tok}})
	refused(t, "expired token", resp, body, err, 401, "unauthenticated")

	// Signed in but not in the room: 404, like a room that does not exist.
	_, resp, body, err = ms.dialWS(t, f.room, ms.wsHeaders(f.carol))
	refused(t, "outsider", resp, body, err, 404, "not_found")
	_, resp, body, err = ms.dialWS(t, "AAAAAAAAAAAAAAAA", ms.wsHeaders(f.carol))
	refused(t, "missing room", resp, body, err, 404, "not_found")

	// A guest cookie opens its own room only.
	other := f.host.post("/api/v1/rooms", map[string]any{"name": "Other", "guests_allowed": true}).str("id")
	guest := ms.browser(t)
	expect(t, "redeem", guest.post("/api/v1/invites/redeem", map[string]string{"token": token2(t, &roomsFixture{ts: ms.testServer, host: f.host}, other), "display_name": "Gus"}), 200, "")
	_, resp, body, err = ms.dialWS(t, f.room, ms.wsHeaders(guest))
	refused(t, "guest of another room", resp, body, err, 401, "unauthenticated")
	ms.open(t, guest, other).join()

	// A plain request is not an upgrade.
	r := f.bob.get("/api/v1/rooms/" + f.room + "/signal")
	expect(t, "plain GET", r, 426, "upgrade_required")
}

// Case 28: hundreds of sockets from one user or address are capped before
// the upgrade; a socket that stops answering pings is closed.
func TestCase28SocketCaps(t *testing.T) {
	f := newMeetingFixture(t, false, nil, func(c *config.Config) { c.WSMaxPerIP = 12 })
	ms := f.ms
	var (
		mu              sync.Mutex
		opened, capped  int
		others          []int
		wg              sync.WaitGroup
		hostHdr, bobHdr = ms.wsHeaders(f.host), ms.wsHeaders(f.bob)
	)
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, resp, _, err := ms.dialWS(t, f.room, hostHdr)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				opened++
			case resp != nil && resp.StatusCode == 429:
				capped++
			case resp != nil:
				others = append(others, resp.StatusCode)
			default:
				others = append(others, 0)
			}
		}()
	}
	wg.Wait()
	if opened != 8 || capped != 192 || len(others) > 0 {
		t.Fatalf("one user, 200 sockets: %d opened, %d capped (429), others %v; want 8 and 192", opened, capped, others)
	}
	// The address cap (12) counts every user: bob gets 4 more.
	n := 0
	for i := 0; i < 10; i++ {
		if _, resp, body, err := ms.dialWS(t, f.room, bobHdr); err == nil {
			n++
		} else if i >= 4 {
			refused(t, "over the address cap", resp, body, err, 429, "too_many_sockets")
		}
	}
	if n != 4 {
		t.Fatalf("bob opened %d sockets under the address cap, want 4", n)
	}
	if st := ms.hub.Stats(); st.Sockets != 12 {
		t.Fatalf("%d sockets open, want 12", st.Sockets)
	}
	ms.hub.Close() // closes them all (1001) and frees the caps

	// A socket that stops answering pings is closed; one that answers
	// stays.
	ms2 := newMeetingFixture(t, false, func(c *signaling.Config) { c.PingInterval = 500 * time.Millisecond })
	silent, _, _, err := ms2.ms.dialConn(t, ms2.room, ms2.ms.wsHeaders(ms2.bob))
	if err != nil {
		t.Fatal(err)
	}
	silent.WriteMessage(1, []byte(`{"type":"join"}`))
	alive := ms2.ms.open(t, ms2.bob, ms2.room)
	alive.join()
	waitUntil(t, 5*time.Second, "the silent socket to be closed", func() bool { return ms2.ms.hub.Stats().Sockets == 1 })
	time.Sleep(time.Second)
	alive.send(map[string]any{"type": "raise_hand", "raised": true})
	alive.expect("hand")
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

package server

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/fasthttp/websocket"

	"github.com/parley-meet/parley/rbac"
	"github.com/parley-meet/parley/recording"
	"github.com/parley-meet/parley/sfu"
	"github.com/parley-meet/parley/signaling"
)

// meetingServer is a test server with signaling and a real SFU bound to
// 127.0.0.1 that sends to loopback only.
type meetingServer struct {
	*testServer
	hub        *signaling.Hub
	media      *sfu.SFU
	origin     string             // the public URL's origin, as a browser sends it
	recordings *recording.Manager // with startRecordingServer
	recDir     string
}

// startMeetingServer starts a server (like startServer) with signaling
// enabled; tune changes the hub's configuration (short intervals for
// tests).
func startMeetingServer(t *testing.T, tune func(*signaling.Config), opts ...serverOpt) *meetingServer {
	t.Helper()
	return startMeetingServerRec(t, false, tune, opts...)
}

// startRecordingServer is startMeetingServer with recording on: a
// recording.Manager with a fresh age identity in a temporary directory.
func startRecordingServer(t *testing.T, tune func(*signaling.Config), opts ...serverOpt) *meetingServer {
	t.Helper()
	return startMeetingServerRec(t, true, tune, opts...)
}

func startMeetingServerRec(t *testing.T, record bool, tune func(*signaling.Config), opts ...serverOpt) *meetingServer {
	t.Helper()
	ms := &meetingServer{}
	ts := startServer(t, func(s *Server) {
		media, err := sfu.New(sfu.Config{ListenIP: "127.0.0.1", TCPPort: -1,
			AllowedRemote: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, Logger: sfuTestLogger()})
		if err != nil {
			t.Fatal(err)
		}
		cfg := signaling.Config{Authorizer: s.rbac, KeepAlive: s.auth.KeepAlive, Audit: s.audit,
			Media: signaling.SFUMedia(media), Logger: s.log, MaxPerUser: s.cfg.WSMaxPerUser, MaxPerIP: s.cfg.WSMaxPerIP,
			KeepAliveInterval: 250 * time.Millisecond}
		if record {
			id, err := age.GenerateX25519Identity()
			if err != nil {
				t.Fatal(err)
			}
			ms.recDir = t.TempDir()
			m, err := recording.New(recording.Config{Dir: ms.recDir, Recipients: []age.Recipient{id.Recipient()},
				Identities: []age.Identity{id}, Store: s.store, Logger: sfuTestLogger()})
			if err != nil {
				t.Fatal(err)
			}
			ms.recordings = m
			cfg.Recorder = m
			s.EnableRecording(m)
		}
		if tune != nil {
			tune(&cfg)
		}
		hub, err := signaling.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		s.EnableSignaling(hub)
		ms.hub, ms.media = hub, media
	}, append([]serverOpt{generous}, opts...)...)
	ms.testServer = ts
	ms.origin = ts.cfg.PublicOrigin()
	// Registered after startServer's cleanup, so it runs first: the
	// sockets close, then the media plane, then the server and the store.
	t.Cleanup(func() {
		ms.hub.Close()
		if ms.recordings != nil {
			if err := ms.recordings.Close(); err != nil {
				t.Errorf("closing the recordings: %v", err)
			}
		}
		if err := ms.media.Close(); err != nil {
			t.Errorf("closing the SFU: %v", err)
		}
	})
	return ms
}

// sfuTestLogger discards the SFU's logs unless PARLEY_TEST_SFU_LOG is set.
func sfuTestLogger() *slog.Logger {
	if os.Getenv("PARLEY_TEST_SFU_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// signalURL is the socket URL of a room.
func (ms *meetingServer) signalURL(room string) string {
	return "wss://" + strings.TrimPrefix(ms.base, "https://") + "/api/v1/rooms/" + room + "/signal"
}

// cookieHeader is the Cookie header b's jar sends to the server.
func (b *browser) cookieHeader() string {
	u, _ := url.Parse(b.ts.base)
	var parts []string
	for _, c := range b.client.Jar.Cookies(u) {
		parts = append(parts, c.Name+"="+c.Value)
	}
	return strings.Join(parts, "; ")
}

// wsHeaders are the handshake headers of a page of Parley opened in b.
func (ms *meetingServer) wsHeaders(b *browser) http.Header {
	h := http.Header{"Origin": {ms.origin}}
	if b != nil {
		if c := b.cookieHeader(); c != "" {
			h.Set("Cookie", c)
		}
	}
	return h
}

// dialConn opens a socket with the given headers and never reads it (so
// it does not answer pings either). On a refused upgrade it returns the
// HTTP response (body read) and the error.
func (ms *meetingServer) dialConn(t *testing.T, room string, hdr http.Header) (*websocket.Conn, *http.Response, []byte, error) {
	t.Helper()
	d := websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: ms.pool, ServerName: "localhost"},
		HandshakeTimeout: 10 * time.Second, WriteBufferSize: 1024}
	ws, resp, err := d.Dial(ms.signalURL(room), hdr)
	if err != nil {
		var body []byte
		if resp != nil {
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		return nil, resp, body, err
	}
	t.Cleanup(func() { ws.Close() })
	return ws, resp, nil, nil
}

// dialWS is dialConn with a reader that hands over messages and the close
// frame (and answers pings).
func (ms *meetingServer) dialWS(t *testing.T, room string, hdr http.Header) (*sock, *http.Response, []byte, error) {
	t.Helper()
	ws, resp, body, err := ms.dialConn(t, room, hdr)
	if err != nil {
		return nil, resp, body, err
	}
	s := &sock{t: t, ws: ws, msgs: make(chan map[string]any, 4096), closed: make(chan *websocket.CloseError, 1)}
	go s.read()
	return s, resp, nil, nil
}

// open opens a socket as b (cookie and Origin) and fails the test if it is
// refused.
func (ms *meetingServer) open(t *testing.T, b *browser, room string) *sock {
	t.Helper()
	s, resp, body, err := ms.dialWS(t, room, ms.wsHeaders(b))
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("open socket: %v (%d %s)", err, status, body)
	}
	return s
}

// sock is a test client's socket: a reader goroutine hands over the
// messages and the close frame.
type sock struct {
	t      *testing.T
	ws     *websocket.Conn
	msgs   chan map[string]any
	closed chan *websocket.CloseError
}

func (s *sock) read() {
	defer close(s.msgs)
	for {
		_, b, err := s.ws.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				s.closed <- ce
			}
			close(s.closed)
			return
		}
		var m map[string]any
		if json.Unmarshal(b, &m) == nil {
			m["_raw"] = string(b)
			s.msgs <- m
		}
	}
}

func (s *sock) send(v any) {
	s.t.Helper()
	b, ok := v.([]byte)
	if !ok {
		if str, isStr := v.(string); isStr {
			b = []byte(str)
		} else {
			b, _ = json.Marshal(v)
		}
	}
	if err := s.ws.WriteMessage(websocket.TextMessage, b); err != nil {
		s.t.Fatalf("send: %v", err)
	}
}

// expect returns the next message of type typ within 5 s, skipping others.
func (s *sock) expect(typ string) map[string]any {
	s.t.Helper()
	return s.expectWithin(typ, 5*time.Second)
}

func (s *sock) expectWithin(typ string, d time.Duration) map[string]any {
	s.t.Helper()
	deadline := time.After(d)
	for {
		select {
		case m, ok := <-s.msgs:
			if !ok {
				s.t.Fatalf("socket closed while waiting for %s", typ)
			}
			if m["type"] == typ {
				return m
			}
		case <-deadline:
			s.t.Fatalf("no %s within %v", typ, d)
		}
	}
}

func (s *sock) expectError(code string) map[string]any {
	s.t.Helper()
	m := s.expect("error")
	if m["code"] != code {
		s.t.Fatalf("error %v, want %s", m["_raw"], code)
	}
	return m
}

// expectClose waits for the server's close frame with code.
func (s *sock) expectClose(code int, within time.Duration) {
	s.t.Helper()
	deadline := time.After(within)
	for {
		select {
		case <-s.msgs:
		case ce, ok := <-s.closed:
			if !ok || ce == nil {
				s.t.Fatalf("socket ended without a close frame (want %d)", code)
			}
			if ce.Code != code {
				s.t.Fatalf("closed with %d %q, want %d", ce.Code, ce.Text, code)
			}
			return
		case <-deadline:
			s.t.Fatalf("socket not closed within %v (want %d)", within, code)
		}
	}
}

func (s *sock) join() map[string]any {
	s.t.Helper()
	s.send(map[string]any{"type": "join"})
	return s.expect("welcome")
}

// meetingFixture: a room hosted by alice with bob as a member, carol an
// outsider, all signed in.
type meetingFixture struct {
	ms                *meetingServer
	host, bob, carol  *browser
	room              string
	hostAcct, bobAcct account
}

func newMeetingFixture(t *testing.T, lobby bool, tune func(*signaling.Config), opts ...serverOpt) *meetingFixture {
	t.Helper()
	return fixtureOn(t, startMeetingServer(t, tune, opts...), lobby)
}

// fixtureOn makes alice (the room's host), bob (a member) and carol (no
// role in the room) on ms.
func fixtureOn(t *testing.T, ms *meetingServer, lobby bool) *meetingFixture {
	t.Helper()
	f := &meetingFixture{ms: ms}
	for _, u := range []struct {
		name string
		b    **browser
		a    *account
	}{{"alice", &f.host, &f.hostAcct}, {"bob", &f.bob, &f.bobAcct}, {"carol", &f.carol, nil}} {
		ms.createUser(t, u.name, goodPassword, rbac.RoleMember)
		*u.b = ms.browser(t)
		a := (*u.b).enroll(u.name, goodPassword)
		if u.a != nil {
			*u.a = a
		}
	}
	r := f.host.post("/api/v1/rooms", map[string]any{"name": "Weekly", "lobby": lobby, "guests_allowed": true})
	expect(t, "create room", r, 201, "")
	f.room = r.str("id")
	expect(t, "add bob", f.host.do("PUT", "/api/v1/rooms/"+f.room+"/members/bob", map[string]string{"role": rbac.RoleRoomMember}, nil), 200, "")
	return f
}

// hasAudit reports whether the audit log holds action/outcome, waiting up
// to a second for it (signaling records after it has answered).
func (ts *testServer) hasAudit(t *testing.T, entry string) bool {
	t.Helper()
	for deadline := time.Now().Add(time.Second); ; time.Sleep(20 * time.Millisecond) {
		for _, a := range ts.auditActions(t) {
			if a == entry {
				return true
			}
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

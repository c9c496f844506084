package signaling

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/pion/webrtc/v4"
	"github.com/valyala/fasthttp"

	"github.com/parley-meet/parley/audit"
	"github.com/parley-meet/parley/internal/leakcheck"
	"github.com/parley-meet/parley/rbac"
	"github.com/parley-meet/parley/sfu"
	"github.com/parley-meet/parley/store"
	"github.com/parley-meet/parley/store/storetest"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

// harness is a hub behind a plain fasthttp server on 127.0.0.1, with a
// real rbac and audit log over SQLite, a fake media plane, and sessions
// the test ends at will. The test chooses who connects through the URL.
type harness struct {
	t     *testing.T
	hub   *Hub
	authz *rbac.Authorizer
	store *store.Store
	media *fakeMedia
	pool  *countingPool // the upgrader's write buffers
	addr  string

	mu   sync.Mutex
	dead map[string]bool // ended session and guest ids
	// asked is what the last KeepAlive was asked about.
	askedSessions, askedGuests []string
}

func newHarness(t *testing.T, tune func(*Config)) *harness {
	t.Helper()
	st, _ := storetest.Targets()[0].Open(t)
	authz, err := rbac.New(context.Background(), st, nil)
	if err != nil {
		t.Fatal(err)
	}
	authz.SetUserState(func(context.Context, string) (bool, bool, error) { return true, false, nil })
	h := &harness{t: t, authz: authz, store: st, media: &fakeMedia{}, pool: &countingPool{}, dead: map[string]bool{}}
	cfg := Config{Authorizer: authz, Audit: audit.New(st, nil), Media: h.media,
		KeepAlive: h.keepAlive, KeepAliveInterval: 100 * time.Millisecond}
	if tune != nil {
		tune(&cfg)
	}
	hub, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.hub = hub
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := websocket.FastHTTPUpgrader{CheckOrigin: func(*fasthttp.RequestCtx) bool { return true }, WriteBufferPool: h.pool}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		q := ctx.QueryArgs()
		subject := string(q.Peek("subject"))
		guest := strings.HasPrefix(subject, "guest:")
		_, id, _ := strings.Cut(subject, ":")
		ident := Identity{Subject: subject, Actor: subject, Name: string(q.Peek("name")), Guest: guest, ClientIP: "127.0.0.1"}
		if guest {
			ident.GuestID = id
		} else {
			ident.SessionID = "s-" + id
		}
		info := RoomInfo{ID: string(q.Peek("room")), Name: "Room", Lobby: q.GetBool("lobby"), GuestsAllowed: !q.GetBool("noguests"),
			E2EE: q.GetBool("e2ee")}
		ticket, err := hub.Reserve(subject, "127.0.0.1")
		if err != nil {
			ctx.SetStatusCode(http.StatusTooManyRequests)
			return
		}
		if err := up.Upgrade(ctx, func(ws *websocket.Conn) { hub.Serve(ws, ticket, info, ident) }); err != nil {
			ticket.Release()
		}
	}}
	done := make(chan struct{})
	go func() { srv.Serve(ln); close(done) }()
	h.addr = ln.Addr().String()
	t.Cleanup(func() {
		hub.Close()
		srv.Shutdown()
		<-done
	})
	return h
}

// countingPool is a pool of write buffers that counts the buffers taken
// out of it and not given back.
type countingPool struct {
	p   sync.Pool
	out atomic.Int64
}

func (c *countingPool) Get() any {
	c.out.Add(1)
	return c.p.Get()
}

func (c *countingPool) Put(v any) {
	c.out.Add(-1)
	c.p.Put(v)
}

func (h *harness) keepAlive(_ context.Context, sessions, guests []string) (map[string]bool, map[string]bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.askedSessions, h.askedGuests = append([]string(nil), sessions...), append([]string(nil), guests...)
	ls, lg := map[string]bool{}, map[string]bool{}
	for _, s := range sessions {
		ls[s] = !h.dead[s]
	}
	for _, g := range guests {
		lg[g] = !h.dead[g]
	}
	return ls, lg, nil
}

// endSession makes KeepAlive report the session (or guest session) gone.
func (h *harness) endSession(id string) {
	h.mu.Lock()
	h.dead[id] = true
	h.mu.Unlock()
}

// bind gives subject role in room.
func (h *harness) bind(subject, room, role string) {
	h.t.Helper()
	if err := h.authz.SetRoomRole(context.Background(), subject, room, role); err != nil {
		h.t.Fatal(err)
	}
}

// client is one test socket.
type client struct {
	t      *testing.T
	ws     *websocket.Conn
	msgs   chan map[string]any
	closed chan *websocket.CloseError
}

func (h *harness) dial(subject, room string, extra ...string) *client {
	h.t.Helper()
	c, err := h.tryDial(subject, room, extra...)
	if err != nil {
		h.t.Fatalf("dial %s: %v", subject, err)
	}
	return c
}

func (h *harness) tryDial(subject, room string, extra ...string) (*client, error) {
	q := url.Values{"subject": {subject}, "room": {room}, "name": {subject}}
	for _, e := range extra {
		q.Set(e, "1")
	}
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+h.addr+"/?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	c := &client{t: h.t, ws: ws, msgs: make(chan map[string]any, 1024), closed: make(chan *websocket.CloseError, 1)}
	go c.read()
	h.t.Cleanup(func() { ws.Close() })
	return c, nil
}

func (c *client) read() {
	defer close(c.msgs)
	for {
		_, b, err := c.ws.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				c.closed <- ce
			}
			close(c.closed)
			return
		}
		var m map[string]any
		if json.Unmarshal(b, &m) == nil {
			c.msgs <- m
		}
	}
}

func (c *client) send(v any) {
	c.t.Helper()
	var b []byte
	switch v := v.(type) {
	case string:
		b = []byte(v)
	default:
		b, _ = json.Marshal(v)
	}
	if err := c.ws.WriteMessage(websocket.TextMessage, b); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// expect waits for a message of type typ (skipping others) and returns it.
func (c *client) expect(typ string) map[string]any {
	c.t.Helper()
	deadline := time.After(3 * time.Second)
	for {
		select {
		case m, ok := <-c.msgs:
			if !ok {
				c.t.Fatalf("socket closed while waiting for %s", typ)
			}
			if m["type"] == typ {
				return m
			}
		case <-deadline:
			c.t.Fatalf("no %s within 3 s", typ)
		}
	}
}

// expectError waits for an error message with code.
func (c *client) expectError(code string) map[string]any {
	c.t.Helper()
	m := c.expect("error")
	if m["code"] != code {
		c.t.Fatalf("error %v, want code %s", m, code)
	}
	return m
}

// expectClose waits until the server closes the socket with code.
func (c *client) expectClose(code int, within time.Duration) {
	c.t.Helper()
	deadline := time.After(within)
	for {
		select {
		case <-c.msgs:
		case ce, ok := <-c.closed:
			if !ok || ce == nil {
				c.t.Fatalf("socket ended without a close frame, want %d", code)
			}
			if ce.Code != code {
				c.t.Fatalf("closed with %d %q, want %d", ce.Code, ce.Text, code)
			}
			return
		case <-deadline:
			c.t.Fatalf("not closed within %v (want %d)", within, code)
		}
	}
}

// join sends join and returns the welcome.
func (c *client) join() map[string]any {
	c.t.Helper()
	c.send(map[string]any{"type": "join"})
	return c.expect("welcome")
}

// fakeMedia stands in for the SFU: it records what it is asked and reports
// events synchronously, as the real one may.
type fakeMedia struct {
	mu    sync.Mutex
	rooms []*fakeRoom
}

func (m *fakeMedia) NewRoom(id string, opts RoomOptions) MediaRoom {
	r := &fakeRoom{id: id, opts: opts, parts: map[string]*fakeParticipant{}}
	m.mu.Lock()
	m.rooms = append(m.rooms, r)
	m.mu.Unlock()
	return r
}

func (m *fakeMedia) participant(id string) *fakeParticipant {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range m.rooms {
		r.mu.Lock()
		p := r.parts[id]
		r.mu.Unlock()
		if p != nil {
			return p
		}
	}
	return nil
}

type fakeRoom struct {
	id     string
	opts   RoomOptions
	mu     sync.Mutex
	parts  map[string]*fakeParticipant
	tracks []Track
	closed bool
}

func (r *fakeRoom) Join(id string, ev MediaEvents, pub Publish) (MediaParticipant, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := &fakeParticipant{r: r, id: id, ev: ev, pub: pub}
	r.parts[id] = p
	return p, nil
}

func (r *fakeRoom) Tracks() []Track {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Track(nil), r.tracks...)
}

func (r *fakeRoom) Stats() []sfu.ParticipantStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []sfu.ParticipantStats
	for id := range r.parts {
		out = append(out, sfu.ParticipantStats{ID: id, ConnectionState: "connected"})
	}
	return out
}

func (r *fakeRoom) AddTap(sfu.TapHandler) (*sfu.Tap, error) {
	return nil, errors.New("the fake media plane has no taps")
}

func (r *fakeRoom) Close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
}

// fakeRecorder records what the hub asks of the recorder.
type fakeRecorder struct {
	mu     sync.Mutex
	calls  []string // "start <room> <by>", "stop <room>"
	fail   bool
	rooms  map[string]TapSource
	nameOf func(string) string
}

func (f *fakeRecorder) StartRoom(_ context.Context, room TapSource, roomID, by string, names func(string) string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return errors.New("the disk is full")
	}
	f.calls = append(f.calls, "start "+roomID+" "+by)
	if f.rooms == nil {
		f.rooms = map[string]TapSource{}
	}
	f.rooms[roomID] = room
	f.nameOf = names
	return nil
}

func (f *fakeRecorder) StopRoom(_ context.Context, roomID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "stop "+roomID)
	return nil
}

func (f *fakeRecorder) log() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

type fakeParticipant struct {
	r      *fakeRoom
	id     string
	ev     MediaEvents
	mu     sync.Mutex
	pub    Publish
	offers int
	closed bool
	// lastStopped is the kind of the last StopTrack (under r.mu).
	lastStopped string
}

// HandleOffer publishes one track per a=msid line of a sending section;
// an SDP containing BAD is refused and one containing PANIC panics.
func (p *fakeParticipant) HandleOffer(sdp string, sources map[string]string) (string, error) {
	if strings.Contains(sdp, "PANIC") {
		panic("secret internal detail")
	}
	if strings.Contains(sdp, "BAD") {
		return "", ErrBadSDP
	}
	p.mu.Lock()
	p.offers++
	p.mu.Unlock()
	kind := ""
	for _, line := range strings.Split(sdp, "\n") {
		if strings.HasPrefix(line, "m=") {
			kind = strings.Fields(line[2:])[0]
		}
		if f := strings.Fields(strings.TrimPrefix(line, "a=msid:")); strings.HasPrefix(line, "a=msid:") && len(f) == 2 {
			src := sources[f[1]]
			if src == "" {
				src = map[string]string{"audio": "microphone", "video": "camera"}[kind]
			}
			t := Track{ID: f[1], Participant: p.id, Kind: kind, Source: src}
			p.r.mu.Lock()
			p.r.tracks = append(p.r.tracks, t)
			p.r.mu.Unlock()
			p.ev.OnTrackPublished(t)
		}
	}
	return "v=0 answer", nil
}

func (p *fakeParticipant) HandleAnswer(sdp string) error {
	if strings.Contains(sdp, "BAD") {
		return ErrBadSDP
	}
	return nil
}

func (p *fakeParticipant) AddCandidate(webrtc.ICECandidateInit) error { return nil }

// unpublish removes p's tracks for which drop says yes, reporting each.
func (p *fakeParticipant) unpublish(drop func(Track) bool) {
	p.r.mu.Lock()
	var gone, kept []Track
	for _, t := range p.r.tracks {
		if t.Participant == p.id && drop(t) {
			gone = append(gone, t)
		} else {
			kept = append(kept, t)
		}
	}
	p.r.tracks = kept
	p.r.mu.Unlock()
	for _, t := range gone {
		p.ev.OnTrackUnpublished(t)
	}
}

func (p *fakeParticipant) SetPublish(pub Publish) {
	p.mu.Lock()
	p.pub = pub
	p.mu.Unlock()
	p.unpublish(func(t Track) bool {
		return t.Source == "screen" && !pub.Screen || t.Kind == "audio" && t.Source != "screen" && !pub.Audio ||
			t.Kind == "video" && t.Source != "screen" && !pub.Video
	})
}

func (p *fakeParticipant) publish() Publish {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pub
}

func (p *fakeParticipant) StopTrack(kind string) {
	p.r.mu.Lock()
	p.lastStopped = kind
	p.r.mu.Unlock()
	p.unpublish(func(t Track) bool { return t.Kind == kind && t.Source != "screen" })
}

// stopped is the kind of the last StopTrack.
func (p *fakeParticipant) stopped() string {
	p.r.mu.Lock()
	defer p.r.mu.Unlock()
	return p.lastStopped
}

func (p *fakeParticipant) Subscribe(bool)           {}
func (p *fakeParticipant) RequestLayer(string, int) {}

func (p *fakeParticipant) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.unpublish(func(Track) bool { return true })
}

// offerSDP is a minimal client offer sending one audio and one video track.
func offerSDP(audioTrack, videoTrack string) string {
	return "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n" +
		"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendrecv\r\na=msid:s " + audioTrack + "\r\n" +
		"m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=sendrecv\r\na=msid:s " + videoTrack + "\r\n"
}

// recvOnlySDP is an offer that only receives.
const recvOnlySDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n" +
	"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=recvonly\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=recvonly\r\n"

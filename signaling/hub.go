package signaling

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/parley-meet/parley/audit"
	"github.com/parley-meet/parley/rbac"
)

// KeepAliveFunc reports which sessions and guest sessions are still valid
// (auth.Service.KeepAlive).
type KeepAliveFunc func(ctx context.Context, sessionIDs, guestIDs []string) (sessions, guests map[string]bool, err error)

// Config is what a Hub is built from. Zero limits take the defaults in
// brackets.
type Config struct {
	Authorizer *rbac.Authorizer
	KeepAlive  KeepAliveFunc
	Audit      *audit.Log
	Media      Media
	Recorder   Recorder     // nil: recording is unavailable
	Logger     *slog.Logger // nil: discard
	// ICEServers returns the ICE servers (STUN/TURN, with credentials
	// minted for this participant) sent in the welcome, and when those
	// credentials expire (zero: never). Before they do, while the
	// participant is in the meeting, the hub mints new ones and sends them
	// in an ice_servers message. It is called with the room locked and must
	// not block. nil: none.
	ICEServers func(participantID string) ([]ICEServer, time.Time)
	Now        func() time.Time // nil: time.Now
	// OnJoined is called when a participant gets its welcome, with the
	// time since its socket opened (metrics). nil: nothing.
	OnJoined func(wait time.Duration)

	MaxPerUser        int           // [8] open sockets per subject
	MaxPerIP          int           // [32] open sockets per client address
	PingInterval      time.Duration // [15s]; a socket missing two pongs is closed
	WriteTimeout      time.Duration // [10s] to write one message
	KeepAliveInterval time.Duration // [1s] between session checks
	JoinTimeout       time.Duration // [10s] from the upgrade to join
	MessageRate       float64       // [20] messages per second per socket
	MessageBurst      int           // [40]
	AbuseBurst        int           // [100] messages over the rate before the socket is closed (refilled at 10/s)
	ChatRate          float64       // [1] chat messages per second per subject in a room
	ChatBurst         int           // [5]
	MaxMalformed      int           // [10] malformed messages (refilled one per 6 s) before the socket is closed
	SendQueue         int           // [256] queued outgoing messages before a slow socket is closed
	ChatHistory       int           // [100] chat messages kept per room for people who join
}

func (c *Config) defaults() {
	setInt := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	setDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	setInt(&c.MaxPerUser, 8)
	setInt(&c.MaxPerIP, 32)
	setDur(&c.PingInterval, 15*time.Second)
	setDur(&c.WriteTimeout, 10*time.Second)
	setDur(&c.KeepAliveInterval, time.Second)
	setDur(&c.JoinTimeout, 10*time.Second)
	if c.MessageRate <= 0 {
		c.MessageRate = 20
	}
	setInt(&c.MessageBurst, 40)
	setInt(&c.AbuseBurst, 100)
	if c.ChatRate <= 0 {
		c.ChatRate = 1
	}
	setInt(&c.ChatBurst, 5)
	setInt(&c.MaxMalformed, 10)
	setInt(&c.SendQueue, 256)
	setInt(&c.ChatHistory, 100)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.ICEServers == nil {
		c.ICEServers = func(string) ([]ICEServer, time.Time) { return nil, time.Time{} }
	}
}

// Identity is who is behind a socket, as the server authenticated it.
type Identity struct {
	Subject string // rbac subject: "user:<id>" or "guest:<id>"
	Actor   string // audit actor: the same forms
	Name    string // display name unless join gives another
	Guest   bool
	// SessionID is the auth session of a user (cookie or token); GuestID
	// the guest session of a guest. KeepAlive is asked about them.
	SessionID string
	GuestID   string
	ClientIP  string
}

// RoomInfo is a room's settings as the store has them when someone
// connects.
type RoomInfo struct {
	ID            string
	Name          string
	Lobby         bool
	GuestsAllowed bool
	// E2EE: the room's meetings are end-to-end encrypted (e2ee.go). A
	// meeting keeps the mode it started with.
	E2EE bool
}

// Errors of Reserve.
var (
	ErrTooManyForUser = errors.New("signaling: too many sockets for this user")
	ErrTooManyForIP   = errors.New("signaling: too many sockets from this address")
	ErrClosed         = errors.New("signaling: the hub is closed")
)

// Hub is every meeting of this process: the room registry, the sockets'
// caps, the session keep-alive and the live re-check of rights. It is safe
// for concurrent use; Close stops everything it started.
type Hub struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	closed  bool
	rooms   map[string]*room
	parts   map[*participant]struct{}
	edges   map[*conn]struct{} // sockets relayed to another node's meeting
	perUser map[string]int
	perIP   map[string]int
	pending map[*Ticket]struct{}
	roomSeq uint64

	serving sync.WaitGroup // one per Serve that attached
	stop    chan struct{}
	loops   sync.WaitGroup
	unsub   func()
}

// New builds a hub and starts its two goroutines (session keep-alive and
// rights re-check); Close stops them.
func New(cfg Config) (*Hub, error) {
	if cfg.Authorizer == nil || cfg.KeepAlive == nil || cfg.Audit == nil || cfg.Media == nil {
		return nil, errors.New("signaling: missing dependency")
	}
	cfg.defaults()
	h := &Hub{cfg: cfg, log: cfg.Logger, rooms: map[string]*room{}, parts: map[*participant]struct{}{}, edges: map[*conn]struct{}{},
		perUser: map[string]int{}, perIP: map[string]int{}, pending: map[*Ticket]struct{}{}, stop: make(chan struct{})}
	events, unsub := cfg.Authorizer.Subscribe()
	h.unsub = unsub
	h.loops.Add(2)
	go h.keepAliveLoop()
	go h.policyLoop(events)
	return h, nil
}

// Ticket is a socket slot reserved before the upgrade; Serve claims it.
// A ticket neither claimed nor released within ticketTTL is released by
// the hub.
type Ticket struct {
	h       *Hub
	subject string
	ip      string
	created time.Time
	claimed bool // guarded by h.mu
	gone    bool // guarded by h.mu
	remote  bool // a participant relayed from another node: no caps here
}

const ticketTTL = 30 * time.Second

// closeTimeout bounds how long Close waits for the sockets to end.
const closeTimeout = 10 * time.Second

// Reserve takes one of subject's and ip's socket slots, or says which cap
// is reached (or ErrClosed).
func (h *Hub) Reserve(subject, ip string) (*Ticket, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrClosed
	}
	if h.perUser[subject] >= h.cfg.MaxPerUser {
		return nil, ErrTooManyForUser
	}
	if h.perIP[ip] >= h.cfg.MaxPerIP {
		return nil, ErrTooManyForIP
	}
	h.perUser[subject]++
	h.perIP[ip]++
	t := &Ticket{h: h, subject: subject, ip: ip, created: time.Now()}
	h.pending[t] = struct{}{}
	return t, nil
}

// Release gives the slot back (a refused upgrade, or a socket that ended).
// Releasing twice does nothing.
func (t *Ticket) Release() {
	t.h.mu.Lock()
	defer t.h.mu.Unlock()
	t.releaseLocked()
}

func (t *Ticket) releaseLocked() {
	if t.gone {
		return
	}
	t.gone = true
	delete(t.h.pending, t)
	if t.remote {
		return
	}
	h := t.h
	if h.perUser[t.subject]--; h.perUser[t.subject] <= 0 {
		delete(h.perUser, t.subject)
	}
	if h.perIP[t.ip]--; h.perIP[t.ip] <= 0 {
		delete(h.perIP, t.ip)
	}
}

// Serve runs one upgraded socket of id in the room info describes, until
// it closes. It claims t (and releases it at the end). It must be called
// on the goroutine that owns the socket; it returns when every goroutine
// it started has ended.
func (h *Hub) Serve(ws *websocket.Conn, t *Ticket, info RoomInfo, id Identity) {
	c := newConn(ws, h.cfg.SendQueue, h.cfg.WriteTimeout, h.cfg.PingInterval)
	p := newParticipant(h, c, id)
	defer t.Release()
	r, ok := h.attach(t, info, p)
	if !ok {
		ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(CloseGoingAway, "server shutting down"),
			time.Now().Add(time.Second))
		return
	}
	defer h.serving.Done()
	c.start()
	p.readLoop() // returns having closed c
	close(c.readerDone)
	c.writers.Wait() // the socket is closed
	r.leave(p)
	h.detach(r, p, t)
}

// attach claims the ticket and puts p into the room (made on first use).
func (h *Hub) attach(t *Ticket, info RoomInfo, p *participant) (*room, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || t.gone || t.claimed {
		return nil, false
	}
	t.claimed = true
	delete(h.pending, t)
	r := h.rooms[info.ID]
	if r != nil && r.e2ee != info.E2EE {
		h.retireLocked(r) // the room's e2ee setting changed as this meeting began
		r = nil
	}
	if r == nil {
		h.roomSeq++
		r = newRoom(h, info, h.cfg.Media.NewRoom(info.ID+"."+strconv.FormatUint(h.roomSeq, 10), mediaOptions(info)))
		h.rooms[info.ID] = r
	}
	r.mu.Lock()
	r.info = info // the settings as of the latest connection
	r.parts[p.id] = p
	p.room = r
	r.mu.Unlock()
	h.parts[p] = struct{}{}
	h.serving.Add(1)
	return r, true
}

// detach forgets p and gives its ticket back, and forgets the room when
// nobody is left in it.
func (h *Hub) detach(r *room, p *participant, t *Ticket) {
	h.mu.Lock()
	delete(h.parts, p)
	t.releaseLocked()
	r.mu.Lock()
	empty := len(r.parts) == 0 && !r.closed
	if empty {
		r.closed = true
		if h.rooms[r.id] == r {
			delete(h.rooms, r.id)
		}
	}
	r.mu.Unlock()
	h.mu.Unlock()
	if empty {
		r.closeMedia()
	}
}

// RoomChanged gives a meeting in progress the room's new settings (name,
// lobby, guests); they apply to everyone who arrives from now on. A
// meeting whose mode is not the new e2ee setting ends (the setting changes
// only between meetings; this is the race with a meeting's start).
func (h *Hub) RoomChanged(info RoomInfo) {
	h.mu.Lock()
	r := h.rooms[info.ID]
	h.mu.Unlock()
	if r == nil {
		return
	}
	r.mu.Lock()
	r.info = info
	r.mu.Unlock()
	if r.e2ee != info.E2EE {
		h.endForMode(r)
	}
}

// EndRoom ends the meeting of a room, if one is in progress (the room was
// deleted): everyone gets ended and is disconnected.
func (h *Hub) EndRoom(roomID string) {
	h.mu.Lock()
	r := h.rooms[roomID]
	h.mu.Unlock()
	if r != nil {
		r.end()
	}
}

// forget removes an ended room from the registry, so that the next person
// to connect starts a new meeting.
func (h *Hub) forget(r *room) {
	h.mu.Lock()
	if h.rooms[r.id] == r {
		delete(h.rooms, r.id)
	}
	h.mu.Unlock()
}

// Close closes every socket (1001), waits for them, and stops the hub's
// goroutines. New sockets are refused from the moment it is called.
func (h *Hub) Close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	parts := make([]*participant, 0, len(h.parts))
	for p := range h.parts {
		parts = append(parts, p)
	}
	edges := make([]*conn, 0, len(h.edges))
	for c := range h.edges {
		edges = append(edges, c)
	}
	h.mu.Unlock()
	for _, p := range parts {
		p.c.close(CloseGoingAway, "server shutting down")
	}
	for _, c := range edges {
		c.close(CloseGoingAway, "server shutting down")
	}
	served := make(chan struct{})
	go func() { h.serving.Wait(); close(served) }()
	select {
	case <-served:
	case <-time.After(closeTimeout):
		h.log.Error("signaling: sockets still open after shutdown; stopping anyway", "timeout", closeTimeout)
	}
	close(h.stop)
	h.unsub()
	h.loops.Wait()
	h.mu.Lock()
	rooms := h.rooms
	h.rooms = map[string]*room{}
	h.mu.Unlock()
	for _, r := range rooms {
		r.mu.Lock()
		r.closed = true
		r.mu.Unlock()
		r.closeMedia()
	}
}

// Stats is a snapshot of the hub for operators and tests: the meetings
// this node runs, the participants in them (Sockets; on a node of a
// cluster some are relayed from other nodes: Remote), and the sockets this node
// holds whose meeting runs on another node (Relayed).
type Stats struct {
	Rooms, Sockets, Relayed int
	// Remote counts the participants (of Sockets) whose socket another
	// node holds.
	Remote int
}

// Stats counts the rooms and open sockets.
func (h *Hub) Stats() Stats {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := Stats{Rooms: len(h.rooms), Sockets: len(h.parts), Relayed: len(h.edges)}
	for p := range h.parts {
		if p.c.wire != nil {
			st.Remote++
		}
	}
	return st
}

// EndMoved ends the meeting of a room this node runs because another node
// owns the room now (cluster): everyone is disconnected with 1012 and
// told to join again, which takes them to the meeting that counts.
func (h *Hub) EndMoved(roomID string) {
	h.mu.Lock()
	r := h.rooms[roomID]
	h.mu.Unlock()
	if r == nil {
		return
	}
	r.endWith(false, CloseServiceRestart, "the meeting moved to another server; join again")
	h.record("system", "signal.end", roomID, audit.Success, "", map[string]any{"reason": "another node owns the room"})
}

// keepAliveLoop asks auth every KeepAliveInterval, in one batch, which
// sessions of open sockets still live, and closes the sockets of the ones
// that do not (1008). It also closes sockets that never joined and
// releases tickets whose upgrade never happened.
func (h *Hub) keepAliveLoop() {
	defer h.loops.Done()
	t := time.NewTicker(h.cfg.KeepAliveInterval)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
			h.keepAlive()
		}
	}
}

func (h *Hub) keepAlive() {
	now := time.Now()
	h.mu.Lock()
	parts := make([]*participant, 0, len(h.parts))
	for p := range h.parts {
		parts = append(parts, p)
	}
	for t := range h.pending {
		if now.Sub(t.created) > ticketTTL {
			t.releaseLocked()
		}
	}
	h.mu.Unlock()
	if len(parts) == 0 {
		return
	}
	// Each session once, however many sockets it has open.
	var sessions, guests []string
	seenSession, seenGuest := map[string]bool{}, map[string]bool{}
	for _, p := range parts {
		if p.ident.Guest {
			if !seenGuest[p.ident.GuestID] {
				seenGuest[p.ident.GuestID] = true
				guests = append(guests, p.ident.GuestID)
			}
		} else if !seenSession[p.ident.SessionID] {
			seenSession[p.ident.SessionID] = true
			sessions = append(sessions, p.ident.SessionID)
		}
		if p.waitingForJoin(now, h.cfg.JoinTimeout) {
			p.c.close(ClosePolicy, "join first")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	liveSessions, liveGuests, err := h.cfg.KeepAlive(ctx, sessions, guests)
	if err != nil {
		// The store is unreachable: nobody can sign out meanwhile either.
		h.log.Warn("signaling: session keep-alive failed; sockets stay open", "err", err)
		return
	}
	iceNow := h.cfg.Now()
	for _, p := range parts {
		alive := liveSessions[p.ident.SessionID]
		if p.ident.Guest {
			alive = liveGuests[p.ident.GuestID]
		}
		if !alive {
			p.c.close(ClosePolicy, "session ended")
			continue
		}
		p.refreshICE(iceNow)
	}
}

// policyLoop re-checks the rights of live participants when rbac announces
// a change: the participants of the subject concerned, or everyone for a
// policy event.
func (h *Hub) policyLoop(events <-chan rbac.Event) {
	defer h.loops.Done()
	for {
		select {
		case <-h.stop:
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			h.mu.Lock()
			var affected []*participant
			for p := range h.parts {
				if ev.Kind == rbac.EventPolicy || p.ident.Subject == ev.Subject && (ev.Room == rbac.Global || ev.Room == p.roomID()) {
					affected = append(affected, p)
				}
			}
			h.mu.Unlock()
			for _, p := range affected {
				p.recheck()
			}
		}
	}
}

// roomPerms is what subject may do in the room: its room and recording
// actions (global ones are not the room's business).
func (h *Hub) roomPerms(subject, roomID string) []string {
	out := []string{}
	for _, a := range h.cfg.Authorizer.Permissions(context.Background(), subject, roomID) {
		if strings.HasPrefix(a, "room.") || strings.HasPrefix(a, "recording.") {
			out = append(out, a)
		}
	}
	return out
}

// roleOf names subject's role in the room, or its global role when it
// holds none there (an admin), for display.
func (h *Hub) roleOf(subject, roomID string) string {
	ctx := context.Background()
	if role, ok := h.cfg.Authorizer.RoomRole(ctx, subject, roomID); ok {
		return role
	}
	if roles := h.cfg.Authorizer.GlobalRoles(ctx, subject); len(roles) > 0 {
		return roles[0]
	}
	return ""
}

func (h *Hub) can(subject, roomID, action string) bool {
	return h.cfg.Authorizer.Can(context.Background(), subject, roomID, action)
}

// record writes an audit event; a failure is logged, never fatal.
func (h *Hub) record(actor, action, roomID, outcome, ip string, details map[string]any) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := h.cfg.Audit.Record(ctx, audit.Event{Actor: actor, Action: action, Target: "room:" + roomID,
		Outcome: outcome, ClientIP: ip, Details: details}); err != nil {
		h.log.Error("signaling: audit record failed", "action", action, "err", err)
	}
}

// newID is 96 random bits, URL-safe.
func newID() string {
	b := make([]byte, 12)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

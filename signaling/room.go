package signaling

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"
	"golang.org/x/time/rate"

	"github.com/parley-meet/parley/audit"
	"github.com/parley-meet/parley/rbac"
)

// room is one meeting: the people connected to it (waiting in the lobby or
// in the meeting), its lock, its chat history and its forwarding domain.
//
// Locking: room.mu guards everything below it and the participants' room
// state. The media plane is never called while room.mu is held (except
// Tracks, which reports no events), because it may report events
// synchronously and the event handlers take room.mu.
type room struct {
	hub   *Hub
	id    string
	media MediaRoom

	// e2ee: this meeting is end-to-end encrypted (e2ee.go); fixed when
	// it starts.
	e2ee bool

	mu       sync.Mutex
	info     RoomInfo
	locked   bool
	closed   bool                    // ended or emptied: this meeting is over
	parts    map[string]*participant // every socket of the room, by participant id
	lobby    []*participant          // waiting, in arrival order
	admitted map[string]bool         // subjects admitted in this meeting (a reconnect skips the lobby)
	kicked   map[string]bool         // subjects kicked in this meeting (they wait in the lobby when they come back)
	history  [][]byte                // the last chat messages, encoded
	chat     map[string]*rate.Limiter
	// recording: the recorder taps this meeting. Changed only under recMu
	// (held across the recorder's Start and Stop), read under mu.
	recording bool
	recMu     sync.Mutex
}

func newRoom(h *Hub, info RoomInfo, media MediaRoom) *room {
	return &room{hub: h, id: info.ID, media: media, e2ee: info.E2EE, info: info, parts: map[string]*participant{},
		admitted: map[string]bool{}, kicked: map[string]bool{}, chat: map[string]*rate.Limiter{}}
}

// Participant states.
type partState int

const (
	stateConnected partState = iota // the socket is open; join not yet sent
	stateLobby                      // waiting for a moderator
	stateActive                     // in the meeting
	stateGone                       // left, denied, kicked or ended
)

// participant is one socket in a room. Its room state is guarded by
// room.mu; the limiters belong to its reader goroutine.
type participant struct {
	hub         *Hub
	id          string
	ident       Identity
	c           *conn
	connectedAt time.Time
	room        *room // set once by attach

	// Guarded by room.mu.
	state partState
	name  string
	role  string
	perms []string
	pub   Publish
	hand  bool
	media MediaParticipant
	// e2eeKey is the public key sent with join in an end-to-end
	// encrypted meeting (opaque to the server).
	e2eeKey string

	// iceRefresh is when to send new ICE credentials (unix ns; 0: never),
	// set at activation and by the keep-alive loop that sends them.
	iceRefresh atomic.Int64

	// The reader goroutine's own (its dispatch). abuse, malformed and
	// denials are made at their first use (lazyLimiter).
	limiter     *rate.Limiter // messages
	abuse       *rate.Limiter // messages refused by limiter
	malformed   *rate.Limiter
	denials     *rate.Limiter // audited refusals
	e2eeKeys    *rate.Limiter // e2ee_key messages
	suppressed  int           // refusals not audited since the last audited one
	lastRateErr time.Time
}

// scheduleICERefresh plans the next ice_servers message for credentials
// that expire at expires: after four fifths of their life.
func (p *participant) scheduleICERefresh(expires time.Time) {
	now := p.hub.cfg.Now()
	if expires.IsZero() || !expires.After(now) {
		p.iceRefresh.Store(0)
		return
	}
	p.iceRefresh.Store(now.Add(expires.Sub(now) * 4 / 5).UnixNano())
}

// refreshICE sends fresh ICE credentials if they are due.
func (p *participant) refreshICE(now time.Time) {
	at := p.iceRefresh.Load()
	if at == 0 || now.UnixNano() < at || !p.iceRefresh.CompareAndSwap(at, 0) {
		return
	}
	ice, expires := p.hub.cfg.ICEServers(p.id)
	if ice == nil {
		ice = []ICEServer{}
	}
	p.scheduleICERefresh(expires)
	p.c.send(mustJSON(iceServersMsg{Type: "ice_servers", ICEServers: ice}))
}

func newParticipant(h *Hub, c *conn, id Identity) *participant {
	cfg := &h.cfg
	return &participant{
		hub: h, id: newID(), ident: id, c: c, connectedAt: time.Now(), name: id.Name,
		limiter:  rate.NewLimiter(rate.Limit(cfg.MessageRate), cfg.MessageBurst),
		e2eeKeys: rateLimiter(e2eeKeyRate, e2eeKeyBurst),
	}
}

// lazyLimiter returns *l, made at its first use: a limiter nothing has
// drawn from is full, so making it now is the same as making it at
// connect, and the many sockets that never misbehave hold none.
func lazyLimiter(l **rate.Limiter, r rate.Limit, burst int) *rate.Limiter {
	if *l == nil {
		*l = rate.NewLimiter(r, burst)
	}
	return *l
}

func (p *participant) roomID() string { return p.room.id }

// waitingForJoin reports whether p has not sent join within timeout.
func (p *participant) waitingForJoin(now time.Time, timeout time.Duration) bool {
	if now.Sub(p.connectedAt) < timeout {
		return false
	}
	p.room.mu.Lock()
	defer p.room.mu.Unlock()
	return p.state == stateConnected
}

func has(perms []string, action string) bool { return slices.Contains(perms, action) }

// publishOf maps rights to what the media plane lets one publish.
func publishOf(perms []string) Publish {
	return Publish{Audio: has(perms, rbac.ActRoomPublish), Video: has(perms, rbac.ActRoomPublish), Screen: has(perms, rbac.ActRoomScreen)}
}

func (p *participant) arrival(inLobby bool) arrivalView {
	return arrivalView{ID: p.id, Name: p.name, Role: p.role, Guest: p.ident.Guest, InLobby: inLobby, E2EEPublicKey: p.e2eeKey}
}

// broadcastLocked queues b for every participant in the meeting for whom
// keep says yes (nil: all). Lobby participants never get room traffic.
func (r *room) broadcastLocked(b []byte, keep func(*participant) bool) {
	for _, q := range r.parts {
		if q.state == stateActive && (keep == nil || keep(q)) {
			q.c.send(b)
		}
	}
}

func (r *room) broadcast(b []byte, keep func(*participant) bool) {
	r.mu.Lock()
	r.broadcastLocked(b, keep)
	r.mu.Unlock()
}

// isModerator says whether q sees the lobby (its rights as last checked).
func isModerator(q *participant) bool { return has(q.perms, rbac.ActRoomModerate) }

// removeFromLobbyLocked takes q out of the lobby and tells the others
// waiting their new position.
func (r *room) removeFromLobbyLocked(q *participant) {
	i := slices.Index(r.lobby, q)
	if i < 0 {
		return
	}
	r.lobby = slices.Delete(r.lobby, i, i+1)
	for j := i; j < len(r.lobby); j++ {
		r.lobby[j].c.send(mustJSON(lobbyMsg{Type: "lobby", Position: j + 1}))
	}
}

// membersLocked lists the meeting's participants for p's welcome, and the
// lobby too when p is a moderator.
func (r *room) membersLocked(p *participant, tracks []Track) []memberView {
	byOwner := map[string][]trackView{}
	for _, t := range tracks {
		byOwner[t.Participant] = append(byOwner[t.Participant], trackView{TrackID: t.ID, Kind: t.Kind, Source: t.Source})
	}
	out := []memberView{}
	for _, q := range r.parts {
		if q == p || q.state != stateActive && !(q.state == stateLobby && isModerator(p)) {
			continue
		}
		ts := byOwner[q.id]
		if ts == nil {
			ts = []trackView{}
		}
		out = append(out, memberView{ID: q.id, Name: q.name, Role: q.role, Guest: q.ident.Guest,
			HandRaised: q.hand, InLobby: q.state == stateLobby, Tracks: ts, E2EEPublicKey: q.e2eeKey})
	}
	slices.SortFunc(out, func(a, b memberView) int {
		if a.InLobby != b.InLobby {
			if a.InLobby {
				return 1
			}
			return -1
		}
		return compareStrings(a.ID, b.ID)
	})
	return out
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// activate brings p into the meeting: welcome (with the participants, their
// tracks and the chat history) and participant_joined for the others. It
// runs on p's reader goroutine at join, or on a moderator's at admit. Its
// PeerConnection is made at its first offer (joinMedia): someone who never
// negotiates media costs the media plane nothing.
func (p *participant) activate() {
	r, h := p.room, p.hub
	r.mu.Lock()
	defer r.mu.Unlock()
	if p.state != stateConnected && p.state != stateLobby || r.closed {
		return
	}
	p.state = stateActive
	r.admitted[p.ident.Subject] = true
	p.pub = publishOf(p.perms)
	ice, expires := h.cfg.ICEServers(p.id)
	p.scheduleICERefresh(expires)
	welcome := welcomeMsg{Type: "welcome", ParticipantID: p.id, Role: p.role, Permissions: p.perms,
		Participants: r.membersLocked(p, r.media.Tracks()), ICEServers: ice,
		Room: roomView{Name: r.info.Name, Locked: r.locked, Recording: r.recording, E2EE: r.e2ee}}
	if welcome.ICEServers == nil {
		welcome.ICEServers = []ICEServer{}
	}
	// Queued under the lock, so that nothing broadcast meanwhile reaches
	// p before its welcome.
	p.c.send(mustJSON(welcome))
	if h.cfg.OnJoined != nil {
		h.cfg.OnJoined(time.Since(p.connectedAt))
	}
	for _, m := range r.history {
		p.c.send(m)
	}
	r.broadcastLocked(mustJSON(joinedMsg{Type: "participant_joined", Participant: p.arrival(false)}),
		func(q *participant) bool { return q != p })
}

// joinMedia gives p its PeerConnection in the media plane, made at its
// first offer. It runs on p's reader goroutine (the only one that makes
// it). A failure is answered (internal, then 1011) and reported false, as
// is p having left the meeting meanwhile.
func (p *participant) joinMedia() (MediaParticipant, bool) {
	r, h := p.room, p.hub
	r.mu.Lock()
	st, mp, pub := p.state, p.media, p.pub
	r.mu.Unlock()
	if st != stateActive {
		return nil, false
	}
	if mp != nil {
		return mp, true
	}
	mp, err := r.media.Join(p.id, mediaEvents{p}, pub)
	if err != nil {
		h.log.Error("signaling: joining the media plane failed", "room", r.id, "err", err)
		p.c.send(errorJSON(&protoError{codeInternal, "the media server could not take you in; try again"}, ""))
		p.c.close(CloseInternal, "media unavailable")
		return nil, false
	}
	r.mu.Lock()
	if p.state != stateActive {
		r.mu.Unlock()
		mp.Close()
		return nil, false
	}
	p.media = mp
	later := p.pub // a re-check may have changed it meanwhile
	r.mu.Unlock()
	if later != pub {
		mp.SetPublish(later)
	}
	return mp, true
}

// leave takes p out of its room when its socket has closed.
func (r *room) leave(p *participant) {
	r.mu.Lock()
	prev := p.state
	p.state = stateGone
	mp := p.media
	p.media = nil
	delete(r.parts, p.id)
	if prev == stateLobby {
		r.removeFromLobbyLocked(p)
		r.broadcastLocked(mustJSON(leftMsg{Type: "participant_left", Participant: p.id}), isModerator)
	}
	r.mu.Unlock()
	if mp != nil {
		mp.Close() // its tracks are unpublished (track_unpublished to the others)
	}
	if prev == stateActive {
		r.broadcast(mustJSON(leftMsg{Type: "participant_left", Participant: p.id}), nil)
	}
	if prev == stateLobby || prev == stateActive {
		p.hub.record(p.ident.Actor, "signal.leave", r.id, audit.Success, p.ident.ClientIP, map[string]any{"participant": p.id})
	}
}

// recheck applies a change of rights to p at once: the new permissions
// (and role), publishing rights withdrawn in the media plane, and removal
// when it may no longer join.
func (p *participant) recheck() {
	r, h := p.room, p.hub
	perms := h.roomPerms(p.ident.Subject, r.id)
	role := h.roleOf(p.ident.Subject, r.id)
	r.mu.Lock()
	if p.state != stateLobby && p.state != stateActive {
		r.mu.Unlock()
		return
	}
	if !has(perms, rbac.ActRoomJoin) {
		wasLobby := p.state == stateLobby
		mp := r.expelLocked(p, msgKicked, ClosePolicy, "removed from the room")
		r.mu.Unlock()
		if mp != nil {
			mp.Close() // its tracks stop at once
		}
		h.record("system", "signal.removed", r.id, audit.Success, p.ident.ClientIP,
			map[string]any{"participant": p.id, "subject": p.ident.Subject, "lobby": wasLobby})
		return
	}
	wasModerator := isModerator(p)
	changed := role != p.role || !slices.Equal(perms, p.perms)
	p.perms, p.role = perms, role
	var mp MediaParticipant
	pub := publishOf(perms)
	if p.state == stateActive && pub != p.pub {
		p.pub = pub
		mp = p.media
	}
	if changed {
		p.c.send(mustJSON(permissionsMsg{Type: "permissions", Role: role, Permissions: perms}))
	}
	if p.state == stateActive && !wasModerator && isModerator(p) {
		// A new moderator learns who is waiting.
		for _, q := range r.lobby {
			p.c.send(mustJSON(joinedMsg{Type: "participant_joined", Participant: q.arrival(true)}))
		}
	}
	r.mu.Unlock()
	if mp != nil {
		mp.SetPublish(pub)
	}
}

// mediaEvents passes one participant's media events on to the sockets.
type mediaEvents struct{ p *participant }

func (e mediaEvents) guard(what string) {
	if v := recover(); v != nil {
		e.p.hub.log.Error("signaling: panic in a media event handler", "event", what, "panic", v)
	}
}

func (e mediaEvents) OnOffer(sdp string) {
	defer e.guard("offer")
	e.p.c.send(mustJSON(sdpMsg{Type: "offer", SDP: sdp}))
}

func (e mediaEvents) OnCandidate(c webrtc.ICECandidateInit) {
	defer e.guard("candidate")
	e.p.c.send(mustJSON(candidateOut{Type: "candidate", Candidate: c}))
}

func (e mediaEvents) OnTrackPublished(t Track) {
	defer e.guard("track_published")
	e.p.room.broadcast(mustJSON(trackPublishedMsg{Type: "track_published", Participant: t.Participant,
		TrackID: t.ID, Kind: t.Kind, Source: t.Source}), nil)
}

func (e mediaEvents) OnTrackUnpublished(t Track) {
	defer e.guard("track_unpublished")
	e.p.room.broadcast(mustJSON(trackUnpublishedMsg{Type: "track_unpublished", Participant: t.Participant, TrackID: t.ID}), nil)
}

func (e mediaEvents) OnConnectionState(state string) {
	e.p.hub.log.Debug("signaling: media connection state", "room", e.p.room.id, "participant", e.p.id, "state", state)
}

func rateLimiter(perSecond float64, burst int) *rate.Limiter {
	return rate.NewLimiter(rate.Limit(perSecond), burst)
}

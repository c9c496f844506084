package signaling

import (
	"errors"
	"runtime/debug"
	"strings"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/pion/webrtc/v4"
	"golang.org/x/time/rate"

	"github.com/parley-meet/parley/audit"
	"github.com/parley-meet/parley/internal/text"
	"github.com/parley-meet/parley/rbac"
)

// readLoop reads the socket until it fails or closes, and returns having
// closed p.c. Pongs (not messages) keep it alive: a peer that misses two
// pings is closed.
func (p *participant) readLoop() {
	if p.c.wire != nil {
		for {
			mt, data, err := p.c.wire.Recv()
			if err != nil {
				// The client left, or its node is gone.
				p.c.close(CloseNormal, "")
				return
			}
			if !p.c.isClosing() {
				p.handle(mt, data)
			}
		}
	}
	pongWait := 2*p.hub.cfg.PingInterval + p.hub.cfg.PingInterval/2
	p.c.readWS(pongWait, p.handle)
}

// handle runs dispatch on a goroutine of its own and waits for it. Handling
// a message can take a deep stack (rbac, the audit log, JSON), which a
// goroutine keeps until the garbage collector shrinks it; the reader, which
// every socket keeps for its whole life, then only ever needs the stack of
// a read.
func (p *participant) handle(mt int, data []byte) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.dispatch(mt, data)
	}()
	<-done
}

// dispatch handles one message. Nothing a client sends may take the room
// down: a panic is logged with its stack and closes this socket only
// (1011), and the client never sees its text.
func (p *participant) dispatch(mt int, data []byte) {
	defer func() {
		if v := recover(); v != nil {
			p.hub.log.Error("signaling: panic while handling a message", "room", p.roomID(), "participant", p.id,
				"panic", v, "stack", string(debug.Stack()))
			p.c.send(errorJSON(&protoError{codeInternal, "internal error"}, ""))
			p.c.close(CloseInternal, "internal error")
		}
	}()
	if !p.limiter.Allow() {
		if !lazyLimiter(&p.abuse, 10, p.hub.cfg.AbuseBurst).Allow() {
			p.c.close(ClosePolicy, "too many messages")
			return
		}
		if now := time.Now(); now.Sub(p.lastRateErr) >= time.Second {
			p.lastRateErr = now
			p.c.send(errorJSON(&protoError{codeRateLimited, "too many messages: slow down"}, ""))
		}
		return
	}
	if mt != websocket.TextMessage {
		p.refuse(errBad("messages are JSON text frames"), "")
		return
	}
	typ, msg, perr := decode(data)
	if perr != nil {
		p.refuse(perr, typ)
		return
	}
	switch m := msg.(type) {
	case *joinMsg:
		p.onJoin(m)
	case *offerMsg:
		p.onOffer(m)
	case *answerMsg:
		p.onAnswer(m)
	case *candidateMsg:
		p.onCandidate(m)
	case *chatMsg:
		p.onChat(m)
	case *raiseHandMsg:
		p.onRaiseHand(m)
	case *muteMsg:
		p.onMute(m)
	case *targetMsg:
		p.onTarget(typ, m.Participant)
	case *lockMsg:
		p.onLock(m)
	case *layerMsg:
		p.onLayer(m)
	case *recordMsg:
		p.onRecord(m)
	case *e2eeKeyMsg:
		p.onE2EEKey(m)
	case *bareMsg:
		switch typ {
		case typeLeave:
			p.c.close(CloseNormal, "bye")
		case typeEnd:
			p.onEnd()
		}
	}
}

// refuse answers a message with an error. Malformed ones count: too many
// close the socket (1008).
func (p *participant) refuse(e *protoError, typ string) {
	p.c.send(errorJSON(e, typ))
	switch e.code {
	case codeBadMessage, codeUnknownType, codeInvalid:
		if !lazyLimiter(&p.malformed, rate.Every(6*time.Second), max(p.hub.cfg.MaxMalformed-1, 0)).Allow() {
			p.c.close(ClosePolicy, "too many malformed messages")
		}
	}
}

// permitted asks rbac, at this moment, whether p may do action. A refusal
// answers forbidden, changes nothing and is audited as signal.<what>
// (a socket's refusals are audited at 1/s, burst 10; the others are
// counted in the next audited one).
func (p *participant) permitted(action, typ, what string, details map[string]any) bool {
	if p.hub.can(p.ident.Subject, p.roomID(), action) {
		return true
	}
	p.c.send(errorJSON(&protoError{codeForbidden, "your role in this room does not allow that"}, typ))
	if !lazyLimiter(&p.denials, 1, 10).Allow() {
		p.suppressed++
		return false
	}
	if details == nil {
		details = map[string]any{}
	}
	details["participant"] = p.id
	details["action"] = action
	if p.suppressed > 0 {
		details["suppressed"] = p.suppressed
		p.suppressed = 0
	}
	p.hub.record(p.ident.Actor, "signal."+what, p.roomID(), audit.Denied, p.ident.ClientIP, details)
	return false
}

// active checks that p is in the meeting, or says why not.
func (p *participant) active(typ string) (MediaParticipant, bool) {
	r := p.room
	r.mu.Lock()
	st, mp := p.state, p.media
	r.mu.Unlock()
	switch st {
	case stateConnected:
		p.c.send(errorJSON(&protoError{codeNotJoined, "send join first"}, typ))
	case stateLobby:
		p.c.send(errorJSON(&protoError{codeInLobby, "you are waiting to be admitted"}, typ))
	case stateActive:
		return mp, true
	}
	return nil, false
}

// activeMedia is active for messages that need the PeerConnection, which
// the participant's first offer makes.
func (p *participant) activeMedia(typ string) (MediaParticipant, bool) {
	mp, ok := p.active(typ)
	if ok && mp == nil {
		p.c.send(errorJSON(&protoError{codeBadState, "send your offer first"}, typ))
		return nil, false
	}
	return mp, ok
}

func (p *participant) onJoin(m *joinMsg) {
	r, h := p.room, p.hub
	name := p.ident.Name
	if m.DisplayName != nil {
		n, err := text.Clean(*m.DisplayName, 1, 64)
		if err != nil {
			p.refuse(&protoError{codeInvalid, "display_name has 1 to 64 characters and no control characters"}, typeJoin)
			return
		}
		name = n
	}
	perms := h.roomPerms(p.ident.Subject, r.id)
	role := h.roleOf(p.ident.Subject, r.id)
	if !has(perms, rbac.ActRoomJoin) {
		p.c.send(msgKicked)
		p.c.close(ClosePolicy, "you may not join this room")
		return
	}
	r.mu.Lock()
	if p.state != stateConnected {
		r.mu.Unlock()
		p.c.send(errorJSON(&protoError{codeBadState, "already joined"}, typeJoin))
		return
	}
	if r.e2ee && m.E2EEPublicKey == nil {
		r.mu.Unlock()
		p.c.send(errorJSON(&protoError{codeE2EERequired, "this meeting is end-to-end encrypted: join from a browser that can encrypt media (e2ee_public_key)"}, typeJoin))
		return
	}
	if r.e2ee {
		p.e2eeKey = *m.E2EEPublicKey
	}
	p.name, p.role, p.perms = name, role, perms
	subject := p.ident.Subject
	// Moderators never wait. Everyone else waits when the room is locked
	// or has its lobby on, guests also when the room does not admit
	// guests directly, and whoever was kicked from this meeting; someone
	// already admitted to this meeting (a reconnect) does not wait again.
	lobby := !isModerator(p) && (r.kicked[subject] ||
		!r.admitted[subject] && (r.locked || r.info.Lobby || p.ident.Guest && !r.info.GuestsAllowed))
	if lobby {
		p.state = stateLobby
		r.lobby = append(r.lobby, p)
		p.c.send(mustJSON(lobbyMsg{Type: "lobby", Position: len(r.lobby)}))
		r.broadcastLocked(mustJSON(joinedMsg{Type: "participant_joined", Participant: p.arrival(true)}), isModerator)
	}
	r.mu.Unlock()
	h.record(p.ident.Actor, "signal.join", r.id, audit.Success, p.ident.ClientIP,
		map[string]any{"participant": p.id, "lobby": lobby})
	if !lobby {
		p.activate()
	}
}

// sendingNeeds reads which kinds of media an offer sends (m-sections of
// audio or video whose direction is sendrecv or sendonly, session-level
// default included), with the sources the client named per msid track.
func sendingNeeds(sdp string, sources map[string]string) Publish {
	var (
		need       Publish
		sessionDir = "sendrecv"
		inSession  = true
		kind, dir  string
		track      string
		rejected   bool
		bundleOnly bool
	)
	flush := func() {
		if inSession || kind != "audio" && kind != "video" || rejected && !bundleOnly {
			return
		}
		if dir != "sendrecv" && dir != "sendonly" {
			return
		}
		switch {
		case sources[track] == "screen":
			need.Screen = true
		case kind == "audio":
			need.Audio = true
		default:
			need.Video = true
		}
	}
	for _, line := range strings.Split(sdp, "\n") {
		line = strings.TrimRight(line, "\r")
		switch {
		case strings.HasPrefix(line, "m="):
			flush()
			f := strings.Fields(line[2:])
			inSession, kind, dir, track, rejected, bundleOnly = false, "", sessionDir, "", false, false
			if len(f) > 0 {
				kind = f[0]
			}
			rejected = len(f) > 1 && f[1] == "0"
		case line == "a=sendrecv" || line == "a=sendonly" || line == "a=recvonly" || line == "a=inactive":
			if inSession {
				sessionDir = line[2:]
			} else {
				dir = line[2:]
			}
		case line == "a=bundle-only":
			bundleOnly = true
		case strings.HasPrefix(line, "a=msid:") && !inSession:
			if f := strings.Fields(line[len("a=msid:"):]); len(f) >= 2 {
				track = f[1]
			}
		}
	}
	flush()
	return need
}

func (p *participant) onOffer(m *offerMsg) {
	if _, ok := p.active(typeOffer); !ok {
		return
	}
	h, r := p.hub, p.room
	need := sendingNeeds(m.SDP, m.Tracks)
	may := h.can(p.ident.Subject, r.id, rbac.ActRoomPublish)
	pub := Publish{Audio: may, Video: may, Screen: h.can(p.ident.Subject, r.id, rbac.ActRoomScreen)}
	if (need.Audio || need.Video) && !pub.Audio {
		p.permitted(rbac.ActRoomPublish, typeOffer, "publish", nil)
		return
	}
	if need.Screen && !pub.Screen {
		p.permitted(rbac.ActRoomScreen, typeOffer, "screen", nil)
		return
	}
	r.mu.Lock()
	p.pub = pub
	r.mu.Unlock()
	mp, ok := p.joinMedia() // the first offer makes the PeerConnection
	if !ok {
		return
	}
	mp.SetPublish(pub)
	answer, err := mp.HandleOffer(m.SDP, m.Tracks)
	if err != nil {
		p.mediaError(typeOffer, err)
		return
	}
	p.c.send(mustJSON(sdpMsg{Type: "answer", SDP: answer}))
}

// mediaError answers a refusal of the media plane without its details.
func (p *participant) mediaError(typ string, err error) {
	if errors.Is(err, ErrBadSDP) {
		p.refuse(&protoError{codeBadSDP, "the session description was refused"}, typ)
		return
	}
	p.hub.log.Debug("signaling: media plane refused a message", "type", typ, "err", err)
	p.c.send(errorJSON(&protoError{codeBadState, "that cannot be applied now"}, typ))
}

func (p *participant) onAnswer(m *answerMsg) {
	mp, ok := p.activeMedia(typeAnswer)
	if !ok {
		return
	}
	if err := mp.HandleAnswer(m.SDP); err != nil {
		p.mediaError(typeAnswer, err)
	}
}

func (p *participant) onCandidate(m *candidateMsg) {
	mp, ok := p.activeMedia(typeCandidate)
	if !ok {
		return
	}
	c := webrtc.ICECandidateInit{Candidate: m.Candidate.Candidate, SDPMid: m.Candidate.SDPMid,
		SDPMLineIndex: m.Candidate.SDPMLineIndex, UsernameFragment: m.Candidate.UsernameFragment}
	if err := mp.AddCandidate(c); err != nil {
		p.mediaError(typeCandidate, err)
	}
}

func (p *participant) onLayer(m *layerMsg) {
	if mp, ok := p.activeMedia(typeLayer); ok {
		mp.RequestLayer(m.TrackID, *m.MaxWidth)
	}
}

func (p *participant) onChat(m *chatMsg) {
	if !p.permitted(rbac.ActRoomChat, typeChat, "chat", nil) {
		return
	}
	if _, ok := p.active(typeChat); !ok {
		return
	}
	clean, ok := cleanChat(m.Text)
	if !ok {
		p.refuse(&protoError{codeInvalid, "a chat message has 1 to 2000 characters"}, typeChat)
		return
	}
	r, h := p.room, p.hub
	r.mu.Lock()
	lim := r.chat[p.ident.Subject]
	if lim == nil {
		lim = rateLimiter(h.cfg.ChatRate, h.cfg.ChatBurst)
		r.chat[p.ident.Subject] = lim
	}
	if !lim.Allow() {
		r.mu.Unlock()
		p.c.send(errorJSON(&protoError{codeRateLimited, "too many chat messages: slow down"}, typeChat))
		return
	}
	// The sender is who the server knows, never what the client says.
	b := mustJSON(chatOut{Type: "chat", From: p.id, Name: p.name, Text: clean, TS: timestamp(h.cfg.Now())})
	r.history = append(r.history, b)
	if over := len(r.history) - h.cfg.ChatHistory; over > 0 {
		r.history = append(r.history[:0:0], r.history[over:]...)
	}
	r.broadcastLocked(b, nil)
	r.mu.Unlock()
}

func (p *participant) onRaiseHand(m *raiseHandMsg) {
	if _, ok := p.active(typeRaiseHand); !ok {
		return
	}
	r := p.room
	r.mu.Lock()
	p.hand = *m.Raised
	r.broadcastLocked(mustJSON(handMsg{Type: "hand", Participant: p.id, Raised: p.hand}), nil)
	r.mu.Unlock()
}

func (p *participant) onRecord(m *recordMsg) {
	details := map[string]any{"action": m.Action}
	if !p.permitted(rbac.ActRoomRecord, typeRecord, "record", details) {
		return
	}
	if _, ok := p.active(typeRecord); !ok {
		return
	}
	err := p.room.setRecording(m.Action == "start", p.ident.Actor, p.ident.ClientIP)
	switch {
	case err == nil:
	case errors.Is(err, ErrRecordingE2EE):
		p.c.send(errorJSON(&protoError{codeE2EERoom, ErrRecordingE2EE.Error()}, typeRecord))
	case errors.Is(err, ErrRecordingUnavailable):
		p.c.send(errorJSON(&protoError{codeUnavailable, "recording is not available on this server"}, typeRecord))
	case errors.Is(err, ErrRecordingState):
		p.c.send(errorJSON(&protoError{codeInvalid, err.Error()}, typeRecord))
	case errors.Is(err, ErrNoMeeting):
		// The meeting ended meanwhile; the socket is closing.
	default:
		p.c.send(errorJSON(&protoError{codeInternal, "the recording could not be changed; try again"}, typeRecord))
	}
}

// moderating checks room.moderate for a moderation message, then that the
// moderator is in the meeting.
func (p *participant) moderating(typ string, details map[string]any) bool {
	if !p.permitted(rbac.ActRoomModerate, typ, typ, details) {
		return false
	}
	_, ok := p.active(typ)
	return ok
}

func (p *participant) moderated(typ string, details map[string]any) {
	details["participant"] = p.id
	p.hub.record(p.ident.Actor, "signal."+typ, p.roomID(), audit.Success, p.ident.ClientIP, details)
}

// target finds a participant of the room in one of the given states.
func (r *room) targetLocked(id string, states ...partState) *participant {
	t := r.parts[id]
	if t == nil {
		return nil
	}
	for _, s := range states {
		if t.state == s {
			return t
		}
	}
	return nil
}

func (p *participant) noSuch(typ string) {
	p.c.send(errorJSON(&protoError{codeNoSuch, "no such participant here"}, typ))
}

func (p *participant) onMute(m *muteMsg) {
	if !p.moderating(typeMute, map[string]any{"target": m.Participant}) {
		return
	}
	t := p.room.mute(m.Participant, m.Kind, p.id)
	if t == nil {
		p.noSuch(typeMute)
		return
	}
	p.moderated(typeMute, map[string]any{"target": t.id, "subject": t.ident.Subject, "kind": m.Kind})
}

// mute stops the kind ("audio" or "video") tracks of participant id in the
// media plane and tells everyone; by is the moderator's participant id
// ("" for the console). It returns the target, nil if not in the meeting.
func (r *room) mute(id, kind, by string) *participant {
	r.mu.Lock()
	t := r.targetLocked(id, stateActive)
	var mp MediaParticipant
	if t != nil {
		mp = t.media
	}
	r.mu.Unlock()
	if t == nil {
		return nil
	}
	if mp != nil {
		mp.StopTrack(kind)
	}
	r.broadcast(mustJSON(mutedMsg{Type: "muted", Participant: t.id, Kind: kind, By: by}), nil)
	return t
}

// kick removes participant id (in the meeting or its lobby): kicked, its
// socket closed; back later, it waits in the lobby. It returns the target,
// nil if there is none.
func (r *room) kick(id string) *participant {
	r.mu.Lock()
	t := r.targetLocked(id, stateActive, stateLobby)
	var mp MediaParticipant
	if t != nil {
		r.kicked[t.ident.Subject] = true
		delete(r.admitted, t.ident.Subject)
		mp = r.expelLocked(t, msgKicked, CloseNormal, "kicked")
	}
	r.mu.Unlock()
	if mp != nil {
		mp.Close()
	}
	return t
}

// onTarget handles kick, admit and deny.
func (p *participant) onTarget(typ, id string) {
	if !p.moderating(typ, map[string]any{"target": id}) {
		return
	}
	r := p.room
	if typ == typeKick {
		t := r.kick(id)
		if t == nil {
			p.noSuch(typ)
			return
		}
		p.moderated(typ, map[string]any{"target": t.id, "subject": t.ident.Subject})
		return
	}
	r.mu.Lock()
	var (
		t  *participant
		mp MediaParticipant
	)
	switch typ {
	case typeDeny:
		if t = r.targetLocked(id, stateLobby); t != nil {
			mp = r.expelLocked(t, msgDenied, CloseNormal, "denied")
		}
	case typeAdmit:
		if t = r.targetLocked(id, stateLobby); t != nil {
			r.removeFromLobbyLocked(t)
			delete(r.kicked, t.ident.Subject)
			t.c.send(msgAdmitted)
		}
	}
	r.mu.Unlock()
	if t == nil {
		p.noSuch(typ)
		return
	}
	if mp != nil {
		mp.Close()
	}
	if typ == typeAdmit {
		t.activate()
	}
	p.moderated(typ, map[string]any{"target": t.id, "subject": t.ident.Subject})
}

// expelLocked ends t's part in the meeting at once: msg to it, its socket
// closed with code, participant_left to those who saw it. Its PeerConnection
// is returned, to be closed after the lock is released.
func (r *room) expelLocked(t *participant, msg []byte, code int, reason string) MediaParticipant {
	prev := t.state
	t.state = stateGone
	mp := t.media
	t.media = nil
	t.c.send(msg)
	t.c.close(code, reason)
	left := mustJSON(leftMsg{Type: "participant_left", Participant: t.id})
	switch prev {
	case stateLobby:
		r.removeFromLobbyLocked(t)
		r.broadcastLocked(left, isModerator)
	case stateActive:
		r.broadcastLocked(left, nil)
	}
	return mp
}

func (p *participant) onLock(m *lockMsg) {
	if !p.moderating(typeLock, map[string]any{"locked": *m.Locked}) {
		return
	}
	r := p.room
	r.mu.Lock()
	r.locked = *m.Locked
	r.broadcastLocked(mustJSON(roomStateMsg{Type: "room_state", Locked: r.locked, Recording: r.recording}), nil)
	r.mu.Unlock()
	p.moderated(typeLock, map[string]any{"locked": *m.Locked})
}

// onEnd ends the meeting for everyone: ended, sockets closed (1000), the
// forwarding domain closed. The next person to connect starts a new one.
func (p *participant) onEnd() {
	if !p.moderating(typeEnd, nil) {
		return
	}
	p.room.end()
	p.moderated(typeEnd, map[string]any{})
}

// end ends the meeting: everyone gets ended and their sockets close
// (1000), the forwarding domain closes, and the hub forgets the room.
func (r *room) end() { r.endWith(true, CloseNormal, "ended") }

// endWith ends the meeting, closing everyone's socket with code and text,
// after an ended message when ended is set.
func (r *room) endWith(ended bool, code int, text string) {
	r.mu.Lock()
	r.closed = true
	var media []MediaParticipant
	for _, q := range r.parts {
		if q.media != nil {
			media = append(media, q.media)
			q.media = nil
		}
		q.state = stateGone
		if ended {
			q.c.send(msgEnded)
		}
		q.c.close(code, text)
	}
	r.lobby = nil
	r.mu.Unlock()
	r.hub.forget(r)
	for _, mp := range media {
		mp.Close()
	}
	r.closeMedia()
}

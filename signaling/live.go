package signaling

import (
	"errors"
	"sort"
	"time"

	"github.com/parley-meet/parley/audit"
	"github.com/parley-meet/parley/sfu"
)

// ErrNoParticipant: no such participant in the meeting (Mute, Kick).
var ErrNoParticipant = errors.New("signaling: no such participant in this meeting")

// LiveRoom is a meeting in progress, for the admin console.
type LiveRoom struct {
	ID           string
	Name         string
	Locked       bool
	Recording    bool
	E2EE         bool // the meeting is end-to-end encrypted
	Participants []LiveParticipant
}

// LiveParticipant is one person of a meeting in progress (or its lobby),
// with what the media plane reports of their connection (nil in the
// lobby).
type LiveParticipant struct {
	ID          string
	Name        string
	Role        string
	Subject     string
	Guest       bool
	InLobby     bool
	HandRaised  bool
	ConnectedAt time.Time
	Media       *sfu.ParticipantStats
}

// Live lists the meetings in progress, each with its participants, those
// in the lobby included, sorted by name.
func (h *Hub) Live() []LiveRoom {
	h.mu.Lock()
	rooms := make([]*room, 0, len(h.rooms))
	for _, r := range h.rooms {
		rooms = append(rooms, r)
	}
	h.mu.Unlock()
	out := make([]LiveRoom, 0, len(rooms))
	for _, r := range rooms {
		stats := map[string]*sfu.ParticipantStats{}
		for _, st := range r.media.Stats() {
			st := st
			stats[st.ID] = &st
		}
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			continue
		}
		lr := LiveRoom{ID: r.id, Name: r.info.Name, Locked: r.locked, Recording: r.recording, E2EE: r.e2ee}
		for _, p := range r.parts {
			if p.state != stateActive && p.state != stateLobby {
				continue
			}
			lr.Participants = append(lr.Participants, LiveParticipant{ID: p.id, Name: p.name, Role: p.role,
				Subject: p.ident.Subject, Guest: p.ident.Guest, InLobby: p.state == stateLobby, HandRaised: p.hand,
				ConnectedAt: p.connectedAt, Media: stats[p.id]})
		}
		r.mu.Unlock()
		sort.Slice(lr.Participants, func(i, j int) bool { return lr.Participants[i].Name < lr.Participants[j].Name })
		out = append(out, lr)
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Name < out[j].Name || out[i].Name == out[j].Name && out[i].ID < out[j].ID
	})
	return out
}

// liveRoom is the meeting in progress of roomID, or nil.
func (h *Hub) liveRoom(roomID string) *room {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rooms[roomID]
}

// Mute stops a participant's audio or video ("audio", "video") on behalf
// of actor, who has room.moderate (the caller checked): as the mute
// message does, audited as signal.mute.
func (h *Hub) Mute(roomID, participantID, kind, actor, clientIP string) error {
	if kind != "audio" && kind != "video" {
		return errors.New(`signaling: kind is "audio" or "video"`)
	}
	r := h.liveRoom(roomID)
	if r == nil {
		return ErrNoMeeting
	}
	t := r.mute(participantID, kind, "")
	if t == nil {
		return ErrNoParticipant
	}
	h.record(actor, "signal.mute", roomID, audit.Success, clientIP,
		map[string]any{"target": t.id, "subject": t.ident.Subject, "kind": kind, "via": "api"})
	return nil
}

// Kick removes a participant on behalf of actor (room.moderate, checked
// by the caller), as the kick message does; audited as signal.kick.
func (h *Hub) Kick(roomID, participantID, actor, clientIP string) error {
	r := h.liveRoom(roomID)
	if r == nil {
		return ErrNoMeeting
	}
	t := r.kick(participantID)
	if t == nil {
		return ErrNoParticipant
	}
	h.record(actor, "signal.kick", roomID, audit.Success, clientIP,
		map[string]any{"target": t.id, "subject": t.ident.Subject, "via": "api"})
	return nil
}

// End ends the meeting in progress on behalf of actor (room.moderate,
// checked by the caller), as the end message does; audited as signal.end.
func (h *Hub) End(roomID, actor, clientIP string) error {
	r := h.liveRoom(roomID)
	if r == nil {
		return ErrNoMeeting
	}
	r.end()
	h.record(actor, "signal.end", roomID, audit.Success, clientIP, map[string]any{"via": "api"})
	return nil
}

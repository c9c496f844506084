package signaling

import (
	"errors"

	"github.com/pion/webrtc/v4"

	"github.com/parley-meet/parley/audit"
)

// End-to-end encrypted meetings (issue 10, docs/security.md).
//
// In a meeting of a room with e2ee on, every browser encrypts its media
// frames before they leave (the SFU forwards ciphertext) with a sender key
// it makes itself, and hands that key to each other participant wrapped
// for that participant's ephemeral public key. The hub's part is small and
// never touches key material:
//
//   - the meeting's mode is fixed when it starts (RoomInfo.E2EE of the
//     first socket); its media plane negotiates only the codecs whose clear
//     header the browsers keep (VP8, VP9, Opus);
//   - join must carry e2ee_public_key, which the hub passes on, unread, in
//     the welcome's participants and in participant_joined;
//   - e2ee_key messages are relayed to their recipients in the same
//     meeting, after checking their shape, size, recipients and rate; the
//     wrapped keys are opaque text to the server;
//   - recording is refused (the server has nothing it could decode), and
//     audited as such.

// Bounds of the E2EE fields, in characters of base64url.
const (
	minPublicKeyChars  = 16
	maxPublicKeyChars  = 256
	minWrappedKeyChars = 16
	maxWrappedKeyChars = 512
	// maxKeyRecipients bounds the recipients of one e2ee_key message.
	maxKeyRecipients = 200
	// e2eeKeyRate and e2eeKeyBurst bound e2ee_key messages per socket:
	// a browser sends one for each arrival and departure in its meeting.
	e2eeKeyRate  = 5
	e2eeKeyBurst = 10
)

// e2eeCodecs are the codecs an end-to-end encrypted meeting negotiates.
var e2eeCodecs = []string{webrtc.MimeTypeVP8, webrtc.MimeTypeVP9, webrtc.MimeTypeOpus}

// ErrRecordingE2EE: the meeting is end-to-end encrypted, so the server
// cannot record it (SetRecording, the record message).
var ErrRecordingE2EE = errors.New("this meeting is end-to-end encrypted: the server cannot read its media, so it cannot record it")

// mediaOptions are the media settings of a meeting that starts with info.
func mediaOptions(info RoomInfo) RoomOptions {
	if info.E2EE {
		return RoomOptions{Codecs: e2eeCodecs}
	}
	return RoomOptions{}
}

// e2eeKeyMsg is the client's e2ee_key: wrapped sender keys by recipient
// participant id.
type e2eeKeyMsg struct {
	Type string            `json:"type"`
	Keys map[string]string `json:"keys"`
}

func (m *e2eeKeyMsg) validate() *protoError {
	if len(m.Keys) == 0 {
		return errBad("e2ee_key needs keys")
	}
	if len(m.Keys) > maxKeyRecipients {
		return &protoError{codeInvalid, "e2ee_key has at most 200 recipients"}
	}
	for id, key := range m.Keys {
		if !validParticipantID(id) {
			return errBad("e2ee_key maps participant ids to keys")
		}
		if !validOpaque(key, minWrappedKeyChars, maxWrappedKeyChars) {
			return &protoError{codeInvalid, "a wrapped key is 16 to 512 characters of base64url"}
		}
	}
	return nil
}

// e2eeKeyOut is a wrapped key relayed to its recipient.
type e2eeKeyOut struct {
	Type string `json:"type"`
	From string `json:"from"`
	Key  string `json:"key"`
}

// validOpaque reports whether s is min to max characters of base64url
// (without padding): the only shape the server knows of keys it relays.
func validOpaque(s string, min, max int) bool {
	if len(s) < min || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// onE2EEKey relays wrapped keys to the recipients that are in the meeting
// with the sender. The keys are opaque; recipients who are not (or no
// longer) in this meeting get nothing, and the sender is told.
func (p *participant) onE2EEKey(m *e2eeKeyMsg) {
	if _, ok := p.active(typeE2EEKey); !ok {
		return
	}
	if !p.e2eeKeys.Allow() {
		p.c.send(errorJSON(&protoError{codeRateLimited, "too many e2ee_key messages: slow down"}, typeE2EEKey))
		return
	}
	r := p.room
	r.mu.Lock()
	if !r.e2ee {
		r.mu.Unlock()
		p.c.send(errorJSON(&protoError{codeBadState, "this meeting is not end-to-end encrypted"}, typeE2EEKey))
		return
	}
	missing := 0
	for id, key := range m.Keys {
		t := r.targetLocked(id, stateActive)
		if t == nil || t == p {
			missing++
			continue
		}
		t.c.send(mustJSON(e2eeKeyOut{Type: typeE2EEKey, From: p.id, Key: key}))
	}
	r.mu.Unlock()
	if missing > 0 {
		p.c.send(errorJSON(&protoError{codeNoSuch, "some recipients are not in this meeting; nothing was sent to them"}, typeE2EEKey))
	}
}

// MeetingInProgress reports whether people are meeting in roomID now (in
// the meeting or its lobby).
func (h *Hub) MeetingInProgress(roomID string) bool {
	r := h.liveRoom(roomID)
	if r == nil {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return !r.closed
}

// retireLocked ends, on a goroutine the hub owns, a meeting whose room's
// e2ee setting is no longer the meeting's (the setting changes only
// between meetings; this is the race of a change with a meeting's start),
// so that the next meeting starts in the room's mode. h.mu is held.
func (h *Hub) retireLocked(r *room) {
	if h.rooms[r.id] == r {
		delete(h.rooms, r.id)
	}
	h.serving.Add(1)
	go func() {
		defer h.serving.Done()
		h.endForMode(r)
	}()
}

// endForMode ends a meeting whose mode is not its room's e2ee setting.
func (h *Hub) endForMode(r *room) {
	r.end()
	h.record("system", "signal.end", r.id, audit.Success, "", map[string]any{"reason": "the room's e2ee setting changed"})
}

package signaling

import (
	"context"
	"errors"
	"time"

	"github.com/parley-meet/parley/audit"
)

// Recording errors of SetRecording (and of the record message).
var (
	ErrNoMeeting            = errors.New("signaling: no meeting in progress in this room")
	ErrRecordingUnavailable = errors.New("signaling: recording is not available on this server")
	// ErrRecordingState: start while recording, or stop while not.
	ErrRecordingState = errors.New("the meeting is already in that recording state")
)

// recorderTimeout bounds one Start or Stop of the recorder.
const recorderTimeout = 15 * time.Second

// SetRecording starts (on) or stops the recording of the meeting in
// progress in roomID on behalf of actor. The caller has checked
// room.record (the REST API; the record message checks it itself). Every
// participant gets room_state; the change is audited.
func (h *Hub) SetRecording(roomID string, on bool, actor, clientIP string) error {
	h.mu.Lock()
	r := h.rooms[roomID]
	h.mu.Unlock()
	if r == nil {
		return ErrNoMeeting
	}
	return r.setRecording(on, actor, clientIP)
}

// Recording reports whether the meeting in progress in roomID is being
// recorded (false when there is no meeting).
func (h *Hub) Recording(roomID string) bool {
	h.mu.Lock()
	r := h.rooms[roomID]
	h.mu.Unlock()
	if r == nil {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.recording && !r.closed
}

func (r *room) setRecording(on bool, actor, clientIP string) error {
	h := r.hub
	action := "recording.stop"
	if on {
		action = "recording.start"
	}
	if on && r.e2ee {
		// Nothing the server receives of this meeting could be decoded.
		h.record(actor, action, r.id, audit.Denied, clientIP, map[string]any{"reason": "e2ee"})
		return ErrRecordingE2EE
	}
	rec := h.cfg.Recorder
	if rec == nil {
		return ErrRecordingUnavailable
	}
	r.recMu.Lock()
	defer r.recMu.Unlock()
	r.mu.Lock()
	closed, cur := r.closed, r.recording
	r.mu.Unlock()
	if closed {
		return ErrNoMeeting
	}
	if cur == on {
		if on {
			return errors.Join(ErrRecordingState, errors.New("the meeting is already being recorded"))
		}
		return errors.Join(ErrRecordingState, errors.New("the meeting is not being recorded"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), recorderTimeout)
	defer cancel()
	var err error
	if on {
		err = rec.StartRoom(ctx, r.media, r.id, actor, r.nameOf)
	} else {
		err = rec.StopRoom(ctx, r.id)
	}
	if err != nil {
		h.log.Error("signaling: the recorder failed", "room", r.id, "action", action, "err", err)
		h.record(actor, action, r.id, audit.Failure, clientIP, map[string]any{"error": "recorder"})
		return err
	}
	r.mu.Lock()
	r.recording = on
	if !r.closed {
		r.broadcastLocked(mustJSON(roomStateMsg{Type: "room_state", Locked: r.locked, Recording: on}), nil)
	}
	r.mu.Unlock()
	h.record(actor, action, r.id, audit.Success, clientIP, nil)
	return nil
}

// nameOf is the display name of a participant of this meeting ("" when
// unknown); the recorder's catalog uses it.
func (r *room) nameOf(participantID string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p := r.parts[participantID]; p != nil {
		return p.name
	}
	return ""
}

// closeMedia ends the meeting's media: the recording first (its files are
// finished and catalogued), then the forwarding domain. r.closed is set.
func (r *room) closeMedia() {
	h := r.hub
	r.recMu.Lock()
	r.mu.Lock()
	recording := r.recording
	r.recording = false
	r.mu.Unlock()
	if recording && h.cfg.Recorder != nil {
		ctx, cancel := context.WithTimeout(context.Background(), recorderTimeout)
		err := h.cfg.Recorder.StopRoom(ctx, r.id)
		cancel()
		outcome := audit.Success
		if err != nil {
			h.log.Error("signaling: stopping the recording of an ending meeting failed", "room", r.id, "err", err)
			outcome = audit.Failure
		}
		h.record("system", "recording.stop", r.id, outcome, "", map[string]any{"reason": "meeting ended"})
	}
	r.recMu.Unlock()
	r.media.Close()
}

package sfu

import (
	"log/slog"
	"sync"

	"github.com/pion/webrtc/v4"
)

// Events are called by the sfu, never while holding a lock the caller could
// need; they must not block for long. They are the events of the
// participant passed to Join: OnTrackPublished and OnTrackUnpublished are
// about its own tracks (signaling tells the others).
//
// Each participant's events are delivered one at a time, in the order they
// happened, from one goroutine that the participant owns; a track's
// OnTrackPublished always precedes its OnTrackUnpublished. OnOffer is never
// called before HandleOffer or HandleAnswer has returned for the change it
// follows, but it can be called right after: send each answer HandleOffer
// returns before any later offer (for example by sending both through one
// ordered queue, the answer enqueued before HandleOffer's caller releases
// a lock that OnOffer also takes). That goroutine delivers what Close caused
// (OnTrackUnpublished for its tracks, then OnConnectionState("closed")) after
// Close returns, and then ends; Close does not wait for it, so
// Participant.Close may be called from a callback (SFU.Close must not).
type Events interface {
	// OnOffer is a server-driven renegotiation: send it to the client as
	// {"type":"offer"}; the client answers through HandleAnswer.
	OnOffer(sdp string)
	// OnCandidate is trickle ICE toward the client. The SFU puts its
	// candidates into every SDP it produces, so this is rarely called (only
	// for candidates gathered after the description was returned).
	OnCandidate(candidate webrtc.ICECandidateInit)
	// OnTrackPublished: this participant's new track started forwarding.
	OnTrackPublished(t TrackInfo)
	// OnTrackUnpublished: ... stopped (left, revoked, muted by a moderator, ended).
	OnTrackUnpublished(t TrackInfo)
	// OnConnectionState is "connected", "disconnected", "failed" or "closed".
	OnConnectionState(state string)
}

// eventQueue delivers one participant's events in order from its own
// goroutine, so that the SFU never calls out while holding a lock and a slow
// callback delays nobody else.
type eventQueue struct {
	log  *slog.Logger
	mu   sync.Mutex
	q    []func()
	shut bool
	wake chan struct{}
}

func newEventQueue(log *slog.Logger) *eventQueue {
	return &eventQueue{log: log, wake: make(chan struct{}, 1)}
}

// push queues f; after close it is dropped.
func (e *eventQueue) push(f func()) {
	e.mu.Lock()
	if e.shut {
		e.mu.Unlock()
		return
	}
	e.q = append(e.q, f)
	e.mu.Unlock()
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// close lets run deliver what is queued and return.
func (e *eventQueue) close() {
	e.mu.Lock()
	e.shut = true
	e.mu.Unlock()
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// run delivers the events until the queue is closed and drained.
func (e *eventQueue) run() {
	for {
		e.mu.Lock()
		if len(e.q) == 0 {
			shut := e.shut
			e.q = nil
			e.mu.Unlock()
			if shut {
				return
			}
			<-e.wake
			continue
		}
		f := e.q[0]
		e.q[0] = nil
		e.q = e.q[1:]
		e.mu.Unlock()
		e.call(f)
	}
}

func (e *eventQueue) call(f func()) {
	defer func() {
		if v := recover(); v != nil {
			e.log.Error("sfu event callback panicked", "panic", v)
		}
	}()
	f()
}

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
// happened, from a goroutine that the participant owns (one runs while
// events are waiting, never two at once); a track's
// OnTrackPublished always precedes its OnTrackUnpublished. OnOffer is never
// called before HandleOffer or HandleAnswer has returned for the change it
// follows, but it can be called right after: send each answer HandleOffer
// returns before any later offer (for example by sending both through one
// ordered queue, the answer enqueued before HandleOffer's caller releases
// a lock that OnOffer also takes). What Close caused (OnTrackUnpublished for
// its tracks, then OnConnectionState("closed")) is delivered after Close
// returns, and then the participant's goroutine ends; Close does not wait
// for it, so Participant.Close may be called from a callback (SFU.Close
// must not).
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

// eventQueue delivers one participant's events in order, so that the SFU
// never calls out while holding a lock and a slow callback delays nobody
// else. A goroutine runs only while events are waiting (an idle
// participant costs none); at most one at a time, so they stay in order.
// Nothing is delivered before start (the participant joined).
type eventQueue struct {
	log *slog.Logger
	wg  *sync.WaitGroup // the SFU's dispatchers: SFU.Close waits for the running ones

	mu      sync.Mutex
	q       []func()
	started bool // start was called
	running bool // a drain goroutine is delivering
	shut    bool // close was called: later events are dropped
}

func newEventQueue(log *slog.Logger, wg *sync.WaitGroup) *eventQueue {
	return &eventQueue{log: log, wg: wg}
}

// push queues f; after close it is dropped.
func (e *eventQueue) push(f func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.shut {
		return
	}
	e.q = append(e.q, f)
	e.spawnLocked()
}

// start begins delivering, with what was queued before.
func (e *eventQueue) start() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.started = true
	e.spawnLocked()
}

// close drops the events pushed from now on; those queued are still
// delivered. After close no goroutine is added to wg (SFU.Close closes
// every queue before it waits).
func (e *eventQueue) close() {
	e.mu.Lock()
	e.shut = true
	e.mu.Unlock()
}

func (e *eventQueue) spawnLocked() {
	if !e.started || e.running || len(e.q) == 0 {
		return
	}
	e.running = true
	e.wg.Add(1)
	go e.drain()
}

// drain delivers the queued events and ends when there are none.
func (e *eventQueue) drain() {
	defer e.wg.Done()
	for {
		e.mu.Lock()
		if len(e.q) == 0 {
			e.running = false
			e.q = nil
			e.mu.Unlock()
			return
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

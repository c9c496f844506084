package rbac

import "sync"

// Event announces a change of rights. Kind is EventBinding (Subject's role
// in Room changed; Room is Global for a global role) or EventPolicy (what
// roles may do changed, or the whole policy was reloaded: Subject is empty
// and Room is Global, and every decision must be re-checked).
type Event struct {
	Subject string
	Room    string
	Kind    string
}

// resync is the event that replaces a subscriber's queued events when its
// buffer is full.
var resync = Event{Kind: EventPolicy, Room: Global}

// subscriberBuffer is the number of events a subscriber may leave unread
// before they are coalesced into one resync event.
const subscriberBuffer = 64

// bus is the in-process change bus. Publishing never blocks and starts no
// goroutine: each subscriber has a buffered channel, and when it is full the
// events waiting in it are dropped and replaced by one resync event (a
// policy event for Global), which tells the subscriber to re-check
// everything it holds. A slow subscriber thus loses detail, never the fact
// that something changed, and never slows a mutation.
type bus struct {
	mu   sync.Mutex
	subs map[*subscriber]struct{}
}

type subscriber struct {
	ch chan Event
}

// subscribe registers a subscriber. cancel closes its channel and removes
// it; calling cancel again does nothing.
func (b *bus) subscribe() (<-chan Event, func()) {
	s := &subscriber{ch: make(chan Event, subscriberBuffer)}
	b.mu.Lock()
	if b.subs == nil {
		b.subs = make(map[*subscriber]struct{})
	}
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	var once sync.Once
	return s.ch, func() {
		once.Do(func() {
			b.mu.Lock()
			delete(b.subs, s)
			close(s.ch)
			b.mu.Unlock()
		})
	}
}

// publish delivers events to every subscriber without blocking.
func (b *bus) publish(events ...Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		for _, e := range events {
			if !s.offer(e) {
				break // the buffer now holds a resync, which covers the rest
			}
		}
	}
}

// offer queues e, or, if the buffer is full, replaces what is queued with
// one resync event and reports false. It runs under the bus's lock, so
// nothing else sends on s.ch meanwhile; the subscriber may be receiving
// concurrently, which only makes room.
func (s *subscriber) offer(e Event) bool {
	select {
	case s.ch <- e:
		return true
	default:
	}
	for drained := false; !drained; {
		select {
		case <-s.ch:
		default:
			drained = true
		}
	}
	s.ch <- resync // the buffer is empty and only we send: this cannot block
	return false
}

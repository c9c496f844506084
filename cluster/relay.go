package cluster

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// The relay carries signaling between the node that holds a client's
// WebSocket (the edge) and the node that runs the client's meeting (the
// owner), and the calls one node makes on another (Call). Each node has
// one inbox, a Redis stream read by one goroutine of that node; entries
// are written by one goroutine per node, in order, so the entries of one
// session arrive in the order they were sent. Each session numbers its
// entries: a duplicate (a retried write) is dropped, a gap (an inbox
// trimmed under a reader that fell far behind) ends the session.
//
// Buffers are bounded everywhere: the outgoing queue (outQueue entries
// for the whole node; a session whose entry does not fit is closed, like
// a socket that does not keep up), each session's incoming queue
// (sessionQueue), the messages an edge keeps until the owner accepts the
// session (pendingMax), and each inbox (inboxMax entries, trimmed by
// Redis).

// Limits of the relay.
const (
	outQueue     = 8192
	sessionQueue = 512
	pendingMax   = 64
	inboxMax     = 100000
	maxHops      = 3
	readBatch    = 512
	writeBatch   = 256
	maxCalls     = 64 // requests served at once
	inboxTTL     = time.Minute
	// acceptTimeout bounds how long an edge waits for the owner to accept
	// a session (it answers in milliseconds when it lives): a client whose
	// room's owner has just died learns it now, not when the owner's
	// registration expires.
	acceptTimeout = 3 * time.Second
)

// Entry kinds.
const (
	kOpen    = "o" // edge → owner: a new session; d is the opening payload
	kAccept  = "a" // owner → edge: the session is served
	kMoved   = "v" // owner → edge: not served here; d names the owner
	kText    = "m" // a text message
	kBinary  = "b" // a binary message
	kClose   = "c" // the session ended; d is "<code> <text>"
	kRequest = "r" // a call; s is its id, d "<method>\n<body>"
	kReply   = "R" // a call's reply; d "0<body>" or "1<error>"
)

// Message types, as in RFC 6455 (and gorilla/fasthttp websocket).
const (
	TextMessage   = 1
	BinaryMessage = 2
)

// Close codes the relay itself uses.
const (
	CodeServiceRestart = 1012 // the other node is gone: join again
	CodeInternal       = 1011 // the relay lost messages
	CodePolicy         = 1008 // a queue overflowed
	CodeTryAgain       = 1013
)

// Closed is the error Recv returns when the session has ended: the code
// and text its WebSocket is to be closed with.
type Closed struct {
	Code int
	Text string
}

func (c *Closed) Error() string { return fmt.Sprintf("relay session closed (%d %s)", c.Code, c.Text) }

// CloseCode returns the code and text (signaling asks for them).
func (c *Closed) CloseCode() (int, string) { return c.Code, c.Text }

type outEntry struct {
	to   string
	vals []any
}

type relay struct {
	n   *Node
	out chan outEntry

	mu       sync.Mutex
	sessions map[string]*Session
	calls    map[string]chan callReply
	onOpen   func(*Session, []byte)
	methods  map[string]func(context.Context, []byte) ([]byte, error)
	stopped  bool

	lastID   string // the last inbox entry read
	handlers sync.WaitGroup
	callSem  chan struct{}
	stopCh   chan struct{}
	readDone chan struct{}
	sendDone chan struct{}
}

func newRelay(n *Node) *relay {
	return &relay{n: n, out: make(chan outEntry, outQueue), sessions: map[string]*Session{},
		calls: map[string]chan callReply{}, methods: map[string]func(context.Context, []byte) ([]byte, error){},
		lastID: "0-0", callSem: make(chan struct{}, maxCalls), stopCh: make(chan struct{}),
		readDone: make(chan struct{}), sendDone: make(chan struct{})}
}

func (r *relay) inbox(id string) string { return r.n.key("inbox:" + id) }

// reset empties this node's inbox: what a former process of the same id
// left there belongs to sessions that are gone.
func (r *relay) reset(ctx context.Context) error {
	return r.n.rdb.Del(ctx, r.inbox(r.n.id)).Err()
}

func (r *relay) start() {
	go r.readLoop()
	go r.sendLoop()
}

// stop closes every session (their close entries go out first), stops the
// reader and the writer, and waits for the session handlers.
func (r *relay) stop() {
	r.mu.Lock()
	r.stopped = true
	sessions := make([]*Session, 0, len(r.sessions))
	for _, s := range r.sessions {
		sessions = append(sessions, s)
	}
	r.mu.Unlock()
	for _, s := range sessions {
		s.Close(1001, "server shutting down")
	}
	waited := make(chan struct{})
	go func() { r.handlers.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(5 * time.Second):
		r.n.log.Error("cluster: relay handlers still running at shutdown")
	}
	close(r.stopCh)
	<-r.readDone
	<-r.sendDone
}

// send queues an entry for node to; false when the queue is full or the
// relay stopped.
func (r *relay) send(to string, vals ...any) bool {
	select {
	case <-r.stopCh:
		return false
	default:
	}
	select {
	case r.out <- outEntry{to: to, vals: vals}:
		return true
	default:
		return false
	}
}

// sendLoop writes queued entries in order, pipelined, retrying a failed
// batch until it goes out (Redis back) or the relay stops. At stop, what
// is queued is flushed for up to a second.
func (r *relay) sendLoop() {
	defer close(r.sendDone)
	batch := make([]outEntry, 0, writeBatch)
	var flushBy time.Time
	for {
		if len(batch) == 0 {
			select {
			case e := <-r.out:
				batch = append(batch, e)
			case <-r.stopCh:
				if flushBy.IsZero() {
					flushBy = time.Now().Add(time.Second)
				}
				select {
				case e := <-r.out:
					batch = append(batch, e)
				default:
					return
				}
			}
		}
	fill:
		for len(batch) < writeBatch {
			select {
			case e := <-r.out:
				batch = append(batch, e)
			default:
				break fill
			}
		}
		backoff := 50 * time.Millisecond
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, err := r.n.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				seen := map[string]bool{}
				for _, e := range batch {
					p.XAdd(ctx, &redis.XAddArgs{Stream: r.inbox(e.to), MaxLen: inboxMax, Approx: true, Values: e.vals})
					if !seen[e.to] {
						// An inbox lives while its node refreshes it; one
						// that a write to a gone node re-created expires.
						seen[e.to] = true
						p.PExpire(ctx, r.inbox(e.to), inboxTTL)
					}
				}
				return nil
			})
			cancel()
			if err == nil {
				break
			}
			select {
			case <-r.stopCh:
				if flushBy.IsZero() {
					flushBy = time.Now().Add(time.Second)
				}
				if time.Now().After(flushBy) {
					return
				}
			default:
			}
			r.n.log.Warn("cluster: relay write failed; retrying", "entries", len(batch), "err", redactErr(err))
			time.Sleep(backoff)
			backoff = min(2*backoff, time.Second)
		}
		clear(batch)
		batch = batch[:0]
	}
}

// readLoop reads the inbox and dispatches its entries, until stop.
func (r *relay) readLoop() {
	defer close(r.readDone)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-r.stopCh; cancel() }()
	defer cancel()
	backoff := 50 * time.Millisecond
	for {
		res, err := r.n.rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{r.inbox(r.n.id), r.lastID}, Count: readBatch, Block: time.Second}).Result()
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			select {
			case <-r.stopCh:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		for _, st := range res {
			for _, m := range st.Messages {
				r.lastID = m.ID
				r.dispatch(m.Values)
			}
		}
		// What has been read is dropped: an inbox holds only what its node
		// has yet to read (the last entry read stays, as a marker).
		r.n.rdb.XTrimMinID(ctx, r.inbox(r.n.id), r.lastID)
	}
}

func field(v map[string]any, k string) string {
	s, _ := v[k].(string)
	return s
}

// dispatch handles one inbox entry.
func (r *relay) dispatch(v map[string]any) {
	sid, kind, data, from := field(v, "s"), field(v, "k"), field(v, "d"), field(v, "f")
	seq, _ := strconv.ParseUint(field(v, "q"), 10, 64)
	switch kind {
	case kRequest:
		r.serveCall(from, sid, data)
		return
	case kReply:
		r.mu.Lock()
		ch := r.calls[sid]
		delete(r.calls, sid)
		r.mu.Unlock()
		if ch != nil {
			ch <- callReply{ok: strings.HasPrefix(data, "0"), body: data[min(1, len(data)):]}
		}
		return
	}
	r.mu.Lock()
	s := r.sessions[sid]
	if s == nil && kind == kOpen && !r.stopped && r.onOpen != nil && seq == 1 {
		s = newSession(r, sid, from, false)
		s.recvSeq = 1
		r.sessions[sid] = s
		r.handlers.Add(1)
		onOpen := r.onOpen
		r.mu.Unlock()
		go func() {
			defer r.handlers.Done()
			onOpen(s, []byte(data))
		}()
		return
	}
	r.mu.Unlock()
	if s == nil {
		if kind != kClose && kind != kOpen && from != "" {
			// A session this node does not know (it restarted, or the
			// session ended here): tell the other side it is over.
			r.send(from, "s", sid, "q", "0", "k", kClose, "d", strconv.Itoa(CodeServiceRestart)+" the meeting's server restarted; join again", "f", r.n.id)
		}
		return
	}
	s.deliver(seq, kind, data, from)
}

// OnOpen sets the function that serves sessions relayed to this node. It
// runs on a goroutine of its own per session, owns the session (it must
// Accept or decline it with Moved or Close) and must return when the
// session ends.
func (n *Node) OnOpen(f func(s *Session, payload []byte)) {
	n.relay.mu.Lock()
	n.relay.onOpen = f
	n.relay.mu.Unlock()
}

// checkPeers ends the sessions whose other node's registration has
// expired. A node missing from live is asked about once more directly (it
// may have joined since live was read).
func (r *relay) checkPeers(live map[string]bool) {
	r.mu.Lock()
	var suspects []*Session
	for _, s := range r.sessions {
		if p := s.peerID(); !live[p] && p != r.n.id {
			suspects = append(suspects, s)
		}
	}
	r.mu.Unlock()
	for _, s := range suspects {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		n, err := r.n.rdb.Exists(ctx, r.n.nodeKey(s.peerID())).Result()
		cancel()
		if err == nil && n == 0 {
			if s.edge {
				s.fail(CodeServiceRestart, "the meeting's server is gone; join again")
			} else {
				s.fail(1001, "") // the client's node is gone: the participant left
			}
		}
	}
}

func (r *relay) forget(s *Session) {
	r.mu.Lock()
	if r.sessions[s.id] == s {
		delete(r.sessions, s.id)
	}
	r.mu.Unlock()
}

// Sessions counts the relayed sessions of this node: those it holds the
// socket of (edge) and those whose meeting it runs (owner).
func (n *Node) Sessions() (edge, owner int) {
	n.relay.mu.Lock()
	defer n.relay.mu.Unlock()
	for _, s := range n.relay.sessions {
		if s.edge {
			edge++
		} else {
			owner++
		}
	}
	return
}

// Session is one client's signaling relayed between its edge node and
// its room's owner node. Recv, Send and Close are safe for concurrent
// use; Recv has one caller at a time.
type Session struct {
	r    *relay
	id   string
	edge bool

	mu      sync.Mutex
	peer    string
	sendSeq uint64
	recvSeq uint64
	closed  bool
	reason  *Closed
	// edge: what the owner has not yet accepted, and the opening payload,
	// to be sent again if the owner sends the session on (Moved).
	accepted bool
	pending  []outMsg
	payload  string
	hops     int
	waiting  *time.Timer // until the owner accepts

	in   chan inMsg
	done chan struct{}
}

type inMsg struct {
	mt   int
	data string
}

type outMsg struct {
	kind, data string
}

func newSession(r *relay, id, peer string, edge bool) *Session {
	return &Session{r: r, id: id, peer: peer, edge: edge, in: make(chan inMsg, sessionQueue), done: make(chan struct{})}
}

// Open starts a session to owner carrying payload (who the client is and
// which room, as the caller encodes it). Messages may be sent at once.
func (n *Node) Open(owner string, payload []byte) *Session {
	r := n.relay
	s := newSession(r, randomHex(16), owner, true)
	s.payload = string(payload)
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		s.fail(1001, "server shutting down")
		return s
	}
	r.sessions[s.id] = s
	r.mu.Unlock()
	s.mu.Lock()
	ok := s.sendLocked(kOpen, s.payload)
	s.waitAcceptLocked()
	s.mu.Unlock()
	if !ok {
		s.fail(CodeTryAgain, "the server is too busy; try again")
	}
	return s
}

// waitAcceptLocked (re)starts the wait for the owner's accept; s.mu is
// held.
func (s *Session) waitAcceptLocked() {
	if s.waiting != nil {
		s.waiting.Stop()
	}
	s.waiting = time.AfterFunc(acceptTimeout, func() {
		s.mu.Lock()
		late := !s.accepted && !s.closed
		s.mu.Unlock()
		if late {
			s.fail(CodeTryAgain, "the meeting's server does not answer; join again")
		}
	})
}

func (s *Session) peerID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peer
}

// Peer is the node at the other end.
func (s *Session) Peer() string { return s.peerID() }

// sendLocked numbers and queues an entry to the peer; s.mu is held.
func (s *Session) sendLocked(kind, data string) bool {
	s.sendSeq++
	return s.r.send(s.peer, "s", s.id, "q", strconv.FormatUint(s.sendSeq, 10), "k", kind, "d", data, "f", s.r.n.id)
}

// Send sends a message to the other side, without blocking. It reports
// false when the session has ended or the relay cannot keep up (the
// session is then closed).
func (s *Session) Send(mt int, data []byte) bool {
	kind := kText
	if mt == BinaryMessage {
		kind = kBinary
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false
	}
	if s.edge && !s.accepted {
		if len(s.pending) >= pendingMax {
			s.mu.Unlock()
			s.fail(CodePolicy, "too many messages before the meeting answered")
			return false
		}
		s.pending = append(s.pending, outMsg{kind, string(data)})
	}
	ok := s.sendLocked(kind, string(data))
	s.mu.Unlock()
	if !ok {
		s.fail(CodeTryAgain, "the server is too busy; join again")
	}
	return ok
}

// Recv returns the next message from the other side, in order; a *Closed
// error once the session has ended.
func (s *Session) Recv() (mt int, data []byte, err error) {
	select {
	case m := <-s.in:
		return m.mt, []byte(m.data), nil
	case <-s.done:
		select { // what arrived before the end is still delivered
		case m := <-s.in:
			return m.mt, []byte(m.data), nil
		default:
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		return 0, nil, s.reason
	}
}

// Accept tells the edge the session is served here (owner side).
func (s *Session) Accept() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.sendLocked(kAccept, "")
	}
}

// Moved declines the session: owner runs the room (owner side).
func (s *Session) Moved(owner string) {
	s.mu.Lock()
	if !s.closed {
		s.sendLocked(kMoved, owner)
	}
	s.mu.Unlock()
	s.end(&Closed{Code: CodeServiceRestart, Text: "moved"})
}

// Close ends the session and tells the other side: on the owner, the
// client's socket is to be closed with code and text; on the edge, the
// client has left. Calling it again does nothing.
func (s *Session) Close(code int, text string) {
	s.mu.Lock()
	if !s.closed {
		s.sendLocked(kClose, strconv.Itoa(code)+" "+text)
	}
	s.mu.Unlock()
	s.end(&Closed{Code: code, Text: text})
}

// fail ends the session because the relay cannot carry it, telling the
// other side when it can.
func (s *Session) fail(code int, text string) {
	s.Close(code, text)
}

// end marks the session ended locally (Recv returns reason from now on).
func (s *Session) end(reason *Closed) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.reason = reason
	s.pending = nil
	if s.waiting != nil {
		s.waiting.Stop()
	}
	s.mu.Unlock()
	s.r.forget(s) // before Recv returns: whoever sees the end sees it forgotten
	close(s.done)
}

// deliver takes one entry of this session from the inbox.
func (s *Session) deliver(seq uint64, kind, data, from string) {
	s.mu.Lock()
	if s.closed || from != s.peer {
		s.mu.Unlock()
		return
	}
	if seq <= s.recvSeq {
		s.mu.Unlock()
		return // a duplicate of a retried write
	}
	if seq != s.recvSeq+1 {
		s.mu.Unlock()
		s.fail(CodeInternal, "the signaling relay lost messages; join again")
		return
	}
	s.recvSeq = seq
	switch kind {
	case kAccept:
		s.accepted = true
		s.pending = nil
		if s.waiting != nil {
			s.waiting.Stop()
		}
		s.mu.Unlock()
	case kMoved:
		s.moveLocked(data)
	case kClose:
		s.mu.Unlock()
		code, text := parseClose(data)
		s.end(&Closed{Code: code, Text: text})
	case kText, kBinary:
		mt := TextMessage
		if kind == kBinary {
			mt = BinaryMessage
		}
		s.mu.Unlock()
		select {
		case s.in <- inMsg{mt, data}:
		default:
			s.fail(CodePolicy, "too slow")
		}
	default:
		s.mu.Unlock()
	}
}

// moveLocked opens the session again on the node the former owner named,
// with the messages sent so far; s.mu is held and released.
func (s *Session) moveLocked(owner string) {
	s.hops++
	if !s.edge || s.accepted || owner == "" || owner == s.r.n.id || s.hops > maxHops {
		s.mu.Unlock()
		s.fail(CodeServiceRestart, "the meeting moved; join again")
		return
	}
	s.peer, s.sendSeq, s.recvSeq = owner, 0, 0
	s.waitAcceptLocked()
	ok := s.sendLocked(kOpen, s.payload)
	for _, m := range s.pending {
		ok = ok && s.sendLocked(m.kind, m.data)
	}
	s.mu.Unlock()
	if !ok {
		s.fail(CodeTryAgain, "the server is too busy; join again")
	}
}

func parseClose(d string) (int, string) {
	c, text, _ := strings.Cut(d, " ")
	code, err := strconv.Atoi(c)
	if err != nil || code < 1000 || code > 4999 {
		code = CodeInternal
	}
	return code, text
}

type callReply struct {
	ok   bool
	body string
}

// RemoteError is an error a called node returned.
type RemoteError struct{ Msg string }

func (e *RemoteError) Error() string { return e.Msg }

// Handle registers method for Call. f runs on a goroutine of its own,
// at most maxCalls at once per node.
func (n *Node) Handle(method string, f func(ctx context.Context, body []byte) ([]byte, error)) {
	n.relay.mu.Lock()
	n.relay.methods[method] = f
	n.relay.mu.Unlock()
}

// Call runs method on node with body and returns its reply. It fails with
// ErrUnavailable when the request cannot be sent, with a *RemoteError when
// the method failed there, and with ctx's error when no reply came in
// time.
func (n *Node) Call(ctx context.Context, node, method string, body []byte) ([]byte, error) {
	r := n.relay
	id := randomHex(12)
	ch := make(chan callReply, 1)
	r.mu.Lock()
	r.calls[id] = ch
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.calls, id)
		r.mu.Unlock()
	}()
	if !r.send(node, "s", id, "k", kRequest, "d", method+"\n"+string(body), "f", n.id) {
		return nil, ErrUnavailable
	}
	select {
	case rep := <-ch:
		if !rep.ok {
			return nil, &RemoteError{Msg: rep.body}
		}
		return []byte(rep.body), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// serveCall runs a request from node from and sends the reply.
func (r *relay) serveCall(from, id, data string) {
	method, body, _ := strings.Cut(data, "\n")
	r.mu.Lock()
	f := r.methods[method]
	stopped := r.stopped
	if f != nil && !stopped {
		r.handlers.Add(1)
	}
	r.mu.Unlock()
	if f == nil || stopped {
		r.send(from, "s", id, "k", kReply, "d", "1no such method on this node", "f", r.n.id)
		return
	}
	select {
	case r.callSem <- struct{}{}:
	default:
		r.handlers.Done()
		r.send(from, "s", id, "k", kReply, "d", "1the node is busy", "f", r.n.id)
		return
	}
	go func() {
		defer r.handlers.Done()
		defer func() { <-r.callSem }()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := f(ctx, []byte(body))
		if err != nil {
			r.send(from, "s", id, "k", kReply, "d", "1"+err.Error(), "f", r.n.id)
			return
		}
		r.send(from, "s", id, "k", kReply, "d", "0"+string(out), "f", r.n.id)
	}()
}

package signaling

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fasthttp/websocket"
)

// Close codes the server uses (RFC 6455 §7.4.1).
const (
	CloseNormal    = websocket.CloseNormalClosure     // 1000: leave, kicked, denied, ended
	CloseGoingAway = websocket.CloseGoingAway         // 1001: the server is shutting down
	ClosePolicy    = websocket.ClosePolicyViolation   // 1008: session ended, abuse, too slow, no pong
	CloseTooBig    = websocket.CloseMessageTooBig     // 1009: a message over MaxMessageBytes
	CloseInternal  = websocket.CloseInternalServerErr // 1011: a bug on the server
	// 1012: the meeting moved to another node, or the node running it is
	// gone (cluster): join again.
	CloseServiceRestart = websocket.CloseServiceRestart
)

// conn is the transport of one socket: a bounded queue of outgoing
// messages, pings, and an idempotent close. The reader runs on the
// goroutine that called Hub.Serve.
//
// There is no writer goroutine while there is nothing to write: queueing a
// message, a ping falling due or the close starts one (at most one at a
// time), which writes until nothing is left and ends. A meeting's sockets
// are idle most of the time, and an idle socket then holds its reader and
// nothing else: no writer goroutine and its stack, no queue, and no write
// buffer (the upgrader takes one from a pool for each message).
type conn struct {
	ws *websocket.Conn
	// wire replaces ws for a participant whose socket another node holds
	// (relay.go): messages and the close go over it, and the other node
	// pings the client.
	wire         Wire
	maxQueue     int
	writeTimeout time.Duration
	pingInterval time.Duration

	mu        sync.Mutex
	queue     [][]byte // waiting to be written, oldest first; nil when empty
	started   bool     // Serve runs the socket: writers may start
	writing   bool     // a writer goroutine runs
	pingDue   bool
	closeCode int // set before closing
	closeText string
	ping      *time.Timer // fires pingDue every pingInterval; set by start

	closing atomic.Bool // close was called; set under mu
	// writers counts the writer goroutines. None starts once the socket
	// is closing but the one that closes it, so waiting for them after
	// close waits for the socket to be closed.
	writers sync.WaitGroup
	// readerDone is closed by the reader when it has stopped reading;
	// peerClosed is set before that when it stopped at the peer's close
	// frame (the closing handshake is then complete).
	readerDone chan struct{}
	peerClosed bool
}

func newConn(ws *websocket.Conn, queue int, writeTimeout, pingInterval time.Duration) *conn {
	return &conn{ws: ws, maxQueue: queue, writeTimeout: writeTimeout, pingInterval: pingInterval,
		readerDone: make(chan struct{})}
}

// newWireConn is the conn of a participant served over a relay.
func newWireConn(w Wire, queue int, writeTimeout time.Duration) *conn {
	return &conn{wire: w, maxQueue: queue, writeTimeout: writeTimeout, readerDone: make(chan struct{})}
}

// start lets writers run (what was queued before is written now) and
// starts the pings. Serve calls it once, before reading.
func (c *conn) start() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.started = true
	if c.wire == nil {
		c.ping = time.AfterFunc(c.pingInterval, c.pingNow)
	}
	if len(c.queue) > 0 || c.closing.Load() {
		c.startWriterLocked()
	}
}

// startWriterLocked starts a writer goroutine unless one runs (or Serve
// has not started the socket yet). c.mu is held.
func (c *conn) startWriterLocked() {
	if c.started && !c.writing {
		c.writing = true
		c.writers.Add(1)
		go c.write()
	}
}

// send queues a message without ever blocking. A client whose queue is
// full is not keeping up: it is closed (1008) rather than slowing the
// room, and send reports false.
func (c *conn) send(b []byte) bool {
	c.mu.Lock()
	if c.closing.Load() {
		c.mu.Unlock()
		return false
	}
	if len(c.queue) >= c.maxQueue {
		c.mu.Unlock()
		c.close(ClosePolicy, "too slow")
		return false
	}
	c.queue = append(c.queue, b)
	c.startWriterLocked()
	c.mu.Unlock()
	return true
}

// close asks for what is queued to be flushed, a close frame with code and
// text to be sent, and the socket to be closed. Only the first call
// counts.
func (c *conn) close(code int, text string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing.Load() {
		return
	}
	c.closeCode, c.closeText = code, text
	c.closing.Store(true)
	c.startWriterLocked()
}

// isClosing reports whether close was called.
func (c *conn) isClosing() bool { return c.closing.Load() }

// pingNow runs on the ping timer's goroutine, which becomes the writer
// unless one runs already.
func (c *conn) pingNow() {
	c.mu.Lock()
	if c.closing.Load() {
		c.mu.Unlock()
		return
	}
	c.pingDue = true
	if c.writing {
		c.mu.Unlock()
		return
	}
	c.writing = true
	c.writers.Add(1)
	c.mu.Unlock()
	c.write()
}

// flushBudget bounds how long the writer spends on the last messages and
// the close frame of a closing socket; closeWait how long it then waits for
// the peer's side of the closing handshake.
const (
	flushBudget = 2 * time.Second
	closeWait   = time.Second
)

// write is a writer: the only goroutine writing data frames while it
// runs. It writes what is due (a ping first, then the queue in order) and
// ends when nothing is left. The writer that finds the socket closing
// flushes it and closes the network connection (so that the reader ends
// too).
func (c *conn) write() {
	defer c.writers.Done()
	for {
		c.mu.Lock()
		switch {
		case c.closing.Load():
			c.mu.Unlock()
			c.finish()
			return
		case c.pingDue:
			c.pingDue = false
			c.mu.Unlock()
			if err := c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.writeTimeout)); err != nil {
				c.close(websocket.CloseAbnormalClosure, "")
				continue
			}
			c.ping.Reset(c.pingInterval)
		case len(c.queue) > 0 && c.wire != nil:
			b := c.pop()
			c.mu.Unlock()
			if !c.wire.Send(websocket.TextMessage, b) {
				c.close(websocket.CloseAbnormalClosure, "")
			}
		case len(c.queue) > 0:
			b := c.pop()
			c.mu.Unlock()
			c.ws.SetWriteDeadline(time.Now().Add(c.writeTimeout))
			if err := c.ws.WriteMessage(websocket.TextMessage, b); err != nil {
				c.close(websocket.CloseAbnormalClosure, "")
			}
		default:
			c.writing = false
			c.mu.Unlock()
			return
		}
	}
}

// pop takes the oldest queued message; c.mu is held. The queue's array is
// let go when it empties, so that an idle socket keeps none.
func (c *conn) pop() []byte {
	b := c.queue[0]
	c.queue[0] = nil
	c.queue = c.queue[1:]
	if len(c.queue) == 0 {
		c.queue = nil
	}
	return b
}

// finish sends what is queued and the close frame (unless the connection
// failed), waits for the reader to see the peer's close frame (or give
// up), and reads away whatever else the peer still sends, so that closing
// the connection does not reset it before the peer has read the close
// frame. It then closes the connection.
func (c *conn) finish() {
	if c.wire != nil {
		c.finishWire()
		return
	}
	defer c.ws.Close()
	c.mu.Lock()
	if c.ping != nil {
		c.ping.Stop()
	}
	c.mu.Unlock()
	if c.closeCode == websocket.CloseAbnormalClosure {
		return
	}
	deadline := time.Now().Add(min(c.writeTimeout, flushBudget))
	c.ws.SetWriteDeadline(deadline)
	c.flush(func(b []byte) bool { return c.ws.WriteMessage(websocket.TextMessage, b) == nil })
	c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(c.closeCode, c.closeText), deadline)
	nc := c.ws.NetConn()
	nc.SetReadDeadline(time.Now().Add(closeWait))
	t := time.NewTimer(2 * closeWait)
	defer t.Stop()
	select {
	case <-c.readerDone:
	case <-t.C:
		return // the reader is busy: do not read beside it
	}
	if c.peerClosed {
		return // the handshake is complete: the server closes the connection first
	}
	nc.SetReadDeadline(time.Now().Add(closeWait))
	io.Copy(io.Discard, io.LimitReader(nc, 1<<20))
}

// finishWire sends what is queued over the wire, then the close (which the
// other node turns into the client's close frame).
func (c *conn) finishWire() {
	c.flush(func(b []byte) bool { return c.wire.Send(websocket.TextMessage, b) })
	c.wire.Close(c.closeCode, c.closeText)
}

// flush writes what is queued with write, oldest first, until the queue
// is empty or write fails.
func (c *conn) flush(write func([]byte) bool) {
	for {
		c.mu.Lock()
		if len(c.queue) == 0 {
			c.mu.Unlock()
			return
		}
		b := c.pop()
		c.mu.Unlock()
		if !write(b) {
			return
		}
	}
}

// readWS reads the socket until it fails or closes, passing each message
// to handle (which returns before the next is read), with pongWait as the
// longest silence; it returns having closed c.
func (c *conn) readWS(pongWait time.Duration, handle func(mt int, data []byte)) {
	ws := c.ws
	ws.SetReadLimit(MaxMessageBytes)
	ws.SetReadDeadline(time.Now().Add(pongWait))
	ws.SetPongHandler(func(string) error {
		if !c.isClosing() {
			ws.SetReadDeadline(time.Now().Add(pongWait))
		}
		return nil
	})
	for {
		mt, data, err := ws.ReadMessage()
		if err != nil {
			c.readFailed(err)
			return
		}
		if c.isClosing() {
			continue // read away what comes until the peer's close frame
		}
		handle(mt, data)
	}
}

func (c *conn) readFailed(err error) {
	var (
		ce *websocket.CloseError
		ne net.Error
	)
	switch {
	case errors.Is(err, websocket.ErrReadLimit):
		// The library has sent the 1009 close frame already.
		c.close(CloseTooBig, "message too big")
	case errors.As(err, &ce):
		c.peerClosed = true
		c.close(CloseNormal, "")
	case errors.As(err, &ne) && ne.Timeout():
		c.close(ClosePolicy, "no pong")
	default:
		c.close(websocket.CloseAbnormalClosure, "")
	}
}

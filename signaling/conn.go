package signaling

import (
	"io"
	"sync"
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
)

// conn is the transport of one socket: a bounded queue of outgoing
// messages drained by one writer goroutine, pings, and an idempotent close.
// The reader runs on the goroutine that called Hub.Serve.
type conn struct {
	ws           *websocket.Conn
	out          chan []byte
	writeTimeout time.Duration
	pingInterval time.Duration

	closeOnce sync.Once
	closing   chan struct{} // closed when the socket is to be closed
	closeCode int           // set before closing is closed
	closeText string
	done      chan struct{} // closed when the writer has ended
	// readerDone is closed by the reader when it has stopped reading;
	// peerClosed is set before that when it stopped at the peer's close
	// frame (the closing handshake is then complete).
	readerDone chan struct{}
	peerClosed bool
}

func newConn(ws *websocket.Conn, queue int, writeTimeout, pingInterval time.Duration) *conn {
	return &conn{ws: ws, out: make(chan []byte, queue), writeTimeout: writeTimeout, pingInterval: pingInterval,
		closing: make(chan struct{}), done: make(chan struct{}), readerDone: make(chan struct{})}
}

// send queues a message without ever blocking. A client whose queue is
// full is not keeping up: it is closed (1008) rather than slowing the
// room, and send reports false.
func (c *conn) send(b []byte) bool {
	select {
	case <-c.closing:
		return false
	default:
	}
	select {
	case c.out <- b:
		return true
	default:
		c.close(ClosePolicy, "too slow")
		return false
	}
}

// close asks the writer to flush what is queued, send a close frame with
// code and text, and close the socket. Only the first call counts.
func (c *conn) close(code int, text string) {
	c.closeOnce.Do(func() {
		c.closeCode, c.closeText = code, text
		close(c.closing)
	})
}

// isClosing reports whether close was called.
func (c *conn) isClosing() bool {
	select {
	case <-c.closing:
		return true
	default:
		return false
	}
}

// flushBudget bounds how long the writer spends on the last messages and
// the close frame of a closing socket; closeWait how long it then waits for
// the peer's side of the closing handshake.
const (
	flushBudget = 2 * time.Second
	closeWait   = time.Second
)

// writeLoop is the writer goroutine: the only one that writes data frames.
// It ends after the socket is closed, and closes the network connection so
// that the reader ends too.
func (c *conn) writeLoop() {
	defer close(c.done)
	defer c.ws.Close()
	ping := time.NewTicker(c.pingInterval)
	defer ping.Stop()
	for {
		select {
		case b := <-c.out:
			c.ws.SetWriteDeadline(time.Now().Add(c.writeTimeout))
			if err := c.ws.WriteMessage(websocket.TextMessage, b); err != nil {
				c.close(websocket.CloseAbnormalClosure, "")
				return
			}
		case <-ping.C:
			if err := c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.writeTimeout)); err != nil {
				c.close(websocket.CloseAbnormalClosure, "")
				return
			}
		case <-c.closing:
			c.finish()
			return
		}
	}
}

// finish sends what is queued and the close frame, waits for the reader to
// see the peer's close frame (or give up), and reads away whatever else the
// peer still sends, so that closing the connection does not reset it
// before the peer has read the close frame.
func (c *conn) finish() {
	deadline := time.Now().Add(min(c.writeTimeout, flushBudget))
	c.ws.SetWriteDeadline(deadline)
	for flushing := true; flushing; {
		select {
		case b := <-c.out:
			if c.ws.WriteMessage(websocket.TextMessage, b) != nil {
				flushing = false
			}
		default:
			flushing = false
		}
	}
	if c.closeCode == websocket.CloseAbnormalClosure {
		return
	}
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

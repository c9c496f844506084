package signaling

import (
	"time"

	"github.com/fasthttp/websocket"
	"golang.org/x/time/rate"
)

// Wire carries one client's signaling between the node that holds its
// WebSocket and the node that runs its meeting (package cluster's
// Session). On the meeting's node, Recv yields what the client sent and
// Send what it is to receive; on the socket's node, the other way round.
type Wire interface {
	// Recv returns the next message, in order; an error once the wire
	// has ended (one with a CloseCode method says how the socket is to
	// be closed).
	Recv() (mt int, data []byte, err error)
	// Send queues a message without blocking; false when the wire has
	// ended or cannot keep up.
	Send(mt int, data []byte) bool
	// Close ends the wire, telling the other side with code and text.
	Close(code int, text string)
}

// closeCoder is an error that names how a socket is to be closed.
type closeCoder interface{ CloseCode() (int, string) }

// ServeRemote runs a participant whose socket another node holds, in the
// room info describes, over w, until it ends. The other node has checked
// the socket's origin, authentication and caps; the participant's rights
// are decided here, as for a local socket. It returns when every goroutine
// it started has ended.
func (h *Hub) ServeRemote(w Wire, info RoomInfo, id Identity) {
	t := &Ticket{h: h, remote: true, created: time.Now()}
	c := newWireConn(w, h.cfg.SendQueue, h.cfg.WriteTimeout)
	p := newParticipant(h, c, id)
	r, ok := h.attach(t, info, p)
	if !ok {
		w.Close(CloseGoingAway, "server shutting down")
		return
	}
	defer h.serving.Done()
	c.start()
	p.readLoop() // returns having closed c
	close(c.readerDone)
	c.writers.Wait() // the close has gone over the wire
	r.leave(p)
	h.detach(r, p, t)
}

// Edge sockets pass messages on at up to edgeRateFactor times the
// per-socket message rate (the meeting's node applies the real limits and
// closes abusers); a client far over it is closed here, before it can fill
// the relay.
const edgeRateFactor = 4

// ServeRelay runs a client's socket whose meeting runs on another node,
// passing messages both ways over w until either side ends. It claims t
// (and releases it at the end), pings the client, and returns when every
// goroutine it started has ended.
func (h *Hub) ServeRelay(ws *websocket.Conn, t *Ticket, w Wire) {
	c := newConn(ws, h.cfg.SendQueue, h.cfg.WriteTimeout, h.cfg.PingInterval)
	defer t.Release()
	h.mu.Lock()
	if h.closed || t.gone || t.claimed {
		h.mu.Unlock()
		w.Close(CloseGoingAway, "")
		ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(CloseGoingAway, "server shutting down"),
			time.Now().Add(time.Second))
		return
	}
	t.claimed = true
	delete(h.pending, t)
	h.edges[c] = struct{}{}
	h.serving.Add(1)
	h.mu.Unlock()
	defer h.serving.Done()

	c.start()
	pumped := make(chan struct{})
	go func() { // the meeting's messages to the client; ends with the wire
		defer close(pumped)
		for {
			mt, data, err := w.Recv()
			if err != nil {
				code, text := CloseGoingAway, ""
				if cc, ok := err.(closeCoder); ok {
					code, text = cc.CloseCode()
				}
				c.close(code, text)
				return
			}
			if mt == websocket.TextMessage {
				c.send(data)
			}
		}
	}()
	limit := rate.NewLimiter(rate.Limit(edgeRateFactor*h.cfg.MessageRate), h.cfg.MessageBurst+h.cfg.AbuseBurst)
	pongWait := 2*h.cfg.PingInterval + h.cfg.PingInterval/2
	c.readWS(pongWait, func(mt int, data []byte) {
		if !limit.Allow() {
			c.close(ClosePolicy, "too many messages")
			return
		}
		if !w.Send(mt, data) {
			c.close(CloseGoingAway, "the meeting's server cannot be reached; join again")
		}
	})
	close(c.readerDone)
	c.writers.Wait() // the socket is closed
	w.Close(CloseNormal, "")
	<-pumped
	h.mu.Lock()
	delete(h.edges, c)
	h.mu.Unlock()
}

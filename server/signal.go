package server

import (
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
	"sync"

	"github.com/fasthttp/websocket"
	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"github.com/parley-meet/parley/audit"
	"github.com/parley-meet/parley/cluster"
	"github.com/parley-meet/parley/rbac"
	"github.com/parley-meet/parley/signaling"
)

// localSignal is where the upgrade gate leaves what the socket needs.
const localSignal = "parley.signal"

// signalStart is what the gate decided about a socket before the upgrade.
type signalStart struct {
	ticket *signaling.Ticket
	room   signaling.RoomInfo
	ident  signaling.Identity
	// On a node of a cluster: the room's meeting runs here (lease, given
	// back when the socket ends) or on node owner.
	lease *cluster.Lease
	owner string
}

// Buffers of a signaling socket. Most sockets are idle most of the time,
// so an idle one should hold as little as possible: its read buffer only
// frames what arrives (larger payloads are read past it), and its write
// buffer comes from a pool for each message and goes back after it.
const (
	signalReadBuffer  = 512
	signalWriteBuffer = 4096
)

// EnableSignaling serves meetings' signaling sockets from hub at
// GET /api/v1/rooms/{id}/signal. Call it before Serve.
//
// Everything is decided before the upgrade, and a refusal is a plain JSON
// error: the Origin must be allow-listed (the public URL's origin and
// --ws-allowed-origins; a socket opened with cookies must send one), the
// caller fully authenticated (session cookie, a guest cookie of this room,
// or a Bearer API token), allowed to join the room (404 otherwise, as in
// the REST API), and under the per-user and per-address socket caps (429).
func (s *Server) EnableSignaling(hub *signaling.Hub) {
	s.hub = hub
	origins := s.cfg.WSOrigins()
	upgrader := websocket.FastHTTPUpgrader{
		ReadBufferSize:  signalReadBuffer,
		WriteBufferSize: signalWriteBuffer,
		WriteBufferPool: &sync.Pool{},
		// The gate has already required an exact match of the raw Origin
		// header, or no Origin for a Bearer token; the upgrader checks again.
		// Never the library's default of the same host.
		CheckOrigin: func(ctx *fasthttp.RequestCtx) bool {
			origin := string(ctx.Request.Header.Peek(fiber.HeaderOrigin))
			return origin == "" || slices.Contains(origins, origin)
		},
		EnableCompression: false, // no permessage-deflate: no compression bombs, no CRIME-like leaks
	}
	// fasthttp keeps a hijacked connection's request context (its header
	// buffers, some kilobytes) until the hijack handler returns, and then
	// closes the connection unless told to keep it. Kept, the handler
	// returns at once and the socket is served on a goroutine of its own,
	// which closes it: a socket holds nothing of its HTTP request.
	s.app.Server().KeepHijackedConns = true
	upgrade := func(c *fiber.Ctx) error {
		st, _ := c.Locals(localSignal).(*signalStart)
		if st == nil {
			return errNotWebSocket
		}
		err := upgrader.Upgrade(c.Context(), func(ws *websocket.Conn) {
			// After the 101 is sent. Serve claims the ticket or gives it
			// back, and the hub waits for the sockets it serves (Close).
			go s.serveSignal(hub, ws, st)
		})
		if err != nil {
			return errNotWebSocket
		}
		return nil
	}
	s.app.Get("/api/v1/rooms/:id/signal", func(c *fiber.Ctx) error { return s.signalGate(c, hub, origins) }, upgrade)
}

// serveSignal runs one upgraded socket until it ends, and closes it. A
// panic must not reach the client.
func (s *Server) serveSignal(hub *signaling.Hub, ws *websocket.Conn, st *signalStart) {
	defer ws.Close()
	defer func() {
		if v := recover(); v != nil {
			s.log.Error("panic in a signaling socket", "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
		}
	}()
	if st.owner != "" {
		s.serveRelayed(hub, ws, st)
		return
	}
	if st.lease != nil {
		defer st.lease.Release()
	}
	hub.Serve(ws, st.ticket, st.room, st.ident)
}

var (
	errNotWebSocket = &Error{Status: http.StatusUpgradeRequired, Code: "upgrade_required", Message: "this endpoint speaks WebSocket"}
	errWSOrigin     = &Error{Status: http.StatusForbidden, Code: "forbidden_origin", Message: "signaling sockets open only from Parley's own pages"}
	errWSClosed     = &Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "the server is shutting down"}
)

// signalGate decides, before the upgrade, whether this socket may open.
func (s *Server) signalGate(c *fiber.Ctx, hub *signaling.Hub, origins []string) error {
	if !websocket.FastHTTPIsWebSocketUpgrade(c.Context()) {
		return errNotWebSocket
	}
	// Browsers always send Origin on a WebSocket handshake, in its
	// serialised form, and a page cannot forge it. A socket without one is
	// acceptable only with a Bearer token, which no page sends by itself.
	origin := c.Get(fiber.HeaderOrigin)
	bearer := c.Get(fiber.HeaderAuthorization) != ""
	if origin == "" && !bearer || origin != "" && !slices.Contains(origins, origin) {
		s.auditEvent(c, "anonymous", "signal.upgrade", "", audit.Denied,
			map[string]any{"reason": "origin", "origin": clip(origin, 100)})
		return errWSOrigin
	}
	who, err := s.roomCaller(c, c.Params("id"))
	if err != nil {
		return err
	}
	r, err := s.room(c, who, rbac.ActRoomJoin)
	if err != nil {
		return err
	}
	ident := signaling.Identity{Subject: who.subject, Actor: who.actor, ClientIP: s.ClientIP(c)}
	if who.user != nil {
		ident.Name = who.user.User.DisplayName
		if ident.Name == "" {
			ident.Name = who.user.User.Username
		}
		ident.SessionID = who.user.Session.ID
	} else {
		ident.Name, ident.Guest, ident.GuestID = who.guest.Session.DisplayName, true, who.guest.Session.ID
	}
	ticket, err := hub.Reserve(ident.Subject, ident.ClientIP)
	switch {
	case errors.Is(err, signaling.ErrClosed):
		return errWSClosed
	case err != nil:
		s.auditEvent(c, who.actor, "signal.upgrade", "room:"+r.ID, audit.Denied, map[string]any{"reason": "socket cap"})
		c.Set(fiber.HeaderRetryAfter, "10")
		what := "you have too many meeting connections open; close one first"
		if errors.Is(err, signaling.ErrTooManyForIP) {
			what = "too many meeting connections from your address"
		}
		return &Error{Status: http.StatusTooManyRequests, Code: "too_many_sockets", Message: what}
	}
	st := &signalStart{ticket: ticket, ident: ident, room: roomInfo(r)}
	if s.cluster != nil {
		if err := s.route(c, who.actor, st); err != nil {
			ticket.Release()
			return err
		}
	}
	c.Locals(localSignal, st)
	if err := c.Next(); err != nil {
		ticket.Release()
		if st.lease != nil {
			st.lease.Release()
		}
		return err
	}
	return nil
}

// clip bounds a client-supplied value before it is recorded.
func clip(v string, n int) string {
	if len(v) > n {
		v = v[:n]
	}
	return strings.ToValidUTF8(v, "")
}

package server

import (
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/gofiber/contrib/websocket"
	"github.com/gofiber/fiber/v2"

	"github.com/parley-meet/parley/audit"
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
}

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
	upgrade := websocket.New(func(c *websocket.Conn) {
		st, _ := c.Locals(localSignal).(*signalStart)
		if st == nil {
			return
		}
		hub.Serve(c.Conn, st.ticket, st.room, st.ident)
	}, websocket.Config{
		// The library compares the raw Origin header with this list; the
		// gate has already required an exact match, or no Origin for a
		// Bearer token. Never the library's default of every origin.
		Origins:           append(slices.Clone(origins), ""),
		ReadBufferSize:    4096,
		WriteBufferSize:   4096,
		EnableCompression: false, // no permessage-deflate: no compression bombs, no CRIME-like leaks
		// The library's default would write the panic to the client.
		RecoverHandler: func(*websocket.Conn) {
			if v := recover(); v != nil {
				s.log.Error("panic in a signaling socket", "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			}
		},
	})
	s.app.Get("/api/v1/rooms/:id/signal", func(c *fiber.Ctx) error { return s.signalGate(c, hub, origins) }, upgrade)
}

var (
	errNotWebSocket = &Error{Status: http.StatusUpgradeRequired, Code: "upgrade_required", Message: "this endpoint speaks WebSocket"}
	errWSOrigin     = &Error{Status: http.StatusForbidden, Code: "forbidden_origin", Message: "signaling sockets open only from Parley's own pages"}
	errWSClosed     = &Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "the server is shutting down"}
)

// signalGate decides, before the upgrade, whether this socket may open.
func (s *Server) signalGate(c *fiber.Ctx, hub *signaling.Hub, origins []string) error {
	if !websocket.IsWebSocketUpgrade(c) {
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
	c.Locals(localSignal, &signalStart{ticket: ticket, ident: ident,
		room: signaling.RoomInfo{ID: r.ID, Name: r.Name, Lobby: r.Lobby, GuestsAllowed: r.GuestsAllowed, E2EE: r.E2EE}})
	if err := c.Next(); err != nil {
		ticket.Release()
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

package server

import (
	"errors"
	"net/http"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/parley-meet/parley/audit"
	"github.com/parley-meet/parley/rbac"
	"github.com/parley-meet/parley/sfu"
	"github.com/parley-meet/parley/signaling"
)

// Live meetings for the console: what is in progress, and the moderation
// a host has in the meeting (mute, kick, end), over REST. The rights are
// the meeting's: room.moderate, checked here at each request.
func (s *Server) liveRoutes() {
	api := s.app.Group("/api/v1", s.guardUnsafe)
	api.Get("/admin/live", s.requireAuth, s.handleLive)
	api.Post("/rooms/:id/participants/:pid/mute", s.requireAuth, s.handleLiveMute)
	api.Post("/rooms/:id/participants/:pid/kick", s.requireAuth, s.handleLiveKick)
	api.Post("/rooms/:id/end", s.requireAuth, s.handleLiveEnd)
}

type liveRoomView struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Node runs the meeting (multi-node mode; omitted on a single node).
	Node         string                `json:"node,omitempty"`
	Locked       bool                  `json:"locked"`
	Recording    bool                  `json:"recording"`
	E2EE         bool                  `json:"e2ee"`
	Permissions  []string              `json:"permissions"`
	Participants []liveParticipantView `json:"participants"`
}

type liveParticipantView struct {
	ID          string          `json:"id"`
	Name        string          `json:"name"`
	Role        string          `json:"role"`
	Guest       bool            `json:"guest"`
	InLobby     bool            `json:"in_lobby"`
	HandRaised  bool            `json:"hand_raised"`
	ConnectedAt time.Time       `json:"connected_at"`
	Connection  string          `json:"connection"` // Pion's state; "" in the lobby
	Transport   string          `json:"transport"`  // "udp", "tcp" or ""
	Bandwidth   int64           `json:"bandwidth_estimate"`
	Published   []liveTrackView `json:"published"`
	Subscribed  []liveTrackView `json:"subscribed"`
}

type liveTrackView struct {
	ID          string  `json:"id"`
	Kind        string  `json:"kind"`
	Source      string  `json:"source"`
	Codec       string  `json:"codec"`
	Layer       string  `json:"layer"`
	Width       int     `json:"width"`
	Bitrate     int64   `json:"bitrate"`
	Packets     uint64  `json:"packets"`
	PacketsLost uint64  `json:"packets_lost"`
	LossPercent float64 `json:"loss_percent"`
}

func trackViews(ts []sfu.TrackStats) []liveTrackView {
	out := []liveTrackView{}
	for _, t := range ts {
		out = append(out, liveTrackView{ID: t.ID, Kind: t.Kind, Source: t.Source, Codec: t.Codec, Layer: t.Layer, Width: t.Width,
			Bitrate: t.Bitrate, Packets: t.Packets, PacketsLost: t.PacketsLost, LossPercent: t.LossPercent})
	}
	return out
}

// handleLive lists the meetings in progress the caller may moderate
// (admins: all).
func (s *Server) handleLive(c *fiber.Ctx) error {
	who := userCaller(principalOf(c))
	if !s.moderatesSomewhere(c, who) {
		s.auditEvent(c, who.actor, "authz.denied", "", audit.Denied, map[string]any{"action": rbac.ActRoomModerate, "what": "live meetings"})
		return &Error{Status: http.StatusForbidden, Code: "forbidden", Message: "you moderate no room"}
	}
	out := []liveRoomView{}
	rooms, nodes, missing := s.liveRooms(c.UserContext())
	for i, lr := range rooms {
		if !s.rbac.Can(c.UserContext(), who.subject, lr.ID, rbac.ActRoomModerate) {
			continue
		}
		v := liveRoomView{ID: lr.ID, Name: lr.Name, Node: nodes[i], Locked: lr.Locked, Recording: lr.Recording, E2EE: lr.E2EE, Participants: []liveParticipantView{},
			Permissions: []string{}}
		for _, p := range s.rbac.Permissions(c.UserContext(), who.subject, lr.ID) {
			if p == rbac.ActRoomModerate || p == rbac.ActRoomRecord || p == rbac.ActRoomManage {
				v.Permissions = append(v.Permissions, p)
			}
		}
		for _, p := range lr.Participants {
			pv := liveParticipantView{ID: p.ID, Name: p.Name, Role: p.Role, Guest: p.Guest, InLobby: p.InLobby, HandRaised: p.HandRaised,
				ConnectedAt: p.ConnectedAt.UTC(), Published: []liveTrackView{}, Subscribed: []liveTrackView{}}
			if m := p.Media; m != nil {
				pv.Connection, pv.Transport, pv.Bandwidth = m.ConnectionState, m.Transport, m.BandwidthEstimate
				pv.Published, pv.Subscribed = trackViews(m.Published), trackViews(m.Subscribed)
			}
			v.Participants = append(v.Participants, pv)
		}
		out = append(out, v)
	}
	res := fiber.Map{"rooms": out}
	if s.cluster != nil {
		res["node"] = s.cluster.ID()
		res["unreachable_nodes"] = append([]string{}, missing...)
	}
	return c.JSON(res)
}

// moderatesSomewhere: the caller may moderate every room (admins) or at
// least one (hosts, moderators): the live view is theirs.
func (s *Server) moderatesSomewhere(c *fiber.Ctx, who *caller) bool {
	ctx := c.UserContext()
	if s.rbac.Can(ctx, who.subject, rbac.Global, rbac.ActRoomModerate) {
		return true
	}
	for room := range s.rbac.RoomsOf(ctx, who.subject) {
		if s.rbac.Can(ctx, who.subject, room, rbac.ActRoomModerate) {
			return true
		}
	}
	return false
}

// liveErr maps the hub's answers to HTTP.
func liveErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, signaling.ErrNoMeeting):
		return &Error{Status: http.StatusConflict, Code: "no_meeting", Message: "nobody is meeting in this room"}
	case errors.Is(err, signaling.ErrNoParticipant):
		return &Error{Status: http.StatusNotFound, Code: "not_found", Message: "no such participant in this meeting"}
	}
	return clusterErr(err)
}

// moderatedRoom resolves the room of the path, which the signed-in caller
// must be allowed to moderate, and the hub.
func (s *Server) moderatedRoom(c *fiber.Ctx) (*caller, string, error) {
	who := userCaller(principalOf(c))
	r, err := s.room(c, who, rbac.ActRoomModerate)
	if err != nil {
		return who, "", err
	}
	if s.hub == nil && s.cluster == nil {
		return who, "", &Error{Status: http.StatusConflict, Code: "no_meeting", Message: "nobody is meeting in this room"}
	}
	return who, r.ID, nil
}

func (s *Server) handleLiveMute(c *fiber.Ctx) error {
	var req struct {
		Kind string `json:"kind"`
	}
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if req.Kind != "audio" && req.Kind != "video" {
		return &Error{Status: http.StatusBadRequest, Code: "invalid_kind", Message: `kind is "audio" or "video"`}
	}
	who, room, err := s.moderatedRoom(c)
	if err != nil {
		return err
	}
	if err := liveErr(s.meetingOp(c, roomOp{Op: "mute", Room: room, PID: c.Params("pid"), Kind: req.Kind, Actor: who.actor})); err != nil {
		return err
	}
	return c.SendStatus(http.StatusNoContent)
}

func (s *Server) handleLiveKick(c *fiber.Ctx) error {
	who, room, err := s.moderatedRoom(c)
	if err != nil {
		return err
	}
	if err := liveErr(s.meetingOp(c, roomOp{Op: "kick", Room: room, PID: c.Params("pid"), Actor: who.actor})); err != nil {
		return err
	}
	return c.SendStatus(http.StatusNoContent)
}

func (s *Server) handleLiveEnd(c *fiber.Ctx) error {
	who, room, err := s.moderatedRoom(c)
	if err != nil {
		return err
	}
	if err := liveErr(s.meetingOp(c, roomOp{Op: "end", Room: room, Actor: who.actor})); err != nil {
		return err
	}
	return c.SendStatus(http.StatusNoContent)
}

package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/gofiber/fiber/v2"

	"github.com/parley-meet/parley/audit"
	"github.com/parley-meet/parley/cluster"
	"github.com/parley-meet/parley/rbac"
	"github.com/parley-meet/parley/signaling"
	"github.com/parley-meet/parley/store"
)

// Multi-node mode. A socket may reach any node; its room's meeting runs on
// the room's owner (package cluster places it). When that is another node,
// this one keeps the client's WebSocket and relays its messages to the
// owner and back; the owner decides everything about the participant, as
// for a socket of its own. Everything else about a meeting that a REST
// request changes or reads (moderation, recording, settings, the live
// view) is done on the owner too, by a call between nodes.

var (
	errClusterDown = &Error{Status: http.StatusServiceUnavailable, Code: "cluster_unavailable",
		Message: "meetings cannot be placed right now (the servers' coordination service is unreachable); meetings in progress continue; try again shortly"}
	errNoCapacity = &Error{Status: http.StatusServiceUnavailable, Code: "no_capacity",
		Message: "every server is at capacity; try again later"}
)

// EnableCluster makes this server one node of n's cluster: sockets are
// routed to their room's owner, and n serves the sessions and calls other
// nodes relay here. Call it after EnableSignaling and before Serve.
func (s *Server) EnableCluster(n *cluster.Node) {
	s.cluster = n
	n.OnOpen(s.serveRelayedSession)
	n.OnLost(func(roomID, owner string) {
		if s.hub != nil {
			s.hub.EndMoved(roomID)
		}
	})
	n.Handle(callRoomOp, s.handleRoomOp)
	n.Handle(callLive, s.handleLiveCall)
}

// route decides where the socket's meeting runs.
func (s *Server) route(c *fiber.Ctx, actor string, st *signalStart) error {
	owner, lease, err := s.cluster.Route(c.UserContext(), st.room.ID)
	switch {
	case errors.Is(err, cluster.ErrNoNode):
		s.auditEvent(c, actor, "signal.upgrade", "room:"+st.room.ID, audit.Failure, map[string]any{"reason": "no capacity"})
		c.Set(fiber.HeaderRetryAfter, "30")
		return errNoCapacity
	case err != nil:
		s.auditEvent(c, actor, "signal.upgrade", "room:"+st.room.ID, audit.Failure, map[string]any{"reason": "cluster unavailable"})
		c.Set(fiber.HeaderRetryAfter, "5")
		return errClusterDown
	}
	st.lease = lease
	if lease == nil {
		st.owner = owner
	}
	return nil
}

// relayOpen is what the edge tells the owner about a relayed socket. The
// owner trusts it as it trusts its own gate: it comes from a node of the
// deployment, over the deployment's Redis.
type relayOpen struct {
	Room      string `json:"room"`
	Subject   string `json:"subject"`
	Actor     string `json:"actor"`
	Name      string `json:"name"`
	SessionID string `json:"session,omitempty"`
	GuestID   string `json:"guest_session,omitempty"`
	Guest     bool   `json:"guest,omitempty"`
	ClientIP  string `json:"ip"`
}

// serveRelayed serves a socket whose meeting runs on st.owner.
func (s *Server) serveRelayed(hub *signaling.Hub, ws *websocket.Conn, st *signalStart) {
	id := st.ident
	payload, _ := json.Marshal(relayOpen{Room: st.room.ID, Subject: id.Subject, Actor: id.Actor, Name: id.Name,
		SessionID: id.SessionID, GuestID: id.GuestID, Guest: id.Guest, ClientIP: id.ClientIP})
	sess := s.cluster.Open(st.owner, payload)
	hub.ServeRelay(ws, st.ticket, sess)
}

// serveRelayedSession serves, on the room's owner, a socket another node
// holds. The room is read again and the subject's right to join checked
// again here.
func (s *Server) serveRelayedSession(sess *cluster.Session, payload []byte) {
	defer func() {
		if v := recover(); v != nil {
			s.log.Error("panic in a relayed signaling session", "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			sess.Close(signaling.CloseInternal, "")
		}
	}()
	var o relayOpen
	if err := json.Unmarshal(payload, &o); err != nil || o.Room == "" || o.Subject == "" {
		sess.Close(signaling.ClosePolicy, "bad relay request")
		return
	}
	hub := s.hub
	if hub == nil {
		sess.Close(signaling.CloseGoingAway, "server shutting down")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	r, err := s.store.RoomByID(ctx, o.Room)
	allowed := err == nil && s.rbac.Can(ctx, o.Subject, o.Room, rbac.ActRoomJoin)
	cancel()
	switch {
	case errors.Is(err, store.ErrNotFound) || err == nil && !allowed:
		sess.Close(signaling.ClosePolicy, "not allowed in this room")
		return
	case err != nil:
		s.log.Error("relayed session: reading the room failed", "err", err)
		sess.Close(signaling.CloseInternal, "")
		return
	}
	owner, lease, err := s.cluster.Claim(context.Background(), o.Room)
	if err != nil {
		sess.Close(signaling.CloseServiceRestart, "the meeting cannot be placed right now; join again")
		return
	}
	if lease == nil {
		sess.Moved(owner)
		return
	}
	defer lease.Release()
	sess.Accept()
	hub.ServeRemote(sess, roomInfo(r), signaling.Identity{Subject: o.Subject, Actor: o.Actor, Name: o.Name,
		SessionID: o.SessionID, GuestID: o.GuestID, Guest: o.Guest, ClientIP: o.ClientIP})
}

// roomInfo is what the hub needs of a stored room.
func roomInfo(r store.Room) signaling.RoomInfo {
	return signaling.RoomInfo{ID: r.ID, Name: r.Name, Lobby: r.Lobby, GuestsAllowed: r.GuestsAllowed, E2EE: r.E2EE}
}

// Calls between nodes.
const (
	callRoomOp = "room-op"
	callLive   = "live"
)

// roomOp is one thing done to a room's meeting on its owner.
type roomOp struct {
	Op       string              `json:"op"` // mute, kick, end, record, recording, in_progress, changed, delete
	Room     string              `json:"room"`
	PID      string              `json:"pid,omitempty"`
	Kind     string              `json:"kind,omitempty"`
	On       bool                `json:"on,omitempty"`
	Actor    string              `json:"actor,omitempty"`
	ClientIP string              `json:"ip,omitempty"`
	Info     *signaling.RoomInfo `json:"info,omitempty"`
}

// Errors that travel between nodes by name.
var opErrors = map[string]error{
	"no_meeting":            signaling.ErrNoMeeting,
	"no_participant":        signaling.ErrNoParticipant,
	"recording_e2ee":        signaling.ErrRecordingE2EE,
	"recording_state":       signaling.ErrRecordingState,
	"recording_unavailable": signaling.ErrRecordingUnavailable,
}

// doRoomOp does op on this node's hub.
func (s *Server) doRoomOp(op roomOp) (bool, error) {
	h := s.hub
	if h == nil {
		return false, signaling.ErrNoMeeting
	}
	switch op.Op {
	case "mute":
		return false, h.Mute(op.Room, op.PID, op.Kind, op.Actor, op.ClientIP)
	case "kick":
		return false, h.Kick(op.Room, op.PID, op.Actor, op.ClientIP)
	case "end":
		return false, h.End(op.Room, op.Actor, op.ClientIP)
	case "record":
		return false, h.SetRecording(op.Room, op.On, op.Actor, op.ClientIP)
	case "recording":
		return h.Recording(op.Room), nil
	case "in_progress":
		return h.MeetingInProgress(op.Room), nil
	case "changed":
		if op.Info != nil {
			h.RoomChanged(*op.Info)
		}
		return false, nil
	case "delete":
		h.EndRoom(op.Room)
		return false, nil
	}
	return false, fmt.Errorf("unknown room operation %q", op.Op)
}

// handleRoomOp serves a roomOp another node calls.
func (s *Server) handleRoomOp(_ context.Context, body []byte) ([]byte, error) {
	var op roomOp
	if err := json.Unmarshal(body, &op); err != nil {
		return nil, errors.New("bad request")
	}
	v, err := s.doRoomOp(op)
	if err != nil {
		for name, e := range opErrors {
			if errors.Is(err, e) {
				return nil, errors.New(name)
			}
		}
		s.log.Error("a room operation for another node failed", "op", op.Op, "err", err)
		return nil, errors.New("internal")
	}
	return json.Marshal(v)
}

// roomOpTimeout bounds a call to the owner (a recording's start may take
// a while there).
const roomOpTimeout = 20 * time.Second

// onMeeting does op where the room's meeting runs: here on a single node
// or when this node owns it, on its owner otherwise. With no owner there
// is no meeting: a reading reports false and a change ErrNoMeeting, except
// for settings changes and deletions, which have nothing to do.
func (s *Server) onMeeting(ctx context.Context, op roomOp) (bool, error) {
	if s.cluster == nil {
		return s.doRoomOp(op)
	}
	owner, err := s.cluster.Owner(ctx, op.Room)
	if err != nil {
		// Without Redis a meeting this node runs is still this node's.
		if s.hub != nil && s.hub.MeetingInProgress(op.Room) {
			return s.doRoomOp(op)
		}
		return false, err
	}
	switch owner {
	case s.cluster.ID():
		return s.doRoomOp(op)
	case "":
		switch op.Op {
		case "recording", "in_progress", "changed", "delete":
			return false, nil
		}
		return false, signaling.ErrNoMeeting
	}
	body, _ := json.Marshal(op)
	ctx, cancel := context.WithTimeout(ctx, roomOpTimeout)
	defer cancel()
	out, err := s.cluster.Call(ctx, owner, callRoomOp, body)
	var re *cluster.RemoteError
	if errors.As(err, &re) {
		if e, ok := opErrors[re.Msg]; ok {
			return false, e
		}
		return false, fmt.Errorf("node %s: %s", owner, re.Msg)
	}
	if err != nil {
		return false, fmt.Errorf("%w: node %s: %v", cluster.ErrUnavailable, owner, err)
	}
	var v bool
	if err := json.Unmarshal(out, &v); err != nil {
		return false, fmt.Errorf("node %s: a room operation's reply: %w", owner, err)
	}
	return v, nil
}

// handleLiveCall returns this node's meetings in progress to another node
// (the admin console's live view covers every node).
func (s *Server) handleLiveCall(_ context.Context, _ []byte) ([]byte, error) {
	if s.hub == nil {
		return []byte("[]"), nil
	}
	return json.Marshal(s.hub.Live())
}

// liveRooms are the meetings in progress on every node, each with the node
// that runs it ("" on a single node). A node that does not answer in time
// is left out and named in missing.
func (s *Server) liveRooms(ctx context.Context) (rooms []signaling.LiveRoom, nodes []string, missing []string) {
	if s.cluster == nil {
		if s.hub != nil {
			rooms = s.hub.Live()
		}
		return rooms, make([]string, len(rooms)), nil
	}
	add := func(rs []signaling.LiveRoom, node string) {
		for _, r := range rs {
			rooms = append(rooms, r)
			nodes = append(nodes, node)
		}
	}
	if s.hub != nil {
		add(s.hub.Live(), s.cluster.ID())
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	infos, err := s.cluster.Nodes(ctx)
	if err != nil {
		return rooms, nodes, []string{"(the node registry is unavailable)"}
	}
	type answer struct {
		node  string
		rooms []signaling.LiveRoom
		err   error
	}
	answers := make(chan answer, len(infos))
	asked := 0
	for _, in := range infos {
		if in.ID == s.cluster.ID() {
			continue
		}
		asked++
		go func(node string) {
			out, err := s.cluster.Call(ctx, node, callLive, nil)
			var rs []signaling.LiveRoom
			if err == nil {
				err = json.Unmarshal(out, &rs)
			}
			answers <- answer{node, rs, err}
		}(in.ID)
	}
	for range asked {
		a := <-answers
		if a.err != nil {
			missing = append(missing, a.node)
			continue
		}
		add(a.rooms, a.node)
	}
	return rooms, nodes, missing
}

// meetingOp does a change to the meeting of a request's room (onMeeting),
// as the request's client.
func (s *Server) meetingOp(c *fiber.Ctx, op roomOp) error {
	op.ClientIP = s.ClientIP(c)
	_, err := s.onMeeting(c.UserContext(), op)
	return err
}

// meetingFlag reads a fact about a room's meeting (onMeeting); false when
// it cannot be known.
func (s *Server) meetingFlag(ctx context.Context, op, roomID string) bool {
	v, err := s.onMeeting(ctx, roomOp{Op: op, Room: roomID})
	if err != nil {
		s.log.Debug("could not ask the node running a meeting", "room", roomID, "err", err)
	}
	return v
}

// clusterErr maps a failure to reach the node running a meeting to 503.
func clusterErr(err error) error {
	if errors.Is(err, cluster.ErrUnavailable) {
		return errClusterDown
	}
	return err
}

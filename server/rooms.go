package server

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/parley-meet/parley/audit"
	"github.com/parley-meet/parley/auth"
	"github.com/parley-meet/parley/internal/text"
	"github.com/parley-meet/parley/rbac"
	"github.com/parley-meet/parley/store"
)

func (s *Server) roomRoutes() {
	api := s.app.Group("/api/v1", s.guardUnsafe)
	api.Post("/rooms", s.requireAuth, s.handleCreateRoom)
	api.Get("/rooms", s.requireAuth, s.handleListRooms)
	api.Get("/rooms/:id", s.handleGetRoom) // users and the room's guests
	api.Patch("/rooms/:id", s.requireAuth, s.handleUpdateRoom)
	api.Delete("/rooms/:id", s.requireAuth, s.handleDeleteRoom)
	api.Get("/rooms/:id/members", s.requireAuth, s.handleListMembers)
	api.Put("/rooms/:id/members/:username", s.requireAuth, s.handleSetMember)
	api.Delete("/rooms/:id/members/:username", s.requireAuth, s.handleRemoveMember)
	api.Get("/rooms/:id/invites", s.requireAuth, s.handleListInvites)
	api.Post("/rooms/:id/invites", s.requireAuth, s.handleCreateInvite)
	api.Delete("/rooms/:id/invites/:invite", s.requireAuth, s.handleRevokeInvite)
	api.Post("/invites/redeem", s.handleRedeemInvite)
}

var (
	errNoRoom    = &Error{Status: http.StatusNotFound, Code: "not_found", Message: "no such room"}
	errForbidden = &Error{Status: http.StatusForbidden, Code: "forbidden", Message: "your role in this room does not allow that"}
)

// caller is who acts on a room: a signed-in user or a guest of that room.
type caller struct {
	subject string
	actor   string // for the audit log
	user    *auth.Principal
	guest   *auth.Guest
}

func userCaller(p *auth.Principal) *caller {
	return &caller{subject: rbac.UserSubject(p.User.ID), actor: "user:" + p.User.ID, user: p}
}

// roomCaller authenticates a request about room id: a signed-in user, or
// else a guest whose session is for this very room.
func (s *Server) roomCaller(c *fiber.Ctx, roomID string) (*caller, error) {
	if c.Get(fiber.HeaderAuthorization) != "" || c.Cookies(auth.CookieName) != "" {
		p, err := s.principal(c)
		if err != nil {
			return nil, err
		}
		return userCaller(p), nil
	}
	g, err := s.auth.AuthenticateGuest(c.UserContext(), c.Cookies(auth.GuestCookieName))
	if errors.Is(err, auth.ErrUnauthenticated) || err == nil && g.Session.RoomID != roomID {
		return nil, errUnauthenticated
	}
	if err != nil {
		return nil, err
	}
	return &caller{subject: rbac.GuestSubject(g.Session.ID), actor: "guest:" + g.Session.ID, guest: g}, nil
}

// room loads the room of the path and checks that the caller may do action
// in it. A caller who may not even join it learns nothing, not even that
// it exists: 404. Refusals are audited.
func (s *Server) room(c *fiber.Ctx, who *caller, action string) (store.Room, error) {
	id := c.Params("id")
	r, err := s.store.RoomByID(c.UserContext(), id)
	if errors.Is(err, store.ErrNotFound) {
		return r, errNoRoom
	}
	if err != nil {
		return r, err
	}
	if s.rbac.Can(c.UserContext(), who.subject, r.ID, action) {
		return r, nil
	}
	s.auditEvent(c, who.actor, "authz.denied", "room:"+r.ID, audit.Denied, map[string]any{"action": action})
	if !s.rbac.Can(c.UserContext(), who.subject, r.ID, rbac.ActRoomJoin) {
		return r, errNoRoom
	}
	return r, errForbidden
}

// managedRoom resolves the signed-in caller and the room of the path,
// which they must be allowed to manage.
func (s *Server) managedRoom(c *fiber.Ctx) (*caller, store.Room, error) {
	who := userCaller(principalOf(c))
	r, err := s.room(c, who, rbac.ActRoomManage)
	return who, r, err
}

func (s *Server) auditEvent(c *fiber.Ctx, actor, action, target, outcome string, details map[string]any) {
	if _, err := s.audit.Record(c.UserContext(), audit.Event{Actor: actor, Action: action, Target: target,
		Outcome: outcome, ClientIP: s.ClientIP(c), Details: details}); err != nil {
		s.log.Error("audit record failed", "action", action, "err", err)
	}
}

// roomView is a room as the API shows it, with the caller's place in it.
type roomView struct {
	ID            string    `json:"id"`
	Name          string    `json:"name"`
	Lobby         bool      `json:"lobby"`
	GuestsAllowed bool      `json:"guests_allowed"`
	CreatedAt     time.Time `json:"created_at"`
	Role          string    `json:"role,omitempty"`
	Permissions   []string  `json:"permissions"`
	// Recording: the meeting in progress is being recorded (the pre-join
	// screen warns).
	Recording bool `json:"recording"`
	// RecordingRetentionDays is the room's own retention of its
	// recordings; 0: the server's (--recording-retention).
	RecordingRetentionDays int64 `json:"recording_retention_days"`
	// E2EE: the room's meetings are end-to-end encrypted.
	E2EE bool `json:"e2ee"`
}

func (s *Server) view(c *fiber.Ctx, who *caller, r store.Room) roomView {
	role, _ := s.rbac.RoomRole(c.UserContext(), who.subject, r.ID)
	// The caller's rights in this room; global rights (admin.*,
	// rooms.create) are not the room's business.
	perms := []string{}
	for _, p := range s.rbac.Permissions(c.UserContext(), who.subject, r.ID) {
		if strings.HasPrefix(p, "room.") || strings.HasPrefix(p, "recording.") {
			perms = append(perms, p)
		}
	}
	return roomView{ID: r.ID, Name: r.Name, Lobby: r.Lobby, GuestsAllowed: r.GuestsAllowed,
		CreatedAt: time.UnixMicro(r.CreatedUS).UTC(), Role: role, Permissions: perms,
		Recording: s.meetingFlag(c.UserContext(), "recording", r.ID), RecordingRetentionDays: r.RecordingRetentionS / 86400, E2EE: r.E2EE}
}

// newRoomID is 96 random bits, URL-safe.
func newRoomID() string {
	b := make([]byte, 12)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

var errRoomName = &Error{Status: http.StatusBadRequest, Code: "invalid_name", Message: "a room name has 1 to 100 characters and no control characters"}

func (s *Server) handleCreateRoom(c *fiber.Ctx) error {
	who := userCaller(principalOf(c))
	var req struct {
		Name          string `json:"name"`
		Lobby         bool   `json:"lobby"`
		GuestsAllowed bool   `json:"guests_allowed"`
		E2EE          bool   `json:"e2ee"`
	}
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if !s.rbac.Can(c.UserContext(), who.subject, rbac.Global, rbac.ActRoomsCreate) {
		s.auditEvent(c, who.actor, "authz.denied", "", audit.Denied, map[string]any{"action": rbac.ActRoomsCreate})
		return &Error{Status: http.StatusForbidden, Code: "forbidden", Message: "you may not create rooms"}
	}
	name, err := text.Clean(req.Name, 1, 100)
	if err != nil {
		return errRoomName
	}
	now := s.now().UnixMicro()
	r := store.Room{ID: newRoomID(), Name: name, Lobby: req.Lobby, GuestsAllowed: req.GuestsAllowed, E2EE: req.E2EE,
		CreatedBy: who.user.User.ID, CreatedUS: now, UpdatedUS: now}
	if err := s.store.CreateRoom(c.UserContext(), r); err != nil {
		return err
	}
	if err := s.rbac.SetRoomRole(c.UserContext(), who.subject, r.ID, rbac.RoleHost); err != nil {
		s.store.DeleteRoom(c.UserContext(), r.ID)
		return err
	}
	s.auditEvent(c, who.actor, "room.create", "room:"+r.ID, audit.Success, map[string]any{"lobby": r.Lobby, "guests_allowed": r.GuestsAllowed, "e2ee": r.E2EE})
	return c.Status(http.StatusCreated).JSON(s.view(c, who, r))
}

func (s *Server) handleListRooms(c *fiber.Ctx) error {
	who := userCaller(principalOf(c))
	ctx := c.UserContext()
	var rooms []store.Room
	if s.rbac.Can(ctx, who.subject, rbac.Global, rbac.ActRoomJoin) {
		// A global role that joins every room (admin): every room.
		all, err := s.store.ListRooms(ctx)
		if err != nil {
			return err
		}
		rooms = all
	} else {
		for id := range s.rbac.RoomsOf(ctx, who.subject) {
			r, err := s.store.RoomByID(ctx, id)
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			rooms = append(rooms, r)
		}
		sort.Slice(rooms, func(i, j int) bool { return rooms[i].CreatedUS > rooms[j].CreatedUS })
	}
	out := []roomView{}
	for _, r := range rooms {
		if s.rbac.Can(ctx, who.subject, r.ID, rbac.ActRoomJoin) {
			out = append(out, s.view(c, who, r))
		}
	}
	return c.JSON(fiber.Map{"rooms": out})
}

func (s *Server) handleGetRoom(c *fiber.Ctx) error {
	who, err := s.roomCaller(c, c.Params("id"))
	if err != nil {
		return err
	}
	r, err := s.room(c, who, rbac.ActRoomJoin)
	if err != nil {
		return err
	}
	v := s.view(c, who, r)
	if who.guest != nil {
		return c.JSON(fiber.Map{"room": v, "guest": fiber.Map{"display_name": who.guest.Session.DisplayName}})
	}
	return c.JSON(fiber.Map{"room": v})
}

func (s *Server) handleUpdateRoom(c *fiber.Ctx) error {
	who, r, err := s.managedRoom(c)
	if err != nil {
		return err
	}
	var req struct {
		Name          *string `json:"name"`
		Lobby         *bool   `json:"lobby"`
		GuestsAllowed *bool   `json:"guests_allowed"`
		// RecordingRetentionDays: 0 (the server's), or 1 to 36500 days.
		RecordingRetentionDays *int64 `json:"recording_retention_days"`
		// E2EE changes only while nobody meets in the room.
		E2EE *bool `json:"e2ee"`
	}
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	changed := map[string]any{}
	if req.E2EE != nil && *req.E2EE != r.E2EE {
		inProgress, err := s.onMeeting(c.UserContext(), roomOp{Op: "in_progress", Room: r.ID})
		if err != nil {
			return clusterErr(err)
		}
		if inProgress {
			s.auditEvent(c, who.actor, "room.update", "room:"+r.ID, audit.Failure,
				map[string]any{"e2ee": *req.E2EE, "reason": "meeting in progress"})
			return &Error{Status: http.StatusConflict, Code: "meeting_in_progress",
				Message: "end-to-end encryption is switched between meetings: end the meeting in progress first (nothing was changed)"}
		}
		r.E2EE, changed["e2ee"] = *req.E2EE, *req.E2EE
	}
	if d := req.RecordingRetentionDays; d != nil {
		if *d < 0 || *d > 36500 {
			return &Error{Status: http.StatusBadRequest, Code: "invalid_retention", Message: "recording_retention_days is 0 (the server's retention) or 1 to 36500"}
		}
		r.RecordingRetentionS, changed["recording_retention_days"] = *d*86400, *d
	}
	if req.Name != nil {
		name, err := text.Clean(*req.Name, 1, 100)
		if err != nil {
			return errRoomName
		}
		r.Name, changed["name"] = name, true
	}
	if req.Lobby != nil {
		r.Lobby, changed["lobby"] = *req.Lobby, *req.Lobby
	}
	if req.GuestsAllowed != nil {
		r.GuestsAllowed, changed["guests_allowed"] = *req.GuestsAllowed, *req.GuestsAllowed
	}
	r.UpdatedUS = s.now().UnixMicro()
	if err := s.store.UpdateRoom(c.UserContext(), r); err != nil {
		return err
	}
	info := roomInfo(r)
	if _, err := s.onMeeting(c.UserContext(), roomOp{Op: "changed", Room: r.ID, Info: &info}); err != nil {
		s.log.Warn("the meeting in progress could not be given the room's new settings", "room", r.ID, "err", err)
	}
	s.auditEvent(c, who.actor, "room.update", "room:"+r.ID, audit.Success, changed)
	return c.JSON(s.view(c, who, r))
}

func (s *Server) handleDeleteRoom(c *fiber.Ctx) error {
	who, r, err := s.managedRoom(c)
	if err != nil {
		return err
	}
	guests, _ := s.store.RoomGuests(c.UserContext(), r.ID)
	if err := s.store.DeleteRoom(c.UserContext(), r.ID); err != nil {
		return err
	}
	if err := s.rbac.DeleteRoom(c.UserContext(), r.ID); err != nil {
		return err
	}
	for _, g := range guests {
		s.rbac.RemoveSubject(c.UserContext(), rbac.GuestSubject(g.ID))
	}
	if _, err := s.onMeeting(c.UserContext(), roomOp{Op: "delete", Room: r.ID}); err != nil {
		s.log.Warn("the meeting of a deleted room could not be ended", "room", r.ID, "err", err)
	}
	s.auditEvent(c, who.actor, "room.delete", "room:"+r.ID, audit.Success, nil)
	return c.SendStatus(http.StatusNoContent)
}

// memberView is one person with a role in a room.
type memberView struct {
	Kind        string `json:"kind"` // "user" or "guest"
	ID          string `json:"id"`
	Username    string `json:"username,omitempty"`
	DisplayName string `json:"display_name"`
	Role        string `json:"role"`
}

func (s *Server) handleListMembers(c *fiber.Ctx) error {
	_, r, err := s.managedRoom(c)
	if err != nil {
		return err
	}
	ctx := c.UserContext()
	out := []memberView{}
	for _, b := range s.rbac.RoomMembers(ctx, r.ID) {
		kind, id, _ := cutSubject(b.Subject)
		switch kind {
		case "user":
			u, err := s.store.UserByID(ctx, id)
			if err != nil {
				continue
			}
			out = append(out, memberView{Kind: kind, ID: id, Username: u.Username, DisplayName: u.DisplayName, Role: b.Role})
		case "guest":
			g, err := s.store.GuestSessionByID(ctx, id)
			if err != nil {
				continue
			}
			out = append(out, memberView{Kind: kind, ID: id, DisplayName: g.DisplayName, Role: b.Role})
		}
	}
	return c.JSON(fiber.Map{"members": out})
}

// cutSubject splits "user:<id>" into its kind and id.
func cutSubject(subject string) (kind, id string, ok bool) {
	for i := 0; i < len(subject); i++ {
		if subject[i] == ':' {
			return subject[:i], subject[i+1:], true
		}
	}
	return "", "", false
}

var errNoMember = &Error{Status: http.StatusNotFound, Code: "not_found", Message: "no such user"}

// memberTarget finds the user named in the path.
func (s *Server) memberTarget(c *fiber.Ctx) (store.User, error) {
	name, err := auth.NormalizeUsername(c.Params("username"))
	if err != nil {
		return store.User{}, errNoMember
	}
	u, err := s.store.UserByUsername(c.UserContext(), name)
	if errors.Is(err, store.ErrNotFound) {
		return u, errNoMember
	}
	return u, err
}

func rbacError(err error) error {
	switch {
	case errors.Is(err, rbac.ErrLastHost):
		return &Error{Status: http.StatusConflict, Code: "last_host", Message: "a room keeps at least one host"}
	case errors.Is(err, rbac.ErrLastAdmin):
		return &Error{Status: http.StatusConflict, Code: "last_admin", Message: "Parley keeps at least one admin"}
	case errors.Is(err, rbac.ErrUnknownRole):
		return &Error{Status: http.StatusBadRequest, Code: "invalid_role", Message: "no such role"}
	}
	return err
}

func (s *Server) handleSetMember(c *fiber.Ctx) error {
	who, r, err := s.managedRoom(c)
	if err != nil {
		return err
	}
	var req struct {
		Role string `json:"role"`
	}
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if !s.rbac.IsRoomRole(req.Role) {
		return rbacError(rbac.ErrUnknownRole)
	}
	u, err := s.memberTarget(c)
	if err != nil {
		return err
	}
	if err := s.rbac.SetRoomRole(c.UserContext(), rbac.UserSubject(u.ID), r.ID, req.Role); err != nil {
		s.auditEvent(c, who.actor, "room.member_set", "room:"+r.ID, audit.Failure, map[string]any{"user": u.ID, "role": req.Role})
		return rbacError(err)
	}
	s.auditEvent(c, who.actor, "room.member_set", "room:"+r.ID, audit.Success, map[string]any{"user": u.ID, "role": req.Role})
	return c.JSON(memberView{Kind: "user", ID: u.ID, Username: u.Username, DisplayName: u.DisplayName, Role: req.Role})
}

func (s *Server) handleRemoveMember(c *fiber.Ctx) error {
	who, r, err := s.managedRoom(c)
	if err != nil {
		return err
	}
	u, err := s.memberTarget(c)
	if err != nil {
		return err
	}
	if _, bound := s.rbac.RoomRole(c.UserContext(), rbac.UserSubject(u.ID), r.ID); !bound {
		return errNoMember
	}
	if err := s.rbac.RemoveFromRoom(c.UserContext(), rbac.UserSubject(u.ID), r.ID); err != nil {
		s.auditEvent(c, who.actor, "room.member_remove", "room:"+r.ID, audit.Failure, map[string]any{"user": u.ID})
		return rbacError(err)
	}
	s.auditEvent(c, who.actor, "room.member_remove", "room:"+r.ID, audit.Success, map[string]any{"user": u.ID})
	return c.SendStatus(http.StatusNoContent)
}

// inviteView is an invite as hosts see it; the URL only at creation.
type inviteView struct {
	ID        string    `json:"id"`
	URL       string    `json:"url,omitempty"`
	Role      string    `json:"role"`
	ExpiresAt time.Time `json:"expires_at"`
	MaxUses   int       `json:"max_uses"`
	Uses      int       `json:"uses"`
	Revoked   bool      `json:"revoked"`
}

func viewInvite(i store.Invite) inviteView {
	return inviteView{ID: i.ID, Role: i.Role, ExpiresAt: time.UnixMicro(i.ExpiresUS).UTC(), MaxUses: i.MaxUses, Uses: i.Uses, Revoked: i.RevokedUS != 0}
}

func (s *Server) handleListInvites(c *fiber.Ctx) error {
	_, r, err := s.managedRoom(c)
	if err != nil {
		return err
	}
	invites, err := s.store.RoomInvites(c.UserContext(), r.ID)
	if err != nil {
		return err
	}
	out := []inviteView{}
	for _, i := range invites {
		out = append(out, viewInvite(i))
	}
	return c.JSON(fiber.Map{"invites": out})
}

// Invite limits.
const (
	inviteDefaultTTL = 24 * time.Hour
	inviteMaxTTL     = 30 * 24 * time.Hour
	inviteMaxUses    = 1000
)

func (s *Server) handleCreateInvite(c *fiber.Ctx) error {
	who, r, err := s.managedRoom(c)
	if err != nil {
		return err
	}
	var req struct {
		Role       string `json:"role"`
		ExpiresInS int64  `json:"expires_in_s"`
		MaxUses    int    `json:"max_uses"`
	}
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if !rbac.InviteRoleAllowed(req.Role) {
		return &Error{Status: http.StatusBadRequest, Code: "invalid_role", Message: "an invite grants guest, viewer or member"}
	}
	if !rbac.InviteRequiresAccount(req.Role) && !r.GuestsAllowed {
		return &Error{Status: http.StatusConflict, Code: "guests_not_allowed", Message: "this room does not admit guests: allow guests in its settings first"}
	}
	ttl := inviteDefaultTTL
	if req.ExpiresInS != 0 {
		ttl = time.Duration(req.ExpiresInS) * time.Second
	}
	if ttl < time.Minute || ttl > inviteMaxTTL {
		return &Error{Status: http.StatusBadRequest, Code: "invalid_expiry", Message: "expires_in_s is from 60 to 2592000 (30 days)"}
	}
	if req.MaxUses == 0 {
		req.MaxUses = 1
	}
	if req.MaxUses < 1 || req.MaxUses > inviteMaxUses {
		return &Error{Status: http.StatusBadRequest, Code: "invalid_max_uses", Message: "max_uses is from 1 to 1000"}
	}
	tokenBytes := make([]byte, 32)
	rand.Read(tokenBytes)
	token := base64.RawURLEncoding.EncodeToString(tokenBytes)
	idBytes := make([]byte, 12)
	rand.Read(idBytes)
	now := s.now()
	inv := store.Invite{ID: hex.EncodeToString(idBytes), RoomID: r.ID, TokenHash: auth.HashToken(token), Role: req.Role,
		CreatedBy: who.user.User.ID, CreatedUS: now.UnixMicro(), ExpiresUS: now.Add(ttl).UnixMicro(), MaxUses: req.MaxUses}
	if err := s.store.CreateInvite(c.UserContext(), inv); err != nil {
		return err
	}
	s.auditEvent(c, who.actor, "invite.create", "room:"+r.ID, audit.Success,
		map[string]any{"invite": inv.ID, "role": inv.Role, "max_uses": inv.MaxUses, "expires_in_s": int64(ttl.Seconds())})
	v := viewInvite(inv)
	// The token travels in the fragment: browsers never send it in a
	// request line, so no server or proxy log sees it.
	v.URL = s.cfg.PublicOrigin() + "/join/" + r.ID + "#" + token
	return c.Status(http.StatusCreated).JSON(v)
}

func (s *Server) handleRevokeInvite(c *fiber.Ctx) error {
	who, r, err := s.managedRoom(c)
	if err != nil {
		return err
	}
	id := c.Params("invite")
	if err := s.store.RevokeInvite(c.UserContext(), r.ID, id, s.now().UnixMicro()); errors.Is(err, store.ErrNotFound) {
		return &Error{Status: http.StatusNotFound, Code: "not_found", Message: "no such invite"}
	} else if err != nil {
		return err
	}
	s.auditEvent(c, who.actor, "invite.revoke", "room:"+r.ID, audit.Success, map[string]any{"invite": id})
	return c.SendStatus(http.StatusNoContent)
}

var errBadInvite = &Error{Status: http.StatusNotFound, Code: "invalid_invite", Message: "this invitation is not valid: it has expired, was revoked or has been used up"}

// handleRedeemInvite spends one use of an invite. Everything that could
// refuse is checked before the use is spent. A signed-in person joins with
// their account; otherwise a guest or viewer invite opens a guest session
// for that one room, and a member invite asks them to sign in first.
func (s *Server) handleRedeemInvite(c *fiber.Ctx) error {
	var req struct {
		Token       string `json:"token"`
		DisplayName string `json:"display_name"`
	}
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	ctx := c.UserContext()
	if req.Token == "" || len(req.Token) > 128 {
		return errBadInvite
	}
	inv, err := s.store.InviteByTokenHash(ctx, auth.HashToken(req.Token), s.now().UnixMicro())
	if errors.Is(err, store.ErrNotFound) {
		s.auditEvent(c, "anonymous", "invite.redeem", "", audit.Denied, map[string]any{"reason": "invalid invite"})
		return errBadInvite
	}
	if err != nil {
		return err
	}
	r, err := s.store.RoomByID(ctx, inv.RoomID)
	if err != nil {
		return errBadInvite
	}
	// A signed-in person joins with their account. A session cookie that
	// no longer works is ignored for a guest invite (the person may still
	// come in as a guest) and answered with sign_in_required otherwise.
	var p *auth.Principal
	if c.Cookies(auth.CookieName) != "" || c.Get(fiber.HeaderAuthorization) != "" {
		p, err = s.principal(c)
		if err != nil && !errors.Is(err, errUnauthenticated) {
			return err
		}
		if p != nil && !p.ViaToken && !p.CheckCSRF(c.Get("X-CSRF-Token")) {
			return errCSRF
		}
	}
	if p != nil {
		who := userCaller(p)
		if _, already := s.rbac.RoomRole(ctx, who.subject, r.ID); !already {
			if _, err := s.store.UseInvite(ctx, inv.TokenHash, s.now().UnixMicro()); errors.Is(err, store.ErrNotFound) {
				return errBadInvite
			} else if err != nil {
				return err
			}
			if err := s.rbac.SetRoomRole(ctx, who.subject, r.ID, inv.Role); err != nil {
				return rbacError(err)
			}
		}
		s.auditEvent(c, who.actor, "invite.redeem", "room:"+r.ID, audit.Success, map[string]any{"invite": inv.ID, "role": inv.Role})
		return c.JSON(fiber.Map{"room": s.view(c, who, r)})
	}
	if rbac.InviteRequiresAccount(inv.Role) {
		return &Error{Status: http.StatusUnauthorized, Code: "sign_in_required", Message: "sign in first: this invitation adds your account to the room"}
	}
	if !r.GuestsAllowed {
		s.auditEvent(c, "anonymous", "invite.redeem", "room:"+r.ID, audit.Denied, map[string]any{"invite": inv.ID, "reason": "guests not allowed"})
		return errBadInvite
	}
	guestName, err := text.Clean(req.DisplayName, 1, 64)
	if err != nil {
		return &Error{Status: http.StatusBadRequest, Code: "invalid_display_name", Message: auth.ErrInvalidDisplayName.Error()}
	}
	if _, err := s.store.UseInvite(ctx, inv.TokenHash, s.now().UnixMicro()); errors.Is(err, store.ErrNotFound) {
		return errBadInvite // used up by someone else meanwhile
	} else if err != nil {
		return err
	}
	ng, err := s.auth.OpenGuestSession(ctx, r.ID, inv.ID, guestName, s.meta(c))
	if err != nil {
		return authError(c, err)
	}
	subject := rbac.GuestSubject(ng.ID)
	if err := s.rbac.SetRoomRole(ctx, subject, r.ID, inv.Role); err != nil {
		return err
	}
	c.Cookie(&fiber.Cookie{Name: auth.GuestCookieName, Value: ng.Token, Path: "/", Secure: true, HTTPOnly: true,
		SameSite: fiber.CookieSameSiteStrictMode, Expires: ng.ExpiresAt})
	s.auditEvent(c, "guest:"+ng.ID, "invite.redeem", "room:"+r.ID, audit.Success, map[string]any{"invite": inv.ID, "role": inv.Role})
	who := &caller{subject: subject, actor: "guest:" + ng.ID}
	return c.JSON(fiber.Map{"room": s.view(c, who, r), "guest": fiber.Map{"display_name": guestName}})
}

// requireGlobal checks a global right; refusals are audited.
func (s *Server) requireGlobal(c *fiber.Ctx, who *caller, action string) error {
	if s.rbac.Can(c.UserContext(), who.subject, rbac.Global, action) {
		return nil
	}
	s.auditEvent(c, who.actor, "authz.denied", "", audit.Denied, map[string]any{"action": action})
	return &Error{Status: http.StatusForbidden, Code: "forbidden", Message: "this needs an administrator"}
}

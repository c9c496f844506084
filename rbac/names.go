package rbac

import (
	"errors"
	"regexp"
	"strings"
)

// Actions a subject may be allowed. Room and recording actions are asked in
// a room; rooms.create, admin.users and admin.audit in the global domain.
const (
	ActRoomsCreate       = "rooms.create"
	ActRoomJoin          = "room.join"
	ActRoomPublish       = "room.publish"
	ActRoomScreen        = "room.screen"
	ActRoomChat          = "room.chat"
	ActRoomModerate      = "room.moderate"
	ActRoomRecord        = "room.record"
	ActRoomManage        = "room.manage"
	ActRecordingView     = "recording.view"
	ActRecordingDownload = "recording.download"
	ActRecordingShare    = "recording.share"
	ActRecordingDelete   = "recording.delete"
	ActAdminUsers        = "admin.users"
	ActAdminAudit        = "admin.audit"
)

// The built-in roles. Admin and Member are global roles; the others are
// room roles. RoleRoomMember has the same name as RoleMember but is bound
// in a room, where it means something else.
const (
	RoleAdmin      = "admin"
	RoleMember     = "member"
	RoleHost       = "host"
	RoleModerator  = "moderator"
	RoleRoomMember = "member"
	RoleViewer     = "viewer"
	RoleGuest      = "guest"
)

// Global is the room argument that means the global domain.
const Global = ""

// Kinds of Event.
const (
	// EventBinding: a subject's role in Room (or globally) changed.
	EventBinding = "binding"
	// EventPolicy: what roles may do changed, or the policy was reloaded;
	// every decision may have changed. Subject is empty.
	EventPolicy = "policy"
)

// Errors callers branch on.
var (
	// ErrInvalidID: a subject or room id does not have the required form.
	ErrInvalidID = errors.New("invalid subject or room id")
	// ErrUnknownRole: the role is not a role of the kind asked for (a
	// global role for SetGlobalRoles, a room role for SetRoomRole).
	ErrUnknownRole = errors.New("unknown role")
	// ErrInvalidRole: DefineRoomRole got a role name that is not allowed
	// or no actions.
	ErrInvalidRole = errors.New("invalid role definition")
	// ErrUnknownAction: DefineRoomRole got an action that is not a room or
	// recording action.
	ErrUnknownAction = errors.New("unknown action")
	// ErrLastAdmin: the change would leave no enabled admin.
	ErrLastAdmin = errors.New("the last enabled admin cannot lose the admin role")
	// ErrLastHost: the change would leave a room without a host.
	ErrLastHost = errors.New("the last host of a room cannot lose the host role")
)

// Domains in the policy.
const (
	globalDomain = "*"
	roomTemplate = "room"   // p lines of room roles
	roomPrefix   = "room:"  // g lines binding a room role
	userPrefix   = "user:"  // subjects of accounts
	guestPrefix  = "guest:" // subjects of guest sessions
	ptypePolicy  = "p"      // permission lines
	ptypeBinding = "g"      // role bindings
)

var (
	subjectPattern = regexp.MustCompile(`^(user|guest):[A-Za-z0-9_-]{1,64}$`)
	roomPattern    = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	rolePattern    = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)
)

// roomActions are the actions a room role may be given.
var roomActions = map[string]bool{
	ActRoomJoin: true, ActRoomPublish: true, ActRoomScreen: true, ActRoomChat: true,
	ActRoomModerate: true, ActRoomRecord: true, ActRoomManage: true,
	ActRecordingView: true, ActRecordingDownload: true, ActRecordingShare: true, ActRecordingDelete: true,
}

// UserSubject is the subject of the account with the given id.
func UserSubject(userID string) string { return userPrefix + userID }

// GuestSubject is the subject of the guest session with the given id.
func GuestSubject(guestID string) string { return guestPrefix + guestID }

// validSubject reports whether s is "user:<id>" or "guest:<id>" with an id
// of 1 to 64 letters, digits, '_' or '-'.
func validSubject(s string) bool { return subjectPattern.MatchString(s) }

// domainOf returns the policy domain of a room argument: "*" for Global,
// "room:<id>" for a well-formed room id.
func domainOf(room string) (string, bool) {
	if room == Global {
		return globalDomain, true
	}
	if !roomPattern.MatchString(room) {
		return "", false
	}
	return roomPrefix + room, true
}

// roomOf is the inverse of domainOf for a binding's domain.
func roomOf(domain string) (string, bool) {
	if domain == globalDomain {
		return Global, true
	}
	room, ok := strings.CutPrefix(domain, roomPrefix)
	return room, ok && roomPattern.MatchString(room)
}

// userID returns the account id of a "user:" subject.
func userID(subject string) (string, bool) { return strings.CutPrefix(subject, userPrefix) }

// InviteRoleAllowed reports whether an invite may grant role: only guest,
// viewer or member.
func InviteRoleAllowed(role string) bool {
	return role == RoleGuest || role == RoleViewer || role == RoleRoomMember
}

// InviteRequiresAccount reports whether redeeming an invite for role
// requires a signed-in account: false for guest and viewer, true for member
// and for any role an invite may not grant.
func InviteRequiresAccount(role string) bool {
	return role != RoleGuest && role != RoleViewer
}

package server

import (
	"context"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parley-meet/parley/rbac"
)

// roomsFixture: a host (alice), a member-to-be (bob), an outsider (carol)
// and an admin (root), all signed in.
type roomsFixture struct {
	ts                      *testServer
	host, bob, carol, admin *browser
}

func newRoomsFixture(t *testing.T) *roomsFixture {
	ts := startServer(t, nil, generous)
	f := &roomsFixture{ts: ts}
	for _, u := range []struct {
		name, role string
		b          **browser
	}{{"alice", rbac.RoleMember, &f.host}, {"bob", rbac.RoleMember, &f.bob}, {"carol", rbac.RoleMember, &f.carol}, {"root", rbac.RoleAdmin, &f.admin}} {
		ts.createUser(t, u.name, goodPassword, u.role)
		*u.b = ts.browser(t)
		(*u.b).enroll(u.name, goodPassword)
	}
	return f
}

func (f *roomsFixture) createRoom(t *testing.T, name string, guests bool) string {
	t.Helper()
	r := f.host.post("/api/v1/rooms", map[string]any{"name": name, "lobby": true, "guests_allowed": guests})
	expect(t, "create room", r, 201, "")
	return r.str("id")
}

func TestRoomLifecycleAndVisibility(t *testing.T) {
	f := newRoomsFixture(t)
	ts := f.ts
	r := f.host.post("/api/v1/rooms", map[string]any{"name": "  Board <b>meeting</b>  ", "lobby": true, "guests_allowed": false})
	expect(t, "create", r, 201, "")
	id := r.str("id")
	if len(id) < 16 || strings.ContainsAny(id, "/+=") || r.str("name") != "Board <b>meeting</b>" || r.str("role") != rbac.RoleHost {
		t.Fatalf("created room: %s", r.raw)
	}
	perms := r.body["permissions"].([]any)
	if !slices.Contains(perms, any(rbac.ActRoomManage)) {
		t.Errorf("host permissions %v", perms)
	}
	ts.expectAudit(t, "room.create/success")

	// The outsider learns nothing: 404 everywhere, like a room that does
	// not exist.
	for _, req := range []struct{ method, path string }{
		{"GET", "/api/v1/rooms/" + id}, {"PATCH", "/api/v1/rooms/" + id}, {"DELETE", "/api/v1/rooms/" + id},
		{"GET", "/api/v1/rooms/" + id + "/members"}, {"PUT", "/api/v1/rooms/" + id + "/members/carol"},
		{"GET", "/api/v1/rooms/" + id + "/invites"}, {"POST", "/api/v1/rooms/" + id + "/invites"},
	} {
		var body any
		if req.method != "GET" && req.method != "DELETE" {
			body = map[string]any{"role": "member"}
			if req.method == "PATCH" {
				body = map[string]any{"name": "mine now"}
			}
		}
		got := f.carol.do(req.method, req.path, body, nil)
		missing := f.carol.do(req.method, strings.Replace(req.path, id, "AAAAAAAAAAAAAAAA", 1), body, nil)
		if got.status != 404 || missing.status != 404 || got.str("error") != missing.str("error") {
			t.Errorf("%s %s as an outsider: %d %s (a missing room: %d %s)", req.method, req.path, got.status, got.raw, missing.status, missing.raw)
		}
	}
	ts.expectAudit(t, "authz.denied/denied")
	if rooms := f.carol.get("/api/v1/rooms").body["rooms"].([]any); len(rooms) != 0 {
		t.Errorf("outsider lists %v", rooms)
	}

	// Adding bob as a viewer: he sees the room but may not manage it (403,
	// not 404: he knows it exists).
	expect(t, "add bob", f.host.do("PUT", "/api/v1/rooms/"+id+"/members/BOB", map[string]string{"role": rbac.RoleViewer}, nil), 200, "")
	expect(t, "bob sees", f.bob.get("/api/v1/rooms/"+id), 200, "")
	expect(t, "bob manages", f.bob.do("PATCH", "/api/v1/rooms/"+id, map[string]any{"name": "x"}, nil), 403, "forbidden")
	if rooms := f.bob.get("/api/v1/rooms").body["rooms"].([]any); len(rooms) != 1 {
		t.Errorf("bob lists %d rooms", len(rooms))
	}
	members := f.host.get("/api/v1/rooms/" + id + "/members")
	if !strings.Contains(string(members.raw), `"username":"bob"`) || !strings.Contains(string(members.raw), `"role":"viewer"`) {
		t.Errorf("members: %s", members.raw)
	}
	expect(t, "unknown user", f.host.do("PUT", "/api/v1/rooms/"+id+"/members/nobody", map[string]string{"role": "member"}, nil), 404, "not_found")
	expect(t, "unknown role", f.host.do("PUT", "/api/v1/rooms/"+id+"/members/bob", map[string]string{"role": "overlord"}, nil), 400, "invalid_role")
	expect(t, "injected role", f.host.do("PUT", "/api/v1/rooms/"+id+"/members/bob", map[string]string{"role": "host, *"}, nil), 400, "invalid_role")

	// The last host cannot leave or be demoted.
	expect(t, "remove last host", f.host.do("DELETE", "/api/v1/rooms/"+id+"/members/alice", nil, nil), 409, "last_host")
	expect(t, "demote last host", f.host.do("PUT", "/api/v1/rooms/"+id+"/members/alice", map[string]string{"role": "member"}, nil), 409, "last_host")

	// Settings and CSRF.
	expect(t, "patch", f.host.do("PATCH", "/api/v1/rooms/"+id, map[string]any{"guests_allowed": true}, nil), 200, "")
	csrf := f.host.csrf
	f.host.csrf = ""
	expect(t, "patch without CSRF", f.host.do("PATCH", "/api/v1/rooms/"+id, map[string]any{"name": "x"}, nil), 403, "csrf")
	expect(t, "create without CSRF", f.host.post("/api/v1/rooms", map[string]any{"name": "x"}), 403, "csrf")
	f.host.csrf = csrf
	expect(t, "bad name", f.host.post("/api/v1/rooms", map[string]any{"name": "a\nb"}), 400, "invalid_name")
	expect(t, "empty name", f.host.post("/api/v1/rooms", map[string]any{"name": "  "}), 400, "invalid_name")
	expect(t, "long name", f.host.post("/api/v1/rooms", map[string]any{"name": strings.Repeat("x", 101)}), 400, "invalid_name")

	// The admin sees and may manage every room.
	if rooms := f.admin.get("/api/v1/rooms").body["rooms"].([]any); len(rooms) != 1 {
		t.Errorf("admin lists %d rooms", len(rooms))
	}
	expect(t, "admin manages", f.admin.get("/api/v1/rooms/"+id+"/members"), 200, "")

	// Delete: the room, its bindings and invites go.
	expect(t, "bob deletes", f.bob.do("DELETE", "/api/v1/rooms/"+id, nil, nil), 403, "forbidden")
	expect(t, "delete", f.host.do("DELETE", "/api/v1/rooms/"+id, nil, nil), 204, "")
	expect(t, "gone", f.host.get("/api/v1/rooms/"+id), 404, "not_found")
	if ts.authz.Can(context.Background(), rbac.UserSubject(userID(t, f.bob)), id, rbac.ActRoomJoin) {
		t.Error("a binding survived the room")
	}
	ts.expectAudit(t, "room.delete/success")
}

func userID(t *testing.T, b *browser) string {
	t.Helper()
	return b.get("/api/v1/me").str("id")
}

// Case 22: path tricks never reach another room's data.
func TestPathTricks(t *testing.T) {
	f := newRoomsFixture(t)
	id := f.createRoom(t, "secret", false)
	for _, p := range []string{
		"/api/v1/rooms/x/../" + id, "/api/v1/rooms/x%2f..%2f" + id, "/api/v1/rooms/%2e%2e/" + id,
		"/api/v1/rooms/" + url.PathEscape(id+"/../x"), "/api/v1/rooms/*", "/api/v1/rooms/%2A",
		"/api/v1/rooms/" + id + "%00", "/api/v1/rooms/" + strings.ToLower(id),
	} {
		r := f.carol.get(p)
		if r.status == 200 || strings.Contains(string(r.raw), "secret") {
			t.Errorf("GET %s as an outsider: %d %s", p, r.status, r.raw)
		}
	}
	for _, p := range []string{"/static/../pages/index.html", "/static/%2e%2e/pages/index.html", "/static/js/..%2f..%2fpages%2findex.html", "/static//etc/passwd"} {
		if r := f.carol.get(p); r.status == 200 {
			t.Errorf("GET %s: %d", p, r.status)
		}
	}
}

func TestInvitesAndGuests(t *testing.T) {
	f := newRoomsFixture(t)
	ts := f.ts
	closed := f.createRoom(t, "members only", false)
	expect(t, "guest invite to a closed room", f.host.post("/api/v1/rooms/"+closed+"/invites", map[string]any{"role": "guest"}), 409, "guests_not_allowed")
	expect(t, "host invite", f.host.post("/api/v1/rooms/"+closed+"/invites", map[string]any{"role": "host"}), 400, "invalid_role")
	expect(t, "bad expiry", f.host.post("/api/v1/rooms/"+closed+"/invites", map[string]any{"role": "member", "expires_in_s": 5}), 400, "invalid_expiry")
	expect(t, "bad uses", f.host.post("/api/v1/rooms/"+closed+"/invites", map[string]any{"role": "member", "max_uses": 5000}), 400, "invalid_max_uses")

	id := f.createRoom(t, "open house", true)
	r := f.host.post("/api/v1/rooms/"+id+"/invites", map[string]any{"role": "guest", "expires_in_s": 3600, "max_uses": 2})
	expect(t, "invite", r, 201, "")
	link := r.str("url")
	prefix := "https://localhost:8443/join/" + id + "#"
	if !strings.HasPrefix(link, prefix) || strings.Contains(link, "?") {
		t.Fatalf("invite URL %q", link)
	}
	token := strings.TrimPrefix(link, prefix)
	ts.expectAudit(t, "invite.create/success")

	// Two guests redeem; the third finds it used up.
	g1 := ts.browser(t)
	r = g1.post("/api/v1/invites/redeem", map[string]string{"token": token, "display_name": "<img src=x onerror=alert(1)>"})
	expect(t, "guest 1", r, 200, "")
	if !strings.Contains(string(r.raw), `"role":"guest"`) {
		t.Errorf("redeemed: %s", r.raw)
	}
	expect(t, "guest sees the room", g1.get("/api/v1/rooms/"+id), 200, "")
	expect(t, "guest 2", ts.browser(t).post("/api/v1/invites/redeem", map[string]string{"token": token, "display_name": "Two"}), 200, "")
	expect(t, "guest 3", ts.browser(t).post("/api/v1/invites/redeem", map[string]string{"token": token, "display_name": "Three"}), 404, "invalid_invite")
	expect(t, "no display name", ts.browser(t).post("/api/v1/invites/redeem", map[string]string{"token": token2(t, f, id)}), 400, "invalid_display_name")

	// A guest session opens that one room and nothing else.
	other := f.createRoom(t, "elsewhere", true)
	for _, req := range []struct{ method, path string }{
		{"GET", "/api/v1/me"}, {"GET", "/api/v1/rooms"}, {"POST", "/api/v1/rooms"}, {"GET", "/api/v1/rooms/" + other},
		{"GET", "/api/v1/rooms/" + id + "/members"}, {"POST", "/api/v1/rooms/" + id + "/invites"},
		{"POST", "/api/v1/auth/token"}, {"GET", "/api/v1/admin/users"}, {"PATCH", "/api/v1/rooms/" + id},
	} {
		var body any
		if req.method != "GET" {
			body = map[string]any{}
		}
		if r := g1.do(req.method, req.path, body, nil); r.status != 401 {
			t.Errorf("guest %s %s: %d %s", req.method, req.path, r.status, r.raw)
		}
	}
	members := f.host.get("/api/v1/rooms/" + id + "/members")
	if !strings.Contains(string(members.raw), `"kind":"guest"`) || !strings.Contains(string(members.raw), `\u003cimg src=x onerror=alert(1)\u003e`) {
		t.Errorf("members with guests: %s", members.raw)
	}

	// A refused redemption spends nothing: the closed room's guest invite
	// (made while it admitted guests) and the host's own link.
	expect(t, "open the closed room", f.host.do("PATCH", "/api/v1/rooms/"+closed, map[string]any{"guests_allowed": true}, nil), 200, "")
	r = f.host.post("/api/v1/rooms/"+closed+"/invites", map[string]any{"role": "guest", "max_uses": 1})
	ctok := strings.TrimPrefix(r.str("url"), "https://localhost:8443/join/"+closed+"#")
	expect(t, "close it again", f.host.do("PATCH", "/api/v1/rooms/"+closed, map[string]any{"guests_allowed": false}, nil), 200, "")
	expect(t, "guest into a closed room", ts.browser(t).post("/api/v1/invites/redeem", map[string]string{"token": ctok, "display_name": "Gwen"}), 404, "invalid_invite")
	expect(t, "host opens own link", f.host.post("/api/v1/invites/redeem", map[string]string{"token": ctok}), 200, "")
	if l := f.host.get("/api/v1/rooms/" + closed + "/invites"); !strings.Contains(string(l.raw), `"uses":0`) {
		t.Errorf("refused redemptions spent uses: %s", l.raw)
	}
	// A dead session cookie does not keep a guest out.
	ghost := ts.browser(t)
	r = ghost.do("POST", "/api/v1/invites/redeem", map[string]string{"token": token2(t, f, id), "display_name": "Ghost"}, map[string]string{"Cookie": "__Host-parley=expired"})
	expect(t, "guest with a dead session cookie", r, 200, "")
	if perms := f.admin.get("/api/v1/rooms/" + id).body["room"].(map[string]any)["permissions"].([]any); slices.Contains(perms, any("admin.users")) {
		t.Errorf("room permissions carry global ones: %v", perms)
	}

	// Expiry and revocation.
	r = f.host.post("/api/v1/rooms/"+id+"/invites", map[string]any{"role": "viewer", "expires_in_s": 60})
	short := strings.TrimPrefix(r.str("url"), prefix)
	r = f.host.post("/api/v1/rooms/"+id+"/invites", map[string]any{"role": "viewer"})
	revoked, revokedID := strings.TrimPrefix(r.str("url"), prefix), r.str("id")
	expect(t, "revoke", f.host.do("DELETE", "/api/v1/rooms/"+id+"/invites/"+revokedID, nil, nil), 204, "")
	expect(t, "revoked invite", ts.browser(t).post("/api/v1/invites/redeem", map[string]string{"token": revoked, "display_name": "Late"}), 404, "invalid_invite")
	expect(t, "revoke twice", f.host.do("DELETE", "/api/v1/rooms/"+id+"/invites/"+revokedID, nil, nil), 404, "")
	expect(t, "revoke another room's invite", f.host.do("DELETE", "/api/v1/rooms/"+closed+"/invites/"+revokedID, nil, nil), 404, "")
	ts.clock.Advance(2 * time.Minute)
	expect(t, "expired invite", ts.browser(t).post("/api/v1/invites/redeem", map[string]string{"token": short, "display_name": "Late"}), 404, "invalid_invite")
	list := f.host.get("/api/v1/rooms/" + id + "/invites")
	if strings.Contains(string(list.raw), token) || !strings.Contains(string(list.raw), `"revoked":true`) {
		t.Errorf("invite list: %s", list.raw)
	}
	ts.expectAudit(t, "invite.redeem/denied")

	// A member invite adds a signed-in account, and only a signed-in one.
	r = f.host.post("/api/v1/rooms/"+closed+"/invites", map[string]any{"role": "member", "max_uses": 1})
	mtok := strings.TrimPrefix(r.str("url"), "https://localhost:8443/join/"+closed+"#")
	expect(t, "member invite anonymously", ts.browser(t).post("/api/v1/invites/redeem", map[string]string{"token": mtok}), 401, "sign_in_required")
	dead := ts.browser(t)
	expect(t, "member invite with a dead session", dead.do("POST", "/api/v1/invites/redeem", map[string]string{"token": mtok}, map[string]string{"Cookie": "__Host-parley=expired"}), 401, "sign_in_required")
	r = f.carol.post("/api/v1/invites/redeem", map[string]string{"token": mtok})
	expect(t, "member invite signed in", r, 200, "")
	if role, _ := ts.authz.RoomRole(context.Background(), rbac.UserSubject(userID(t, f.carol)), closed); role != rbac.RoleRoomMember {
		t.Errorf("carol's role = %q", role)
	}
}

// A role change through the API is seen by Can at once and by a bus
// subscriber within 100 ms.
func TestRoleChangeReachesSubscribers(t *testing.T) {
	f := newRoomsFixture(t)
	id := f.createRoom(t, "live", false)
	bobID := userID(t, f.bob)
	events, cancel := f.ts.authz.Subscribe()
	defer cancel()
	expect(t, "make bob a member", f.host.do("PUT", "/api/v1/rooms/"+id+"/members/bob", map[string]string{"role": rbac.RoleRoomMember}, nil), 200, "")
	if !f.ts.authz.Can(context.Background(), rbac.UserSubject(bobID), id, rbac.ActRoomPublish) {
		t.Error("Can does not see the new role")
	}
	waitEvent := func(what string) {
		t.Helper()
		deadline := time.After(100 * time.Millisecond)
		for {
			select {
			case ev := <-events:
				if ev.Subject == rbac.UserSubject(bobID) && ev.Room == id {
					return
				}
			case <-deadline:
				t.Fatalf("%s: no bus event within 100 ms", what)
			}
		}
	}
	waitEvent("promotion")
	expect(t, "demote bob", f.host.do("PUT", "/api/v1/rooms/"+id+"/members/bob", map[string]string{"role": rbac.RoleViewer}, nil), 200, "")
	if f.ts.authz.Can(context.Background(), rbac.UserSubject(bobID), id, rbac.ActRoomPublish) {
		t.Error("Can still lets a viewer publish")
	}
	waitEvent("demotion")
	ts := f.ts
	ts.expectAudit(t, "room.member_set/success")
}

func TestGlobalRolesAdmin(t *testing.T) {
	f := newRoomsFixture(t)
	expect(t, "member lists users", f.bob.get("/api/v1/admin/users"), 403, "forbidden")
	r := f.admin.get("/api/v1/admin/users")
	expect(t, "admin lists users", r, 200, "")
	if n := len(r.body["users"].([]any)); n != 4 {
		t.Errorf("%d users", n)
	}
	expect(t, "member sets roles", f.bob.do("PUT", "/api/v1/admin/users/bob/roles", map[string]any{"roles": []string{"admin"}}, nil), 403, "forbidden")
	expect(t, "promote bob", f.admin.do("PUT", "/api/v1/admin/users/bob/roles", map[string]any{"roles": []string{"admin"}}, nil), 200, "")
	expect(t, "bob is admin now", f.bob.get("/api/v1/admin/users"), 200, "")
	me := f.bob.get("/api/v1/me")
	if !strings.Contains(string(me.raw), `"roles":["admin"]`) {
		t.Errorf("me: %s", me.raw)
	}
	expect(t, "unknown global role", f.admin.do("PUT", "/api/v1/admin/users/bob/roles", map[string]any{"roles": []string{"host"}}, nil), 400, "invalid_role")
	expect(t, "demote bob", f.admin.do("PUT", "/api/v1/admin/users/bob/roles", map[string]any{"roles": []string{"member"}}, nil), 200, "")
	expect(t, "demote the last admin", f.admin.do("PUT", "/api/v1/admin/users/root/roles", map[string]any{"roles": []string{"member"}}, nil), 409, "last_admin")
	f.ts.expectAudit(t, "admin.roles_set/success")
}

// token2 makes a fresh one-use guest invite and returns its token.
func token2(t *testing.T, f *roomsFixture, room string) string {
	t.Helper()
	r := f.host.post("/api/v1/rooms/"+room+"/invites", map[string]any{"role": "guest"})
	expect(t, "invite", r, 201, "")
	return strings.TrimPrefix(r.str("url"), "https://localhost:8443/join/"+room+"#")
}

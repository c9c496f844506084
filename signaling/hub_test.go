package signaling

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/parley-meet/parley/rbac"
	"github.com/parley-meet/parley/store"
)

const room1 = "room1"

// auditHas reports whether the audit log holds action/outcome, waiting up
// to a second for it (the hub records after it has answered).
func (h *harness) auditHas(entry string) bool {
	for deadline := time.Now().Add(time.Second); ; time.Sleep(20 * time.Millisecond) {
		found := false
		h.store.ScanAudit(context.Background(), func(r store.AuditRecord) error {
			if r.Action+"/"+r.Outcome == entry {
				found = true
			}
			return nil
		})
		if found || time.Now().After(deadline) {
			return found
		}
	}
}

func TestJoinWelcomeChatAndLeave(t *testing.T) {
	h := newHarness(t, nil)
	h.bind("user:host", room1, rbac.RoleHost)
	h.bind("user:ann", room1, rbac.RoleRoomMember)
	host := h.dial("user:host", room1)
	w := host.join()
	if w["role"] != rbac.RoleHost || len(w["participants"].([]any)) != 0 || w["room"].(map[string]any)["name"] != "Room" {
		t.Fatalf("welcome: %v", w)
	}
	if ice, ok := w["ice_servers"].([]any); !ok || len(ice) != 0 {
		t.Errorf("ice_servers: %v", w["ice_servers"])
	}
	host.send(map[string]any{"type": "chat", "text": "  <b>hi</b>\u202e "})
	c := host.expect("chat")
	if c["text"] != "<b>hi</b>" || c["from"] != w["participant_id"] || c["name"] != "user:host" {
		t.Fatalf("chat: %v", c)
	}
	ann := h.dial("user:ann", room1)
	aw := ann.join()
	ps := aw["participants"].([]any)
	if len(ps) != 1 || ps[0].(map[string]any)["id"] != w["participant_id"] {
		t.Fatalf("ann's welcome: %v", aw)
	}
	if hist := ann.expect("chat"); hist["text"] != "<b>hi</b>" {
		t.Errorf("history: %v", hist)
	}
	j := host.expect("participant_joined")["participant"].(map[string]any)
	if j["id"] != aw["participant_id"] || j["in_lobby"] != false {
		t.Errorf("participant_joined: %v", j)
	}
	// The sender is who the server knows: a from field is refused.
	ann.send(`{"type":"chat","text":"hi","from":"` + w["participant_id"].(string) + `"}`)
	ann.expectError(codeBadMessage)

	// Publishing: the tracks reach the others; leaving unpublishes them.
	ann.send(map[string]any{"type": "offer", "sdp": offerSDP("a1", "v1")})
	ann.expect("answer")
	if tp := host.expect("track_published"); tp["participant"] != aw["participant_id"] {
		t.Errorf("track_published: %v", tp)
	}
	ann.send(map[string]any{"type": "leave"})
	ann.expectClose(CloseNormal, 3*time.Second)
	host.expect("track_unpublished")
	if l := host.expect("participant_left"); l["participant"] != aw["participant_id"] {
		t.Errorf("participant_left: %v", l)
	}
	if !h.auditHas("signal.join/success") || !h.auditHas("signal.leave/success") {
		t.Error("join and leave not audited")
	}
}

// The PeerConnection is made at the first offer, and only for an offer
// the participant may make: joining, or sending what needs one before,
// makes none.
func TestPeerConnectionAtFirstOffer(t *testing.T) {
	h := newHarness(t, nil)
	h.bind("user:vic", room1, rbac.RoleViewer)
	v := h.dial("user:vic", room1)
	id := v.join()["participant_id"].(string)
	v.send(map[string]any{"type": "answer", "sdp": "v=0"})
	v.expectError(codeBadState)
	v.send(`{"type":"layer","track_id":"t","max_width":320}`)
	v.expectError(codeBadState)
	v.send(map[string]any{"type": "offer", "sdp": offerSDP("a1", "v1")})
	v.expectError(codeForbidden)
	if h.media.participant(id) != nil {
		t.Fatal("a PeerConnection was made before an offer was accepted")
	}
	v.send(map[string]any{"type": "offer", "sdp": recvOnlySDP})
	v.expect("answer")
	mp := h.media.participant(id)
	if mp == nil {
		t.Fatal("no PeerConnection after the first offer")
	}
	v.send(map[string]any{"type": "offer", "sdp": recvOnlySDP})
	v.expect("answer")
	if h.media.participant(id) != mp {
		t.Error("a second offer made another PeerConnection")
	}
	v.send(map[string]any{"type": "leave"})
	v.expectClose(CloseNormal, 3*time.Second)
	waitFor(t, "the PeerConnection to close", func() bool {
		mp.mu.Lock()
		defer mp.mu.Unlock()
		return mp.closed
	})
}

func TestLobbyAdmitAndDeny(t *testing.T) {
	h := newHarness(t, nil)
	h.bind("user:host", room1, rbac.RoleHost)
	h.bind("guest:g1", room1, rbac.RoleGuest)
	h.bind("guest:g2", room1, rbac.RoleGuest)
	h.bind("user:ann", room1, rbac.RoleRoomMember)
	host := h.dial("user:host", room1, "lobby")
	host.join()

	g1 := h.dial("guest:g1", room1, "lobby")
	g1.send(map[string]any{"type": "join"})
	if pos := g1.expect("lobby"); pos["position"] != 1.0 {
		t.Fatalf("lobby: %v", pos)
	}
	g2 := h.dial("guest:g2", room1, "lobby")
	g2.send(map[string]any{"type": "join"})
	if pos := g2.expect("lobby"); pos["position"] != 2.0 {
		t.Fatalf("lobby: %v", pos)
	}
	a1 := host.expect("participant_joined")["participant"].(map[string]any)
	a2 := host.expect("participant_joined")["participant"].(map[string]any)
	if a1["in_lobby"] != true || a1["guest"] != true {
		t.Fatalf("lobby arrival: %v", a1)
	}
	// Someone waiting gets no room traffic and cannot act.
	g1.send(map[string]any{"type": "offer", "sdp": offerSDP("a", "v")})
	g1.expectError(codeInLobby)
	g1.send(map[string]any{"type": "chat", "text": "let me in"})
	g1.expectError(codeInLobby)
	// A member does not see the lobby, and may not admit.
	ann := h.dial("user:ann", room1, "lobby")
	ann.send(map[string]any{"type": "join"})
	ann.expect("lobby") // the lobby is on for everyone but moderators
	host.expect("participant_joined")
	ann.send(map[string]any{"type": "admit", "participant": a1["id"]})
	ann.expectError(codeForbidden)

	host.send(map[string]any{"type": "admit", "participant": a1["id"]})
	g1.expect("admitted")
	if w := g1.expect("welcome"); w["role"] != rbac.RoleGuest {
		t.Errorf("admitted welcome: %v", w)
	}
	if pos := g2.expect("lobby"); pos["position"] != 1.0 {
		t.Errorf("g2 moved to %v", pos)
	}
	host.send(map[string]any{"type": "deny", "participant": a2["id"]})
	g2.expect("denied")
	g2.expectClose(CloseNormal, 3*time.Second)
	host.send(map[string]any{"type": "deny", "participant": a2["id"]})
	host.expectError(codeNoSuch)
	if !h.auditHas("signal.admit/success") || !h.auditHas("signal.deny/success") || !h.auditHas("signal.admit/denied") {
		t.Error("lobby decisions not audited")
	}
}

func TestLockedRoomAndGuestsWithoutDirectEntry(t *testing.T) {
	h := newHarness(t, nil)
	h.bind("user:host", room1, rbac.RoleHost)
	h.bind("user:ann", room1, rbac.RoleRoomMember)
	h.bind("guest:g1", room1, rbac.RoleGuest)
	host := h.dial("user:host", room1)
	host.join()
	// A room that does not admit guests directly sends them to the lobby.
	g1 := h.dial("guest:g1", room1, "noguests")
	g1.send(map[string]any{"type": "join"})
	g1.expect("lobby")
	host.send(map[string]any{"type": "lock", "locked": true})
	if s := host.expect("room_state"); s["locked"] != true {
		t.Fatalf("room_state: %v", s)
	}
	ann := h.dial("user:ann", room1)
	ann.send(map[string]any{"type": "join"})
	ann.expect("lobby")
	host2 := h.dial("user:host", room1)
	host2.join() // moderators still enter
}

func TestModerationRefusedToMembers(t *testing.T) {
	h := newHarness(t, nil)
	h.bind("user:host", room1, rbac.RoleHost)
	h.bind("user:ann", room1, rbac.RoleRoomMember)
	h.bind("user:vic", room1, rbac.RoleViewer)
	host := h.dial("user:host", room1)
	hw := host.join()
	ann := h.dial("user:ann", room1)
	ann.join()
	victim := hw["participant_id"].(string)
	for _, m := range []map[string]any{
		{"type": "kick", "participant": victim},
		{"type": "mute", "participant": victim, "kind": "audio"},
		{"type": "admit", "participant": victim},
		{"type": "deny", "participant": victim},
		{"type": "lock", "locked": true},
		{"type": "end"},
		{"type": "record", "action": "start"},
	} {
		ann.send(m)
		if e := ann.expectError(codeForbidden); e["request"] != m["type"] {
			t.Errorf("%v: %v", m, e)
		}
	}
	host.send(map[string]any{"type": "raise_hand", "raised": true})
	host.expect("hand") // the host is unaffected
	for _, a := range []string{"kick", "mute", "admit", "deny", "lock", "end", "record"} {
		if !h.auditHas("signal." + a + "/denied") {
			t.Errorf("no audit entry signal.%s/denied", a)
		}
	}
	// A viewer may not publish, but may receive.
	vic := h.dial("user:vic", room1)
	vic.join()
	vic.send(map[string]any{"type": "offer", "sdp": offerSDP("a", "v")})
	vic.expectError(codeForbidden)
	vic.send(map[string]any{"type": "offer", "sdp": recvOnlySDP})
	vic.expect("answer")
	// A member may not share the screen unless the role allows it: the
	// built-in member role does, so screen goes through.
	ann.send(map[string]any{"type": "offer", "sdp": offerSDP("a", "v"), "tracks": map[string]string{"v": "screen"}})
	ann.expect("answer")
	if !h.auditHas("signal.publish/denied") {
		t.Error("refused publish not audited")
	}
}

func TestModeratorMutesKicksAndEnds(t *testing.T) {
	h := newHarness(t, nil)
	h.bind("user:host", room1, rbac.RoleHost)
	h.bind("user:ann", room1, rbac.RoleRoomMember)
	host := h.dial("user:host", room1)
	host.join()
	ann := h.dial("user:ann", room1)
	aw := ann.join()
	annID := aw["participant_id"].(string)
	ann.send(map[string]any{"type": "offer", "sdp": offerSDP("a1", "v1")})
	ann.expect("answer")
	host.expect("track_published")
	host.send(map[string]any{"type": "mute", "participant": annID, "kind": "audio"})
	if u := host.expect("track_unpublished"); u["track_id"] != "a1" {
		t.Errorf("unpublished: %v", u)
	}
	if m := ann.expect("muted"); m["participant"] != annID || m["kind"] != "audio" {
		t.Errorf("muted: %v", m)
	}
	host.send(map[string]any{"type": "kick", "participant": annID})
	ann.expect("kicked")
	ann.expectClose(CloseNormal, 3*time.Second)
	host.expect("participant_left")
	// Kicked people come back to the lobby.
	ann2 := h.dial("user:ann", room1)
	ann2.send(map[string]any{"type": "join"})
	ann2.expect("lobby")

	host.send(map[string]any{"type": "end"})
	host.expect("ended")
	ann2.expect("ended")
	host.expectClose(CloseNormal, 3*time.Second)
	ann2.expectClose(CloseNormal, 3*time.Second)
	for _, a := range []string{"mute", "kick", "end"} {
		if !h.auditHas("signal." + a + "/success") {
			t.Errorf("no audit entry signal.%s/success", a)
		}
	}
	waitFor(t, "the room to go", func() bool { return h.hub.Stats() == Stats{} })
}

func TestRightsChangeReachesLiveSockets(t *testing.T) {
	h := newHarness(t, nil)
	h.bind("user:host", room1, rbac.RoleHost)
	h.bind("user:ann", room1, rbac.RoleRoomMember)
	host := h.dial("user:host", room1)
	hw := host.join()
	ann := h.dial("user:ann", room1)
	aw := ann.join()
	ann.send(map[string]any{"type": "offer", "sdp": offerSDP("a1", "v1")})
	ann.expect("answer")
	host.expect("track_published")
	host.expect("track_published")

	start := time.Now()
	h.bind("user:ann", room1, rbac.RoleViewer)
	p := ann.expect("permissions")
	if p["role"] != rbac.RoleViewer || strings.Contains(fmt.Sprint(p["permissions"]), rbac.ActRoomPublish) {
		t.Fatalf("permissions: %v", p)
	}
	host.expect("track_unpublished")
	host.expect("track_unpublished")
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("demotion took %v", d)
	}
	if pub := h.media.participant(aw["participant_id"].(string)).publish(); pub != (Publish{}) {
		t.Errorf("media publish rights after demotion: %+v", pub)
	}
	ann.send(map[string]any{"type": "offer", "sdp": offerSDP("a2", "v2")})
	ann.expectError(codeForbidden)

	// Losing the room closes the socket.
	if err := h.authz.RemoveFromRoom(context.Background(), "user:ann", room1); err != nil {
		t.Fatal(err)
	}
	ann.expect("kicked")
	ann.expectClose(ClosePolicy, 2*time.Second)
	host.expect("participant_left")
	_ = hw
}

func TestEndedSessionClosesSockets(t *testing.T) {
	h := newHarness(t, nil)
	h.bind("user:ann", room1, rbac.RoleRoomMember)
	h.bind("guest:g1", room1, rbac.RoleGuest)
	ann := h.dial("user:ann", room1)
	ann.join()
	g := h.dial("guest:g1", room1)
	g.join()
	h.endSession("s-ann")
	ann.expectClose(ClosePolicy, 2*time.Second)
	h.endSession("g1")
	g.expectClose(ClosePolicy, 2*time.Second)
}

// The keep-alive asks about each session once, however many sockets it
// has open, and still closes them all when it ends.
func TestKeepAliveAsksEachSessionOnce(t *testing.T) {
	h := newHarness(t, nil)
	h.bind("user:ann", room1, rbac.RoleRoomMember)
	h.bind("guest:g1", room1, rbac.RoleGuest)
	var anns []*client
	for i := 0; i < 3; i++ {
		c := h.dial("user:ann", room1)
		c.join()
		anns = append(anns, c)
	}
	g := h.dial("guest:g1", room1)
	g2 := h.dial("guest:g1", room1)
	asked := func() ([]string, []string) {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.askedSessions, h.askedGuests
	}
	waitFor(t, "a keep-alive with every socket open", func() bool {
		s, gs := asked()
		return len(s) > 0 && len(gs) > 0
	})
	if s, gs := asked(); fmt.Sprint(s) != "[s-ann]" || fmt.Sprint(gs) != "[g1]" {
		t.Errorf("KeepAlive asked about sessions %v and guests %v, want [s-ann] and [g1]", s, gs)
	}
	h.endSession("s-ann")
	for _, c := range anns {
		c.expectClose(ClosePolicy, 2*time.Second)
	}
	h.endSession("g1")
	g.expectClose(ClosePolicy, 2*time.Second)
	g2.expectClose(ClosePolicy, 2*time.Second)
}

func TestFloodMalformedAndPanic(t *testing.T) {
	h := newHarness(t, nil)
	h.bind("user:ann", room1, rbac.RoleRoomMember)
	h.bind("user:bob", room1, rbac.RoleRoomMember)
	bob := h.dial("user:bob", room1)
	bob.join()

	// Malformed messages get errors, then a close.
	ann := h.dial("user:ann", room1)
	for i := 0; i < 9; i++ {
		ann.send(`{"type":"nope"}`)
		ann.expectError(codeUnknownType)
	}
	ann.send(`{"type":"nope"}`)
	ann.expectClose(ClosePolicy, 3*time.Second)

	// A flood is throttled, then closed; bob stays responsive.
	flood := h.dial("user:ann", room1)
	flood.join()
	for i := 0; i < 400; i++ {
		if err := flood.ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"raise_hand","raised":true}`)); err != nil {
			break
		}
	}
	flood.expectError(codeRateLimited)
	flood.expectClose(ClosePolicy, 3*time.Second)
	bob.send(map[string]any{"type": "chat", "text": "still here"})
	bob.expect("chat")

	// A panic closes that socket only (1011), without its text.
	p := h.dial("user:ann", room1)
	p.join()
	p.send(map[string]any{"type": "offer", "sdp": "v=0 PANIC"})
	e := p.expectError(codeInternal)
	if strings.Contains(fmt.Sprint(e), "secret") {
		t.Errorf("panic text sent: %v", e)
	}
	p.expectClose(CloseInternal, 3*time.Second)
	p2 := h.dial("user:ann", room1)
	p2.join()
	p2.send(map[string]any{"type": "offer", "sdp": "v=0 BAD"})
	p2.expectError(codeBadSDP)
}

func TestCapsAndChurn(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxPerUser = 3 })
	h.bind("user:ann", room1, rbac.RoleRoomMember)
	var cs []*client
	for i := 0; i < 3; i++ {
		cs = append(cs, h.dial("user:ann", room1))
	}
	if _, err := h.tryDial("user:ann", room1); err == nil {
		t.Fatal("a fourth socket opened")
	}
	for _, c := range cs {
		c.ws.Close()
	}
	waitFor(t, "the sockets to go", func() bool { return h.hub.Stats() == Stats{} })
	for i := 0; i < 30; i++ {
		c := h.dial("user:ann", room1)
		c.join()
		c.send(map[string]any{"type": "leave"})
		c.expectClose(CloseNormal, 3*time.Second)
		// The client sees the close before the hub has counted the socket
		// out; with a cap of 3 the next dials could otherwise race it.
		waitFor(t, "the room to go", func() bool { return h.hub.Stats() == Stats{} })
	}
}

func TestJoinTimeoutAndMissedPongs(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.JoinTimeout = 300 * time.Millisecond; c.PingInterval = 200 * time.Millisecond })
	h.bind("user:ann", room1, rbac.RoleRoomMember)
	idle := h.dial("user:ann", room1)
	idle.expectClose(ClosePolicy, 2*time.Second)

	// A client that stops reading stops answering pings.
	q := "subject=user%3Aann&room=" + room1
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+h.addr+"/?"+q, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"join"}`))
	waitFor(t, "the silent socket to be closed", func() bool { return h.hub.Stats().Sockets == 0 })
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ICE servers: the welcome carries the ones minted for the participant's
// id, and before their credentials expire the hub sends fresh ones
// (ice_servers), again and again while the participant stays.
func TestICEServersRefresh(t *testing.T) {
	var mu sync.Mutex
	minted := map[string]int{}
	h := newHarness(t, func(c *Config) {
		c.ICEServers = func(pid string) ([]ICEServer, time.Time) {
			mu.Lock()
			defer mu.Unlock()
			minted[pid]++
			n := minted[pid]
			return []ICEServer{{URLs: []string{"turn:turn.example:3478?transport=udp"}, Username: fmt.Sprintf("%d:%s", n, pid), Credential: "secret"}},
				time.Now().Add(500 * time.Millisecond)
		}
	})
	h.bind("user:host", room1, rbac.RoleHost)
	host := h.dial("user:host", room1)
	w := host.join()
	pid := w["participant_id"].(string)
	ice := w["ice_servers"].([]any)
	if len(ice) != 1 || ice[0].(map[string]any)["username"] != "1:"+pid || ice[0].(map[string]any)["credential"] != "secret" {
		t.Fatalf("welcome ice_servers: %v", w["ice_servers"])
	}
	for want := 2; want <= 3; want++ {
		m := host.expect("ice_servers")
		got := m["ice_servers"].([]any)
		if len(got) != 1 || got[0].(map[string]any)["username"] != fmt.Sprintf("%d:%s", want, pid) {
			t.Fatalf("refresh %d: %v", want, m)
		}
	}
}

// Recording: a host starts it with record; everyone gets room_state
// recording:true, and someone joining later sees it in the welcome; the
// recorder is given this meeting's media and the participants' names;
// starting twice is refused; the REST path (SetRecording) stops it; the
// meeting's end stops a recording in progress; a member may not record
// (refused, audited, the recorder never asked); a recorder failure leaves
// the meeting unrecorded.
func TestRecording(t *testing.T) {
	rec := &fakeRecorder{}
	h := newHarness(t, func(c *Config) { c.Recorder = rec })
	h.bind("user:host", room1, rbac.RoleHost)
	h.bind("user:ann", room1, rbac.RoleRoomMember)
	host := h.dial("user:host", room1)
	hw := host.join()
	if hw["room"].(map[string]any)["recording"] != false {
		t.Fatalf("welcome: %v", hw["room"])
	}
	ann := h.dial("user:ann", room1)
	ann.join()

	ann.send(map[string]any{"type": "record", "action": "start"})
	ann.expectError(codeForbidden)
	if !h.auditHas("signal.record/denied") || len(rec.log()) != 0 {
		t.Fatalf("a member's record: audit or recorder %v", rec.log())
	}

	host.send(map[string]any{"type": "record", "action": "start"})
	for _, c := range []*client{host, ann} {
		if m := c.expect("room_state"); m["recording"] != true {
			t.Fatalf("room_state: %v", m)
		}
	}
	if got := rec.log(); len(got) != 1 || got[0] != "start "+room1+" user:host" {
		t.Fatalf("recorder calls %v", got)
	}
	if n := rec.nameOf(hw["participant_id"].(string)); n != "user:host" {
		t.Errorf("the recorder's name for the host: %q", n)
	}
	if !h.auditHas("recording.start/success") || !h.hub.Recording(room1) {
		t.Error("recording.start not audited, or Recording false")
	}
	late := h.dial("user:ann", room1)
	if lw := late.join(); lw["room"].(map[string]any)["recording"] != true {
		t.Errorf("a late joiner's welcome: %v", lw["room"])
	}
	host.send(map[string]any{"type": "record", "action": "start"})
	host.expectError(codeInvalid)
	host.send(map[string]any{"type": "record", "action": "pause"})
	host.expectError(codeBadMessage)

	if err := h.hub.SetRecording(room1, false, "user:host", "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	if m := ann.expect("room_state"); m["recording"] != false {
		t.Fatalf("room_state after stop: %v", m)
	}
	if err := h.hub.SetRecording(room1, false, "user:host", "127.0.0.1"); !errors.Is(err, ErrRecordingState) {
		t.Errorf("stopping twice: %v", err)
	}
	if err := h.hub.SetRecording("no-such-room", true, "user:host", "127.0.0.1"); !errors.Is(err, ErrNoMeeting) {
		t.Errorf("no meeting: %v", err)
	}

	// A recorder that fails: nothing changes.
	rec.mu.Lock()
	rec.fail = true
	rec.mu.Unlock()
	host.send(map[string]any{"type": "record", "action": "start"})
	host.expectError(codeInternal)
	if h.hub.Recording(room1) || !h.auditHas("recording.start/failure") {
		t.Error("a failed start left the meeting recording, or was not audited")
	}
	rec.mu.Lock()
	rec.fail = false
	rec.mu.Unlock()

	// The meeting ends while recording: the recording stops with it.
	host.send(map[string]any{"type": "record", "action": "start"})
	host.expect("room_state")
	host.send(map[string]any{"type": "end"})
	host.expect("ended")
	waitFor(t, "the recorder to be stopped", func() bool {
		l := rec.log()
		return len(l) == 4 && l[3] == "stop "+room1
	})
	if !h.auditHas("recording.stop/success") {
		t.Error("the automatic stop was not audited")
	}
}

// Live control from outside the meeting (the console): Live lists the
// meeting with its participants and the lobby; Mute and Kick act as the
// messages do (told to everyone, audited with the actor); End ends it;
// unknown rooms and participants are errors.
func TestLiveControl(t *testing.T) {
	h := newHarness(t, nil)
	h.bind("user:host", room1, rbac.RoleHost)
	h.bind("user:ann", room1, rbac.RoleRoomMember)
	host := h.dial("user:host", room1)
	host.join()
	ann := h.dial("user:ann", room1)
	aw := ann.join()
	annID := aw["participant_id"].(string)

	// Nobody is in the media plane before their first offer.
	live := h.hub.Live()
	if len(live) != 1 || len(live[0].Participants) != 2 || live[0].Participants[0].Media != nil || live[0].Participants[1].Media != nil {
		t.Fatalf("Live before any offer: %+v", live)
	}
	if h.media.participant(annID) != nil {
		t.Fatal("a PeerConnection was made before the first offer")
	}
	for _, c := range []*client{host, ann} {
		c.send(map[string]any{"type": "offer", "sdp": recvOnlySDP})
		c.expect("answer")
	}
	live = h.hub.Live()
	if len(live) != 1 || live[0].ID != room1 || len(live[0].Participants) != 2 {
		t.Fatalf("Live: %+v", live)
	}
	for _, p := range live[0].Participants {
		if p.InLobby || p.Subject == "" || p.Media.ConnectionState != "connected" {
			t.Errorf("participant %+v", p)
		}
	}
	if err := h.hub.Mute(room1, annID, "audio", "user:admin", "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	if m := host.expect("muted"); m["participant"] != annID || m["kind"] != "audio" {
		t.Errorf("muted: %v", m)
	}
	if h.media.participant(annID).stopped() != "audio" {
		t.Error("the media plane was not told to stop ann's audio")
	}
	if err := h.hub.Mute(room1, "nobody", "audio", "user:admin", ""); !errors.Is(err, ErrNoParticipant) {
		t.Errorf("mute nobody: %v", err)
	}
	if err := h.hub.Mute(room1, annID, "everything", "user:admin", ""); err == nil {
		t.Error("a bad kind was accepted")
	}
	if err := h.hub.Kick(room1, annID, "user:admin", "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	ann.expect("kicked")
	if m := host.expect("participant_left"); m["participant"] != annID {
		t.Errorf("participant_left: %v", m)
	}
	if err := h.hub.Kick("other-room", annID, "user:admin", ""); !errors.Is(err, ErrNoMeeting) {
		t.Errorf("kick in no meeting: %v", err)
	}
	for _, e := range []string{"signal.mute/success", "signal.kick/success"} {
		if !h.auditHas(e) {
			t.Errorf("no audit %s", e)
		}
	}
	if err := h.hub.End(room1, "user:admin", "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	host.expect("ended")
	waitFor(t, "the meeting to go", func() bool { return len(h.hub.Live()) == 0 })
	if !h.auditHas("signal.end/success") {
		t.Error("End was not audited")
	}
}

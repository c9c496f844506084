package signaling

import (
	"net/url"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/parley-meet/parley/rbac"
)

// goroutinesIn counts the goroutines whose stack mentions fn
// ("signaling.(*conn)." for any method of conn).
func goroutinesIn(fn string) int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, fn) {
			count++
		}
	}
	return count
}

// idleState reports, over the hub's sockets, how many have a writer
// running or messages queued.
func (h *harness) idleState() (writing, queued int) {
	h.hub.mu.Lock()
	defer h.hub.mu.Unlock()
	for p := range h.hub.parts {
		p.c.mu.Lock()
		if p.c.writing {
			writing++
		}
		if p.c.queue != nil {
			queued++
		}
		p.c.mu.Unlock()
	}
	return writing, queued
}

// An idle socket holds its reader and nothing else: no writer goroutine
// (one runs only while there is something to write), no queue and no write
// buffer. Traffic starts writers, which end when it is written.
func TestIdleSocketHoldsOnlyItsReader(t *testing.T) {
	const n = 12
	h := newHarness(t, func(c *Config) { c.MaxPerUser = n })
	h.bind("user:ann", room1, rbac.RoleRoomMember)
	var cs []*client
	for i := 0; i < n; i++ {
		c := h.dial("user:ann", room1)
		c.join()
		cs = append(cs, c)
	}
	idle := func(when string) {
		t.Helper()
		waitFor(t, "the writers to end "+when, func() bool {
			return goroutinesIn("signaling.(*conn).write(") == 0 && goroutinesIn("signaling.(*conn).pingNow(") == 0
		})
		if w, q := h.idleState(); w != 0 || q != 0 {
			t.Errorf("%s: %d sockets marked writing, %d with a queue", when, w, q)
		}
		if got := goroutinesIn("signaling.(*participant).readLoop("); got != n {
			t.Errorf("%s: %d readers, want %d", when, got, n)
		}
		if out := h.pool.out.Load(); out != 0 {
			t.Errorf("%s: %d write buffers held", when, out)
		}
	}
	idle("after the joins")
	cs[0].send(map[string]any{"type": "chat", "text": "hello"})
	for _, c := range cs {
		if m := c.expect("chat"); m["text"] != "hello" {
			t.Fatalf("chat: %v", m)
		}
	}
	idle("after a chat message to everyone")
}

// Pings go out every PingInterval on a socket that has nothing else to
// write, and a client that answers them stays open well past the
// two-and-a-half intervals a silent one is given.
func TestPingsKeepAnIdleSocketOpen(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.PingInterval = 40 * time.Millisecond })
	h.bind("user:ann", room1, rbac.RoleRoomMember)
	q := url.Values{"subject": {"user:ann"}, "room": {room1}, "name": {"ann"}}
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+h.addr+"/?"+q.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	var pings atomic.Int32
	ws.SetPingHandler(func(data string) error {
		pings.Add(1)
		return ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"join"}`)); err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 1)
	go func() {
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				ended <- err
				return
			}
		}
	}()
	waitFor(t, "ten pings", func() bool { return pings.Load() >= 10 })
	select {
	case err := <-ended:
		t.Fatalf("the socket ended: %v", err)
	default:
	}
	if s := h.hub.Stats(); s.Sockets != 1 {
		t.Errorf("stats %+v, want the socket open", s)
	}
	ws.Close()
	<-ended
}

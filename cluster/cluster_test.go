package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-meet/parley/internal/leakcheck"
)

// The tests run against a redis-server of their own on loopback (no
// persistence), started by TestMain; each test uses a key prefix of its
// own. Without redis-server they are skipped, unless
// PARLEY_TEST_REQUIRE_REDIS is set (make test sets it), when they fail.

var (
	redisAddr string
	redisBin  string
	redisCmd  *exec.Cmd
	redisMu   sync.Mutex
)

func TestMain(m *testing.M) {
	bin, err := exec.LookPath("redis-server")
	if err == nil {
		redisBin = bin
		l, lerr := net.Listen("tcp", "127.0.0.1:0")
		if lerr != nil {
			fmt.Fprintln(os.Stderr, lerr)
			os.Exit(1)
		}
		redisAddr = l.Addr().String()
		l.Close()
		if err := startRedis(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	stopRedis()
	if code == 0 {
		if err := leakcheck.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goroutines left running:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func startRedis() error {
	_, port, _ := net.SplitHostPort(redisAddr)
	cmd := exec.Command(redisBin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--logfile", "")
	if err := cmd.Start(); err != nil {
		return err
	}
	redisMu.Lock()
	redisCmd = cmd
	redisMu.Unlock()
	for i := 0; i < 200; i++ {
		c, err := net.DialTimeout("tcp", redisAddr, 100*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(25 * time.Millisecond)
	}
	return errors.New("redis-server did not start")
}

func stopRedis() {
	redisMu.Lock()
	defer redisMu.Unlock()
	if redisCmd != nil {
		redisCmd.Process.Kill()
		redisCmd.Wait()
		redisCmd = nil
	}
}

var prefixSeq atomic.Int64

// startNode starts a node on the test Redis under prefix, with fast
// refreshes; it is closed when the test ends.
func startNode(t *testing.T, prefix, id string, load func() int) *Node {
	t.Helper()
	if redisAddr == "" {
		if os.Getenv("PARLEY_TEST_REQUIRE_REDIS") != "" {
			t.Fatal("redis-server not found: install it (.ci/run does)")
		}
		t.Skip("redis-server not found")
	}
	n, err := Start(context.Background(), Options{RedisURL: "redis://" + redisAddr, ID: id, Capacity: 100, Load: load,
		Refresh: 100 * time.Millisecond, TTL: 300 * time.Millisecond, Prefix: prefix}, "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	return n
}

func newPrefix(t *testing.T) string {
	return fmt.Sprintf("t%d-%s:", prefixSeq.Add(1), t.Name())
}

// crash stops n as SIGKILL would: its registration and rooms stay in Redis
// until they expire, and nothing is said to anyone.
func (n *Node) crash() {
	if !n.closed.CompareAndSwap(false, true) {
		return
	}
	n.relay.mu.Lock()
	n.relay.stopped = true
	var sessions []*Session
	for _, s := range n.relay.sessions {
		sessions = append(sessions, s)
	}
	n.relay.mu.Unlock()
	for _, s := range sessions {
		s.end(&Closed{Code: 1006}) // the process is gone: its handlers end, silently
	}
	n.relay.handlers.Wait()
	close(n.relay.stopCh)
	<-n.relay.readDone
	<-n.relay.sendDone
	n.cancel()
	n.loops.Wait()
	n.rdb.Close()
}

func eventually(t *testing.T, d time.Duration, what string, f func() bool) {
	t.Helper()
	end := time.Now().Add(d)
	for !f() {
		if time.Now().After(end) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRegistry(t *testing.T) {
	p := newPrefix(t)
	a := startNode(t, p, "a", func() int { return 7 })
	b := startNode(t, p, "b", nil)
	nodes, err := a.Nodes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 2 || nodes[0].ID != "a" || nodes[0].Load != 7 || nodes[0].Capacity != 100 || nodes[1].ID != "b" {
		t.Fatalf("registry: %+v", nodes)
	}
	// The same id while a lives is refused.
	_, err = Start(context.Background(), Options{RedisURL: "redis://" + redisAddr, ID: "a", Prefix: p,
		Refresh: 100 * time.Millisecond, TTL: 300 * time.Millisecond}, "test")
	if !errors.Is(err, ErrIDInUse) {
		t.Fatalf("a second node a: %v, want ErrIDInUse", err)
	}
	// A crashed node leaves the registry when its registration expires.
	b.crash()
	eventually(t, time.Second, "b to leave the registry", func() bool {
		nodes, err := a.Nodes(context.Background())
		return err == nil && len(nodes) == 1 && !a.Live("b")
	})
}

func TestPlacementRaceHasOneOwner(t *testing.T) {
	p := newPrefix(t)
	nodes := []*Node{startNode(t, p, "a", nil), startNode(t, p, "b", nil), startNode(t, p, "c", nil)}
	ctx := context.Background()
	for i := range 20 {
		room := "room" + strconv.Itoa(i)
		owners := make([]string, 12)
		leases := make([]*Lease, 12)
		var wg sync.WaitGroup
		for j := range owners {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var err error
				owners[j], leases[j], err = nodes[j%3].Route(ctx, room)
				if err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		held := 0
		for j, o := range owners {
			if o != owners[0] {
				t.Fatalf("%s: owners %v disagree", room, owners)
			}
			if (leases[j] != nil) != (nodes[j%3].ID() == o) {
				t.Fatalf("%s: node %s got a lease %v, owner %s", room, nodes[j%3].ID(), leases[j] != nil, o)
			}
			if leases[j] != nil {
				held++
			}
		}
		for _, l := range leases {
			if l != nil {
				l.Release()
			}
		}
		if held != 4 {
			t.Fatalf("%s: %d leases, want 4", room, held)
		}
		// The last lease gives the room up.
		if o, err := nodes[0].Owner(ctx, room); err != nil || o != "" {
			t.Fatalf("%s after the meeting: owner %q, %v", room, o, err)
		}
	}
}

func TestPlacementLeastLoaded(t *testing.T) {
	p := newPrefix(t)
	var loadA atomic.Int64
	loadA.Store(50)
	a := startNode(t, p, "a", func() int { return int(loadA.Load()) })
	startNode(t, p, "b", func() int { return 10 })
	full := startNode(t, p, "c", func() int { return 100 }) // at capacity
	ctx := context.Background()
	owner, lease, err := a.Route(ctx, "r1")
	if err != nil || owner != "b" || lease != nil {
		t.Fatalf("route: %q %v %v, want b", owner, lease, err)
	}
	// While its owner lives, joins go there, whatever the loads.
	loadA.Store(0)
	eventually(t, time.Second, "a's load to be refreshed", func() bool {
		ns, _ := a.Nodes(ctx)
		return len(ns) == 3 && ns[0].Load == 0
	})
	if owner, _, _ := full.Route(ctx, "r1"); owner != "b" {
		t.Fatalf("a join of r1 went to %q, want its owner b", owner)
	}
	if owner, lease, _ := full.Route(ctx, "r2"); owner != "a" || lease != nil {
		t.Fatalf("a new room went to %q, want the least loaded, a", owner)
	}
}

func TestOwnerGoneRoomMoves(t *testing.T) {
	p := newPrefix(t)
	a := startNode(t, p, "a", nil)
	b := startNode(t, p, "b", nil)
	ctx := context.Background()
	owner, lease, err := a.Route(ctx, "r")
	if err != nil || owner != "a" || lease == nil {
		t.Fatalf("route: %q %v %v", owner, lease, err)
	}
	a.crash()
	if owner, _, _ := b.Route(ctx, "r"); owner != "a" {
		t.Fatalf("before a's registration expired the room went to %q", owner)
	}
	eventually(t, 2*time.Second, "the room to move to b", func() bool {
		owner, lease, err := b.Route(ctx, "r")
		if lease != nil {
			defer lease.Release()
		}
		return err == nil && owner == "b" && lease != nil
	})
}

func TestReconcile(t *testing.T) {
	p := newPrefix(t)
	a := startNode(t, p, "a", nil)
	startNode(t, p, "b", nil)
	lost := make(chan [2]string, 4)
	a.OnLost(func(room, owner string) { lost <- [2]string{room, owner} })
	ctx := context.Background()
	_, l1, _ := a.Claim(ctx, "r1")
	_, l2, _ := a.Claim(ctx, "r2")
	if l1 == nil || l2 == nil {
		t.Fatal("a did not get its rooms")
	}
	defer l1.Release()
	defer l2.Release()
	// Redis lost r1's key (a restart without persistence): a takes it
	// back. r2 was given to b meanwhile: a's meeting must end.
	a.rdb.Del(ctx, a.key("room:r1"))
	a.rdb.Set(ctx, a.key("room:r2"), "b", 0)
	select {
	case got := <-lost:
		if got != [2]string{"r2", "b"} {
			t.Fatalf("lost %v, want r2 to b", got)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the loss of r2 was not noticed")
	}
	eventually(t, time.Second, "r1 to be re-claimed", func() bool {
		o, err := a.Owner(ctx, "r1")
		return err == nil && o == "a"
	})
}

func TestRelaySession(t *testing.T) {
	p := newPrefix(t)
	a := startNode(t, p, "a", nil)
	b := startNode(t, p, "b", nil)
	c := startNode(t, p, "c", nil)
	served := make(chan string, 4)
	// b serves by echoing; c sends every session on to b.
	b.OnOpen(func(s *Session, payload []byte) {
		served <- "b:" + string(payload)
		s.Accept()
		for {
			mt, data, err := s.Recv()
			if err != nil {
				return
			}
			if string(data) == "bye" {
				s.Close(4000, "bye to you")
				return
			}
			s.Send(mt, data)
		}
	})
	c.OnOpen(func(s *Session, payload []byte) {
		served <- "c:" + string(payload)
		s.Moved("b")
	})
	s := a.Open("c", []byte("hello"))
	// Until the owner accepts, an edge keeps at most pendingMax messages.
	for i := range pendingMax {
		if !s.Send(TextMessage, []byte(strconv.Itoa(i))) {
			t.Fatalf("send %d before the accept refused", i)
		}
	}
	if _, data, err := s.Recv(); err != nil || string(data) != "0" {
		t.Fatalf("the first echo: %q %v", data, err)
	}
	// Both queues are bounded (a reader that falls sessionQueue behind is
	// closed), so the echoes are read while sending.
	const n = 2000
	read := make(chan error, 1)
	var got atomic.Int64
	go func() {
		for i := 1; i < n; i++ {
			got.Store(int64(i))
			_, data, err := s.Recv()
			if err != nil {
				read <- fmt.Errorf("message %d: %w", i, err)
				return
			}
			if string(data) != strconv.Itoa(i) {
				read <- fmt.Errorf("message %d came as %q: out of order", i, data)
				return
			}
		}
		read <- nil
	}()
	for i := pendingMax; i < n; i++ {
		if !s.Send(TextMessage, []byte(strconv.Itoa(i))) {
			t.Fatalf("send %d refused", i)
		}
		// At most a quarter of a session's queue in flight, so that
		// neither reader falls behind (a slow one is closed, 1008).
		for int64(i)-got.Load() > sessionQueue/4 {
			time.Sleep(time.Millisecond)
		}
	}
	if err := <-read; err != nil {
		t.Fatal(err)
	}
	if got := []string{<-served, <-served}; got[0] != "c:hello" || got[1] != "b:hello" {
		t.Fatalf("served %v, want c then b", got)
	}
	if s.Peer() != "b" {
		t.Fatalf("peer %q after the move, want b", s.Peer())
	}
	s.Send(TextMessage, []byte("bye"))
	_, _, err := s.Recv()
	var cl *Closed
	if !errors.As(err, &cl) || cl.Code != 4000 || cl.Text != "bye to you" {
		t.Fatalf("end: %v, want the owner's close 4000", err)
	}
	if e, o := a.Sessions(); e != 0 || o != 0 {
		t.Fatalf("a still counts %d edge, %d owner sessions", e, o)
	}
}

func TestRelayPeerGone(t *testing.T) {
	p := newPrefix(t)
	a := startNode(t, p, "a", nil)
	b := startNode(t, p, "b", nil)
	opened := make(chan *Session, 1)
	b.OnOpen(func(s *Session, _ []byte) {
		s.Accept()
		opened <- s
		for {
			if _, _, err := s.Recv(); err != nil {
				return
			}
		}
	})
	s := a.Open("b", []byte("x"))
	<-opened
	b.crash()
	start := time.Now()
	_, _, err := s.Recv()
	var cl *Closed
	if !errors.As(err, &cl) || cl.Code != CodeServiceRestart {
		t.Fatalf("after the owner crashed: %v, want 1012", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("noticed after %v", d)
	}
}

func TestRelayGapEndsSession(t *testing.T) {
	p := newPrefix(t)
	a := startNode(t, p, "a", nil)
	b := startNode(t, p, "b", nil)
	b.OnOpen(func(s *Session, _ []byte) {
		s.Accept()
		for {
			if _, _, err := s.Recv(); err != nil {
				return
			}
		}
	})
	s := a.Open("b", []byte("x"))
	// An entry numbered past the next one: entries were lost.
	s.mu.Lock()
	s.sendSeq += 5
	s.mu.Unlock()
	s.Send(TextMessage, []byte("after a gap"))
	_, _, err := s.Recv()
	var cl *Closed
	if !errors.As(err, &cl) || cl.Code != CodeInternal {
		t.Fatalf("after a gap: %v, want 1011 from the owner", err)
	}
}

func TestCall(t *testing.T) {
	p := newPrefix(t)
	a := startNode(t, p, "a", nil)
	b := startNode(t, p, "b", nil)
	b.Handle("echo", func(_ context.Context, body []byte) ([]byte, error) {
		if string(body) == "fail" {
			return nil, errors.New("it failed")
		}
		return append([]byte("echo "), body...), nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := a.Call(ctx, "b", "echo", []byte("hi"))
	if err != nil || string(out) != "echo hi" {
		t.Fatalf("call: %q %v", out, err)
	}
	var re *RemoteError
	if _, err := a.Call(ctx, "b", "echo", []byte("fail")); !errors.As(err, &re) || re.Msg != "it failed" {
		t.Fatalf("a failing call: %v", err)
	}
	if _, err := a.Call(ctx, "b", "nope", nil); !errors.As(err, &re) {
		t.Fatalf("an unknown method: %v", err)
	}
	short, cancel2 := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel2()
	if _, err := a.Call(short, "gone", "echo", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a call to no node: %v", err)
	}
}

func TestWatcher(t *testing.T) {
	p := newPrefix(t)
	a := startNode(t, p, "a", nil)
	b := startNode(t, p, "b", nil)
	wa, wb := a.Watcher(), b.Watcher()
	defer wa.Close()
	defer wb.Close()
	var gotA, gotB atomic.Int32
	wa.SetUpdateCallback(func(string) { gotA.Add(1) })
	wb.SetUpdateCallback(func(string) { gotB.Add(1) })
	// The subscriptions are made asynchronously: announce until b hears.
	eventually(t, 2*time.Second, "b to hear a's change", func() bool {
		if err := wa.Update(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
		return gotB.Load() > 0
	})
	if gotA.Load() != 0 {
		t.Errorf("a heard its own change %d times", gotA.Load())
	}
}

// TestRedisOutage stops Redis: a room hosted here is still served, a new
// one is refused, and everything comes back with Redis (empty, as after
// a restart without persistence).
func TestRedisOutage(t *testing.T) {
	p := newPrefix(t)
	a := startNode(t, p, "a", nil)
	ctx := context.Background()
	_, lease, err := a.Route(ctx, "kept")
	if err != nil || lease == nil {
		t.Fatalf("route: %v %v", lease, err)
	}
	defer lease.Release()
	stopRedis()
	eventually(t, 2*time.Second, "the node to notice", func() bool { return !a.Healthy() })
	if _, l, err := a.Route(ctx, "kept"); err != nil || l == nil {
		t.Fatalf("the hosted room during the outage: %v %v", l, err)
	} else {
		l.Release()
	}
	if _, _, err := a.Route(ctx, "new"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("a new room during the outage: %v, want ErrUnavailable", err)
	}
	if err := startRedis(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the node to recover", func() bool { return a.Healthy() })
	eventually(t, time.Second, "the hosted room to be re-claimed", func() bool {
		o, err := a.Owner(ctx, "kept")
		return err == nil && o == "a"
	})
	owner, l, err := a.Route(ctx, "new")
	if err != nil || owner != "a" || l == nil {
		t.Fatalf("a new room after the outage: %q %v %v", owner, l, err)
	}
	l.Release()
}

// An owner that is registered but does not answer (it has just died, and
// its registration has yet to expire) does not hold a client: the edge
// gives up after acceptTimeout.
func TestRelayOwnerSilent(t *testing.T) {
	p := newPrefix(t)
	a := startNode(t, p, "a", nil)
	ctx := context.Background()
	a.rdb.HSet(ctx, a.nodeKey("ghost"), "id", "ghost", "capacity", 100, "load", 0)
	a.rdb.PExpire(ctx, a.nodeKey("ghost"), time.Minute)
	defer a.rdb.Del(ctx, a.nodeKey("ghost"))
	start := time.Now()
	s := a.Open("ghost", []byte("x"))
	_, _, err := s.Recv()
	var cl *Closed
	if !errors.As(err, &cl) || cl.Code != CodeTryAgain {
		t.Fatalf("a silent owner: %v, want 1013", err)
	}
	if d := time.Since(start); d < acceptTimeout || d > acceptTimeout+time.Second {
		t.Errorf("gave up after %v, want about %v", d, acceptTimeout)
	}
}

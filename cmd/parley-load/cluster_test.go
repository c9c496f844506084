package main

// Multi-node integration tests (issue 11): three `parley serve` processes
// on 127.0.0.1, one Redis of the test's own and a fresh database in the
// machine's PostgreSQL, with Pion clients. Run inside unshare -n (make
// e2e), where PostgreSQL is reached over its Unix socket.

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parley-meet/parley/internal/syncbuf"
	"github.com/parley-meet/parley/recording"
)

var (
	clusterPG   = flag.String("cluster-pg", "", "PostgreSQL `URL` the cluster test creates its database with (reachable inside the test's network namespace: the Unix socket)")
	redisServer = flag.String("redis-server", "redis-server", "the redis-server `binary` the cluster test runs")
)

// testCluster is the processes of one cluster test.
type testCluster struct {
	t         *testing.T
	bin       string
	dir       string
	dbURL     string
	redisPort int
	redis     *exec.Cmd
	redisDone chan struct{}
	env       []string
	nodes     map[string]*clusterNode
	// ports are the nodes' HTTPS ports, chosen before any starts: every
	// node accepts sockets opened from any node's pages.
	ports map[string]int
}

// clusterURL is the public URL all the nodes share, as behind a load
// balancer: tokens and sessions name it, so they are good on every node.
const clusterURL = "https://meet.parley.test"

type clusterNode struct {
	id     string
	url    string
	cmd    *exec.Cmd
	logs   *syncBuffer
	exited chan struct{}
}

type syncBuffer = syncbuf.Buffer

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// newTestCluster makes the database and starts Redis; nodes are started
// with start.
func newTestCluster(ctx context.Context, t *testing.T) *testCluster {
	t.Helper()
	bin := *parleyBin
	if bin == "" {
		bin = os.Getenv("PARLEY_BIN")
	}
	if bin == "" || *clusterPG == "" {
		t.Skip("needs -parley-bin and -cluster-pg (make e2e gives both)")
	}
	rs, err := exec.LookPath(*redisServer)
	if err != nil {
		t.Fatalf("no redis-server (%v): install Debian's redis-server package (.ci/run does)", err)
	}
	c := &testCluster{t: t, bin: bin, dir: t.TempDir(), nodes: map[string]*clusterNode{}, ports: map[string]int{}}
	// A database of this test's own.
	admin, err := pgx.Connect(ctx, *clusterPG)
	if err != nil {
		t.Fatalf("PostgreSQL at -cluster-pg: %v", err)
	}
	db := "parley_cluster_" + randHex(6)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+db); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+db+" WITH (FORCE)"); err != nil {
			t.Logf("dropping %s: %v", db, err)
		}
		admin.Close(ctx)
	})
	u, _ := url.Parse(*clusterPG)
	u.Path = "/" + db
	c.dbURL = u.String()
	c.redisPort = freePort(t)
	c.redis = c.startRedis(rs)
	// Recordings: one directory and one age identity every node shares
	// (storage shared by the nodes, as in production).
	if _, err := recording.LoadOrCreateIdentity(c.dir); err != nil {
		t.Fatal(err)
	}
	key := make([]byte, 32)
	rand.Read(key)
	c.env = append(cleanEnv(), "PARLEY_SECRET_KEY="+base64.StdEncoding.EncodeToString(key), "PARLEY_TURN_SECRET="+randHex(32))
	t.Cleanup(func() {
		for _, n := range c.nodes {
			c.stop(n)
		}
		c.stopRedis()
	})
	return c
}

func (c *testCluster) redisURL() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", c.redisPort) }

// startRedis runs redis-server on c.redisPort without persistence (a
// restart loses everything, as a Redis that failed over would).
func (c *testCluster) startRedis(bin string) *exec.Cmd {
	c.t.Helper()
	cmd := exec.Command(bin, "--port", strconv.Itoa(c.redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", c.dir, "--logfile", "")
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	c.redisDone = done
	for i := 0; ; i++ {
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", c.redisPort), time.Second)
		if err == nil {
			conn.Close()
			return cmd
		}
		if i > 100 {
			c.t.Fatalf("redis-server did not start: %s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *testCluster) stopRedis() {
	if c.redis == nil {
		return
	}
	_ = c.redis.Process.Kill()
	<-c.redisDone
	c.redis = nil
}

// parley runs a parley subcommand against the cluster's database.
func (c *testCluster) parley(ctx context.Context, stdin string, args ...string) {
	c.t.Helper()
	cmd := exec.CommandContext(ctx, c.bin, append(args, "--database-url", c.dbURL, "--data-dir", c.dir, "--public-url", clusterURL, "--log-format", "json")...)
	cmd.Env = c.env
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		c.t.Fatalf("parley %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// plan chooses the HTTPS ports of the nodes to be started.
func (c *testCluster) plan(ids ...string) {
	for _, id := range ids {
		c.ports[id] = freePort(c.t)
	}
}

// start runs a node with id (planned) and waits until it is ready.
func (c *testCluster) start(ctx context.Context, id string) *clusterNode {
	c.t.Helper()
	port := c.ports[id]
	n := &clusterNode{id: id, url: fmt.Sprintf("https://127.0.0.1:%d", port), logs: &syncBuffer{}, exited: make(chan struct{})}
	var origins []string
	for _, p := range c.ports {
		origins = append(origins, fmt.Sprintf("https://127.0.0.1:%d", p))
	}
	dir := filepath.Join(c.dir, id)
	n.cmd = exec.Command(c.bin, "serve", "--data-dir", dir, "--listen", fmt.Sprintf("127.0.0.1:%d", port),
		"--public-url", clusterURL, "--ws-allowed-origins", strings.Join(origins, ","), "--database-url", c.dbURL, "--redis-url", c.redisURL(), "--node-id", id,
		"--media-udp-port", "0", "--media-tcp-port", "-1", "--turn=false", "--metrics-listen", "off",
		"--media-allowed-remote", "127.0.0.0/8", "--log-format", "json", "--log-level", "debug",
		"--recording-dir", filepath.Join(c.dir, "recordings"), "--recording-identity-file", filepath.Join(c.dir, "recording-identity.txt"))
	n.cmd.Env = c.env
	n.cmd.Stdout, n.cmd.Stderr = n.logs, n.logs
	if err := n.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	go func() { _ = n.cmd.Wait(); close(n.exited) }()
	c.nodes[id] = n
	waitReady(ctx, c.t, n.url, n.exited)
	return n
}

// stop ends a node (SIGINT, then SIGKILL), logging its output if the
// test failed.
func (c *testCluster) stop(n *clusterNode) {
	select {
	case <-n.exited:
	default:
		_ = n.cmd.Process.Signal(os.Interrupt)
		select {
		case <-n.exited:
		case <-time.After(15 * time.Second):
			_ = n.cmd.Process.Kill()
			<-n.exited
		}
	}
	if c.t.Failed() {
		c.t.Logf("node %s output:\n%s", n.id, tail(n.logs.String(), 60))
	}
	delete(c.nodes, n.id)
}

func tail(s string, lines int) string {
	ls := strings.Split(s, "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

// account signs in on node (enrolling TOTP at the first sign-in) and
// returns a client of node with a Bearer token.
func (c *testCluster) account(ctx context.Context, n *clusterNode, user string) (*api, string) {
	c.t.Helper()
	a := clusterAPI(n)
	tok, err := a.signIn(ctx, user, clusterPassword, "", filepath.Join(c.dir, user+".totp"))
	if err != nil {
		c.t.Fatalf("sign in %s on %s: %v", user, n.id, err)
	}
	return a, tok
}

const clusterPassword = "cluster-test-password-1"

// on is a client of node n with token.
func on(n *clusterNode, token string) *api { return clusterAPI(n).as(token) }

// clusterAPI is a client of node n whose requests come from the pages of
// the cluster's public URL, as a browser's behind the load balancer.
func clusterAPI(n *clusterNode) *api {
	a := newAPI(n.url, true)
	a.http.Transport = originRewriter{a.http.Transport}
	return a
}

type originRewriter struct{ next http.RoundTripper }

func (o originRewriter) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	if r.Header.Get("Origin") != "" {
		r.Header.Set("Origin", clusterURL)
	}
	return o.next.RoundTrip(r)
}

// liveOwner asks a node's live view which node runs room's meeting and
// how many are in it; "" when it is not in progress.
func liveOwner(ctx context.Context, a *api, room string) (node string, people int, err error) {
	var live struct {
		Rooms []struct {
			ID           string
			Node         string
			Participants []struct{ ID string }
		}
		Unreachable []string `json:"unreachable_nodes"`
	}
	if err := a.do(ctx, "GET", "/api/v1/admin/live", nil, &live); err != nil {
		return "", 0, err
	}
	found := 0
	for _, r := range live.Rooms {
		if r.ID == room {
			found++
			node, people = r.Node, len(r.Participants)
		}
	}
	if found > 1 {
		return "", 0, fmt.Errorf("room %s is in progress on %d nodes", room, found)
	}
	return node, people, nil
}

// received sums the packets st's clients received.
func received(st *stats) int64 {
	var n int64
	for _, s := range st.snapshot() {
		n += s.received
	}
	return n
}

func waitFor(t *testing.T, d time.Duration, what string, f func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !f() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start)
}

// socketEnd waits for the client name of st to report its socket's end
// and returns that error's text and how long it took.
func socketEnd(t *testing.T, st *stats, name string) (string, time.Duration) {
	t.Helper()
	var closed string
	d := waitFor(t, 10*time.Second, name+"'s socket to close", func() bool {
		st.mu.Lock()
		defer st.mu.Unlock()
		for _, e := range st.errs {
			if strings.HasPrefix(e, name+": socket:") {
				closed = e
				return true
			}
		}
		return false
	})
	return closed, d
}

func TestCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c := newTestCluster(ctx, t)
	c.parley(ctx, clusterPassword+"\n", "user", "add", "--username", "alice", "--role", "admin", "--password-stdin")
	c.parley(ctx, clusterPassword+"\n", "user", "add", "--username", "bob", "--password-stdin")
	c.parley(ctx, clusterPassword+"\n", "user", "add", "--username", "carol", "--password-stdin")
	c.parley(ctx, clusterPassword+"\n", "user", "add", "--username", "erin", "--password-stdin")
	// With no load anywhere, placement takes the first id: n1-b.
	c.plan("n2-a", "n1-b", "n3-c")
	a := c.start(ctx, "n2-a")
	b := c.start(ctx, "n1-b")
	cn := c.start(ctx, "n3-c")
	alice, aliceTok := c.account(ctx, a, "alice")
	_, bobTok := c.account(ctx, cn, "bob") // a session made on one node is good on every node
	_, carolTok := c.account(ctx, b, "carol")
	_, erinTok := c.account(ctx, a, "erin")
	room, err := alice.createRoom(ctx, "across nodes")
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"bob", "carol", "erin"} {
		if err := alice.do(ctx, "PUT", "/api/v1/rooms/"+room+"/members/"+u, map[string]string{"role": "member"}, nil); err != nil {
			t.Fatal(err)
		}
	}
	pion, err := newPionAPI()
	if err != nil {
		t.Fatal(err)
	}

	// Carol joins through B, which places the meeting there; bob through
	// A and alice through C are relayed to B; alice and bob exchange
	// media.
	stCarol, stBob, stAlice := &stats{}, &stats{}, &stats{}
	carolC, err := newClient(ctx, on(b, carolTok), pion, room, "carol", stCarol, clientOpts{media: true})
	if err != nil {
		t.Fatal(err)
	}
	defer carolC.close()
	bobC, err := newClient(ctx, on(a, bobTok), pion, room, "bob", stBob, clientOpts{media: true, video: true, audio: true, expect: true})
	if err != nil {
		t.Fatalf("bob through node A: %v", err)
	}
	defer bobC.close()
	aliceC, err := newClient(ctx, on(cn, aliceTok), pion, room, "alice", stAlice, clientOpts{media: true, video: true, audio: true, expect: true})
	if err != nil {
		t.Fatalf("alice through node C: %v", err)
	}
	defer aliceC.close()
	t.Run("media across nodes", func(t *testing.T) {
		d := waitFor(t, 20*time.Second, "alice and bob receive each other's audio and video", func() bool {
			return len(stAlice.snapshot()) >= 2 && len(stBob.snapshot()) >= 2 && received(stAlice) > 100 && received(stBob) > 100
		})
		t.Logf("media both ways after %v: alice got %d packets on %d tracks, bob %d on %d", d.Round(time.Millisecond),
			received(stAlice), len(stAlice.snapshot()), received(stBob), len(stBob.snapshot()))
		for _, via := range []*clusterNode{a, b, cn} {
			owner, people, err := liveOwner(ctx, on(via, aliceTok), room)
			if err != nil {
				t.Fatal(err)
			}
			if owner != "n1-b" || people != 3 {
				t.Errorf("node %s's live view: the meeting runs on %q with %d people; want n1-b with 3", via.id, owner, people)
			}
		}
		for _, st := range []*stats{stAlice, stBob, stCarol} {
			st.mu.Lock()
			if len(st.errs) > 0 {
				t.Errorf("client errors: %v", st.errs)
			}
			st.mu.Unlock()
		}
	})

	t.Run("role revoked through C stops publishing on B", func(t *testing.T) {
		// Bob's tracks are what alice receives; they flow now.
		flowing := received(stAlice)
		waitFor(t, 5*time.Second, "bob's media to flow to alice", func() bool { return received(stAlice) > flowing+20 })
		revoked := time.Now()
		if err := on(cn, aliceTok).do(ctx, "PUT", "/api/v1/rooms/"+room+"/members/bob", map[string]string{"role": "viewer"}, nil); err != nil {
			t.Fatal(err)
		}
		last, lastGrowth := received(stAlice), time.Now()
		for time.Since(lastGrowth) < 1500*time.Millisecond {
			if time.Since(revoked) > 10*time.Second {
				t.Fatal("alice still receives bob's media 10 s after the revocation")
			}
			time.Sleep(50 * time.Millisecond)
			if n := received(stAlice); n != last {
				last, lastGrowth = n, time.Now()
			}
		}
		stopped := lastGrowth.Sub(revoked)
		t.Logf("bob's last packet reached alice %v after the revocation request to node C was sent", stopped.Round(time.Millisecond))
		if stopped > 2*time.Second {
			t.Errorf("publishing stopped after %v, want within 2 s", stopped)
		}
		if received(stBob) == 0 {
			t.Error("bob received nothing")
		}
	})

	t.Run("disabling an account on C closes its socket relayed through A", func(t *testing.T) {
		if err := on(cn, aliceTok).do(ctx, "POST", "/api/v1/admin/users/bob/disable", map[string]any{}, nil); err != nil {
			t.Fatal(err)
		}
		// Bob's client reads its socket; its error is the close.
		closed, d := socketEnd(t, stBob, "bob")
		t.Logf("%v after the account was disabled: %s", d.Round(time.Millisecond), closed)
		if !strings.Contains(closed, "close 1008") {
			t.Errorf("bob's socket ended with %q, want close 1008", closed)
		}
	})

	t.Run("an operator's role change reaches every node at once", func(t *testing.T) {
		c.parley(ctx, "", "role", "define", "speaker", "room.join", "room.publish", "--redis-url", c.redisURL())
		if err := alice.do(ctx, "PUT", "/api/v1/rooms/"+room+"/members/erin", map[string]string{"role": "speaker"}, nil); err != nil {
			t.Fatal(err)
		}
		c.parley(ctx, "", "role", "define", "speaker", "room.join", "--redis-url", c.redisURL())
		start := time.Now()
		for _, n := range []*clusterNode{a, b, cn} {
			waitFor(t, 3*time.Second, "node "+n.id+" to apply the new definition", func() bool {
				var v struct {
					Room struct{ Permissions []string }
				}
				if err := on(n, erinTok).do(ctx, "GET", "/api/v1/rooms/"+room, nil, &v); err != nil {
					t.Fatal(err)
				}
				return !slices.Contains(v.Room.Permissions, "room.publish") && slices.Contains(v.Room.Permissions, "room.join")
			})
		}
		d := time.Since(start)
		t.Logf("every node applied the operator's change %v after the command", d.Round(time.Millisecond))
		if d > time.Second {
			t.Errorf("the change took %v to reach every node, want within 1 s", d)
		}
	})

	t.Run("signing out on one node closes the socket another node relays", func(t *testing.T) {
		var st stats
		erin, err := newClient(ctx, on(cn, erinTok), pion, room, "erin", &st, clientOpts{})
		if err != nil {
			t.Fatal(err)
		}
		defer erin.close()
		if err := on(a, erinTok).do(ctx, "POST", "/api/v1/auth/logout", map[string]any{}, nil); err != nil {
			t.Fatal(err)
		}
		closed, d := socketEnd(t, &st, "erin")
		t.Logf("%v after signing out through n2-a: %s", d.Round(time.Millisecond), closed)
		if !strings.Contains(closed, "close 1008") || d > 2*time.Second {
			t.Errorf("erin's socket through n3-c ended with %q after %v, want close 1008 within 2 s", closed, d)
		}
	})

	t.Run("sign-in throttling is shared", func(t *testing.T) {
		// Five failures are free, wherever they land; the sixth attempt
		// waits, on any node.
		nodes := []*clusterNode{a, b, cn, a, b}
		for i, n := range nodes {
			err := clusterAPI(n).do(ctx, "POST", "/api/v1/auth/login", map[string]string{"username": "carol", "password": "wrong password " + strconv.Itoa(i)}, nil)
			var ae *apiError
			if !errors.As(err, &ae) || ae.Status != 401 {
				t.Fatalf("failure %d on %s: %v, want 401", i+1, n.id, err)
			}
		}
		err := clusterAPI(cn).do(ctx, "POST", "/api/v1/auth/login", map[string]string{"username": "carol", "password": clusterPassword}, nil)
		var ae *apiError
		if !errors.As(err, &ae) || ae.Status != 429 {
			t.Fatalf("the sixth attempt, on n3-c: %v, want 429", err)
		}
	})

	t.Run("simultaneous first joins end in one owner", func(t *testing.T) {
		for i := range 4 {
			r, err := alice.createRoom(ctx, "race "+strconv.Itoa(i))
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			socks := make([]*sock, 2)
			errs := make([]error, 2)
			for j, n := range []*clusterNode{a, cn} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					s, err := dial(ctx, on(n, aliceTok), r)
					if err == nil {
						_, err = s.join("racer")
					}
					socks[j], errs[j] = s, err
				}()
			}
			wg.Wait()
			for j, err := range errs {
				if err != nil {
					t.Fatalf("race %d: join %d: %v", i, j, err)
				}
				defer socks[j].close()
			}
			owner, people, err := liveOwner(ctx, on(b, aliceTok), r)
			if err != nil {
				t.Fatal(err)
			}
			if owner == "" || people != 2 {
				t.Errorf("race %d: the meeting runs on %q with %d people, want one node with 2", i, owner, people)
			}
		}
	})

	t.Run("moderation and settings through any node", func(t *testing.T) {
		r, err := alice.createRoom(ctx, "moderated")
		if err != nil {
			t.Fatal(err)
		}
		s, err := dial(ctx, on(a, aliceTok), r)
		if err != nil {
			t.Fatal(err)
		}
		defer s.close()
		if _, err := s.join("moderated"); err != nil {
			t.Fatal(err)
		}
		owner, _, err := liveOwner(ctx, on(a, aliceTok), r)
		if err != nil || owner == "" {
			t.Fatalf("owner %q, %v", owner, err)
		}
		var other *clusterNode
		for _, n := range []*clusterNode{a, b, cn} {
			if n.id != owner {
				other = n
				break
			}
		}
		// The meeting runs elsewhere: the node asked must know it is in
		// progress.
		err = on(other, aliceTok).do(ctx, "PATCH", "/api/v1/rooms/"+r, map[string]any{"e2ee": true}, nil)
		var ae *apiError
		if !errors.As(err, &ae) || ae.Status != 409 || ae.Code != "meeting_in_progress" {
			t.Errorf("switching e2ee through %s during the meeting on %s: %v, want 409 meeting_in_progress", other.id, owner, err)
		}
		// A recording started through a node that does not run the
		// meeting runs where the meeting is; every node reports it.
		var rec struct{ Recording bool }
		if err := on(other, aliceTok).do(ctx, "POST", "/api/v1/rooms/"+r+"/recording", map[string]string{"action": "start"}, &rec); err != nil || !rec.Recording {
			t.Fatalf("starting a recording through %s: %v %+v", other.id, err, rec)
		}
		for _, n := range []*clusterNode{a, b, cn} {
			var view struct{ Room struct{ Recording bool } }
			if err := on(n, aliceTok).do(ctx, "GET", "/api/v1/rooms/"+r, nil, &view); err != nil || !view.Room.Recording {
				t.Errorf("node %s's view of the room: recording %v, %v", n.id, view.Room.Recording, err)
			}
		}
		if err := on(other, aliceTok).do(ctx, "POST", "/api/v1/rooms/"+r+"/end", map[string]any{}, nil); err != nil {
			t.Fatalf("ending the meeting through %s: %v", other.id, err)
		}
		_ = s.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			m, err := s.read()
			if err != nil {
				t.Fatalf("waiting for ended: %v", err)
			}
			if m["type"] == "ended" {
				break
			}
		}
		err = on(other, aliceTok).do(ctx, "POST", "/api/v1/rooms/"+r+"/end", map[string]any{}, nil)
		if !errors.As(err, &ae) || ae.Status != 409 || ae.Code != "no_meeting" {
			t.Errorf("ending it again: %v, want 409 no_meeting", err)
		}
	})

	t.Run("the owner is killed; a new join is placed elsewhere", func(t *testing.T) {
		_ = b.cmd.Process.Signal(syscall.SIGKILL)
		<-b.exited
		killed := time.Now()
		delete(c.nodes, b.id)
		var joinedVia *clusterNode
		for try := 0; ; try++ {
			via := []*clusterNode{a, cn}[try%2]
			s, err := dial(ctx, on(via, carolTok), room)
			if err == nil {
				_, err = s.join("carol again")
				if err == nil {
					defer s.close()
					joinedVia = via
					break
				}
				s.close()
			}
			if time.Since(killed) > 10*time.Second {
				t.Fatalf("no join succeeded within 10 s of the kill: %v", err)
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Logf("joined through %s %v after node n1-b was killed", joinedVia.id, time.Since(killed).Round(time.Millisecond))
		// Alice's socket, relayed through C to B, was closed with 1012
		// (join again) once B's registration expired.
		closed, _ := socketEnd(t, stAlice, "alice")
		if !strings.Contains(closed, "close 1012") {
			t.Errorf("alice's socket ended with %q, want close 1012", closed)
		}
		owner, _, err := liveOwner(ctx, on(a, aliceTok), room)
		if err != nil {
			t.Fatal(err)
		}
		if owner != "n2-a" && owner != "n3-c" {
			t.Errorf("the meeting runs on %q, want n2-a or n3-c", owner)
		}
	})

	t.Run("Redis down: meetings continue, placement refused, recovery", func(t *testing.T) {
		// A meeting on a, joined directly.
		r, err := alice.createRoom(ctx, "during the outage")
		if err != nil {
			t.Fatal(err)
		}
		var stPub, stSub stats
		pub, err := newClient(ctx, on(a, aliceTok), pion, r, "pub", &stPub, clientOpts{media: true, video: true, audio: true})
		if err != nil {
			t.Fatal(err)
		}
		defer pub.close()
		owner, _, err := liveOwner(ctx, on(a, aliceTok), r)
		if err != nil || owner == "" {
			t.Fatalf("the meeting's owner: %q, %v", owner, err)
		}
		host := c.nodes[owner]
		sub, err := newClient(ctx, on(host, aliceTok), pion, r, "sub", &stSub, clientOpts{media: true, expect: true})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.close()
		waitFor(t, 15*time.Second, "media before the outage", func() bool { return received(&stSub) > 50 })

		c.stopRedis()
		before := received(&stSub)
		time.Sleep(7 * time.Second) // past the registrations' expiry
		if after := received(&stSub); after-before < 100 {
			t.Errorf("the meeting on %s got %d packets during the outage, want it to go on", owner, after-before)
		}
		fresh, err := alice.createRoom(ctx, "placed after the outage")
		if err != nil {
			t.Fatal(err)
		}
		_, err = dial(ctx, on(host, aliceTok), fresh)
		if err == nil || !strings.Contains(err.Error(), "HTTP 503") {
			t.Errorf("a new placement during the outage: %v, want HTTP 503", err)
		}
		// A join to the meeting the node runs is still served.
		s, err := dial(ctx, on(host, aliceTok), r)
		if err == nil {
			_, err = s.join("late")
			s.close()
		}
		if err != nil {
			t.Errorf("joining the meeting %s runs during the outage: %v", owner, err)
		}

		rs, _ := exec.LookPath(*redisServer)
		c.redis = c.startRedis(rs)
		d := waitFor(t, 15*time.Second, "a placement after Redis came back", func() bool {
			s, err := dial(ctx, on(host, aliceTok), fresh)
			if err != nil {
				return false
			}
			defer s.close()
			_, err = s.join("after")
			return err == nil
		})
		t.Logf("placement works again %v after Redis restarted", d.Round(time.Millisecond))
		// Every node registers again within its refresh interval (2 s);
		// then the console sees the first meeting where it always was.
		waitFor(t, 5*time.Second, "the console to see the first meeting on "+owner+" again", func() bool {
			got, _, err := liveOwner(ctx, on(a, aliceTok), r)
			return err == nil && got == owner
		})
	})

	t.Run("placements are audited and the audit chain holds", func(t *testing.T) {
		type entry struct {
			Target  string
			Details map[string]any
		}
		find := func(action string) []entry {
			var page struct{ Entries []entry }
			if err := on(a, aliceTok).do(ctx, "GET", "/api/v1/admin/audit?limit=500&action="+action, nil, &page); err != nil {
				t.Fatal(err)
			}
			var out []entry
			for _, e := range page.Entries {
				if e.Target == "room:"+room {
					out = append(out, e)
				}
			}
			return out
		}
		if placed := find("cluster.room_placed"); len(placed) == 0 || placed[0].Details["owner"] != "n1-b" {
			t.Errorf("room placements %+v, want one on n1-b", placed)
		}
		moved := find("cluster.room_moved")
		if len(moved) != 1 || moved[0].Details["previous"] != "n1-b" {
			t.Errorf("room moves %+v, want one from n1-b", moved)
		}
		c.parley(ctx, "", "audit", "verify")
	})
}

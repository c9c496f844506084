package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/parley-meet/parley/audit"
)

// Defaults of Options.
const (
	DefaultRefresh = 2 * time.Second
	DefaultTTL     = 6 * time.Second
	DefaultPrefix  = "parley:"
)

// Errors of Route and Claim.
var (
	// ErrUnavailable: Redis cannot be reached, so no room can be placed
	// (rooms this node hosts keep being served).
	ErrUnavailable = errors.New("cluster: the coordination service (Redis) cannot be reached")
	// ErrNoNode: no live node has capacity left for another participant.
	ErrNoNode = errors.New("cluster: no live node can take the meeting")
	// ErrIDInUse: another live process is registered under this node id.
	ErrIDInUse = errors.New("cluster: another live node uses this node id")
)

// Options configure a Node.
type Options struct {
	RedisURL string
	// ID names the node; empty means a random one.
	ID string
	// Capacity is how many participants the node hosts before placement
	// passes it over.
	Capacity int
	// Media are the node's announced media addresses (for operators: the
	// registry shows them).
	Media []string
	// Load reports the participants in the meetings this node hosts. It
	// is called at each refresh and must not block.
	Load func() int
	// Audit receives placement and ownership changes; nil: none.
	Audit *audit.Log
	// Logger; nil discards.
	Logger *slog.Logger
	// Refresh and TTL are the registration's refresh interval and expiry
	// ([2 s] and [6 s]); tests shorten them.
	Refresh, TTL time.Duration
	// Prefix is put before every Redis key ([parley:]); deployments sharing
	// one Redis, and tests, use one each.
	Prefix string
}

// Info is a live node as the registry has it.
type Info struct {
	ID       string    `json:"id"`
	Media    []string  `json:"media"`
	Capacity int       `json:"capacity"`
	Load     int       `json:"load"`
	Started  time.Time `json:"started"`
	Version  string    `json:"version,omitempty"`
}

// Node is this process's membership of the cluster: its registration, the
// rooms it hosts, the signaling relay and the policy watcher. Close stops
// everything it started.
type Node struct {
	opts     Options
	id       string
	instance string // random per process: tells this registration from another using the same id
	rdb      *redis.Client
	log      *slog.Logger
	audit    *audit.Log
	started  time.Time
	version  string

	redisOK atomic.Bool // the last refresh reached Redis

	roomsMu sync.Mutex
	rooms   map[string]*roomState // rooms with a lock or a lease here
	onLost  func(roomID, owner string)

	live atomic.Pointer[map[string]bool] // node ids seen live at the last refresh

	relay *relay

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	loops  sync.WaitGroup
	closed atomic.Bool
}

// Start connects to Redis, registers the node and starts its loops. It
// fails if Redis cannot be reached at start (a configuration error) or
// another live process uses the same id.
func Start(ctx context.Context, opts Options, version string) (*Node, error) {
	redisLogOnce.Do(func() { redis.SetLogger(redisLogger{opts.Logger}) })
	ropts, err := redis.ParseURL(opts.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("cluster: --redis-url: %s", redactErr(err))
	}
	ropts.DialTimeout = 2 * time.Second
	ropts.ReadTimeout = 2 * time.Second
	ropts.WriteTimeout = 2 * time.Second
	ropts.MaxRetries = 1
	if opts.Refresh <= 0 {
		opts.Refresh = DefaultRefresh
	}
	if opts.TTL <= 0 {
		opts.TTL = DefaultTTL
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if opts.Capacity <= 0 {
		opts.Capacity = 1000
	}
	if opts.Load == nil {
		opts.Load = func() int { return 0 }
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	id := opts.ID
	if id == "" {
		id = "node-" + randomHex(6)
	}
	n := &Node{opts: opts, id: id, instance: randomHex(12), rdb: redis.NewClient(ropts),
		log: opts.Logger.With("component", "cluster", "node", id), audit: opts.Audit,
		started: time.Now(), version: version, rooms: map[string]*roomState{}}
	empty := map[string]bool{}
	n.live.Store(&empty)
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := n.rdb.Ping(pctx).Err(); err != nil {
		n.rdb.Close()
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, redactErr(err))
	}
	if err := n.claimID(pctx); err != nil {
		n.rdb.Close()
		return nil, err
	}
	n.redisOK.Store(true)
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.relay = newRelay(n)
	if err := n.relay.reset(pctx); err != nil {
		n.cancel()
		n.rdb.Close()
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, redactErr(err))
	}
	n.refresh(pctx)
	n.loops.Add(1)
	go n.refreshLoop()
	n.relay.start()
	n.record("cluster.node_join", "node:"+n.id, audit.Success, map[string]any{"capacity": opts.Capacity, "media": opts.Media})
	n.log.Info("joined the cluster", "capacity", opts.Capacity, "refresh", opts.Refresh, "ttl", opts.TTL)
	return n, nil
}

// ID is this node's id.
func (n *Node) ID() string { return n.id }

// Healthy reports whether the last refresh reached Redis.
func (n *Node) Healthy() bool { return n.redisOK.Load() }

// Close ends every relayed session, stops the loops, removes the node
// from the registry (its rooms are placed anew at their next join) and
// closes the Redis client. Calling it again does nothing.
func (n *Node) Close() {
	if !n.closed.CompareAndSwap(false, true) {
		return
	}
	n.relay.stop() // sessions first: their close entries go out while Redis is still ours
	n.cancel()
	n.loops.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	n.roomsMu.Lock()
	var hosted []string
	for id, rs := range n.rooms {
		if rs.leases > 0 {
			hosted = append(hosted, id)
		}
	}
	n.roomsMu.Unlock()
	for _, id := range hosted {
		releaseScript.Run(ctx, n.rdb, []string{n.key("room:" + id)}, n.id)
	}
	n.deregister(ctx)
	n.record("cluster.node_leave", "node:"+n.id, audit.Success, nil)
	n.rdb.Close()
}

// key is a Redis key of this deployment.
func (n *Node) key(s string) string { return n.opts.Prefix + s }

func (n *Node) nodeKey(id string) string { return n.key("node:" + id) }

// claimID makes sure no other live process is registered as n.id; a
// registration of the same id by a process that has gone (its key has not
// yet expired) is waited out, up to the TTL.
func (n *Node) claimID(ctx context.Context) error {
	deadline := time.Now().Add(n.opts.TTL + time.Second)
	for {
		inst, err := n.rdb.HGet(ctx, n.nodeKey(n.id), "instance").Result()
		if errors.Is(err, redis.Nil) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %v", ErrUnavailable, redactErr(err))
		}
		if inst == n.instance {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: %q (choose another --node-id, or stop the other process)", ErrIDInUse, n.id)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %q", ErrIDInUse, n.id)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// refreshLoop renews the registration every Refresh, checks that the rooms
// hosted here are still this node's, and notes which nodes live.
func (n *Node) refreshLoop() {
	defer n.loops.Done()
	t := time.NewTicker(n.opts.Refresh)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(n.ctx, n.opts.Refresh)
			n.refresh(ctx)
			cancel()
		}
	}
}

// refresh is one round of refreshLoop.
func (n *Node) refresh(ctx context.Context) {
	err := n.register(ctx)
	if err == nil {
		err = n.readLive(ctx)
	}
	if err == nil {
		err = n.reconcile(ctx)
	}
	was := n.redisOK.Swap(err == nil)
	switch {
	case err != nil && was:
		n.log.Error("cluster: Redis unavailable: rooms hosted here keep being served, new placements are refused", "err", redactErr(err))
		n.record("cluster.redis_down", "node:"+n.id, audit.Failure, nil)
	case err == nil && !was:
		n.log.Info("cluster: Redis reachable again")
		n.record("cluster.redis_up", "node:"+n.id, audit.Success, nil)
	}
	if err == nil {
		n.relay.checkPeers(*n.live.Load())
	}
}

// register writes the node's record with a fresh expiry.
func (n *Node) register(ctx context.Context) error {
	media := strings.Join(n.opts.Media, ",")
	_, err := n.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, n.nodeKey(n.id), "id", n.id, "instance", n.instance, "media", media,
			"capacity", n.opts.Capacity, "load", n.opts.Load(), "started", n.started.UnixMilli(), "version", n.version)
		p.PExpire(ctx, n.nodeKey(n.id), n.opts.TTL)
		p.SAdd(ctx, n.key("nodes"), n.id)
		p.PExpire(ctx, n.relay.inbox(n.id), inboxTTL)
		return nil
	})
	return err
}

// deregister removes the node's record at a clean shutdown.
func (n *Node) deregister(ctx context.Context) {
	n.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, n.nodeKey(n.id), n.relay.inbox(n.id))
		p.SRem(ctx, n.key("nodes"), n.id)
		return nil
	})
}

// readLive notes the ids of the nodes whose registration lives.
func (n *Node) readLive(ctx context.Context) error {
	nodes, err := n.Nodes(ctx)
	if err != nil {
		return err
	}
	live := make(map[string]bool, len(nodes))
	for _, x := range nodes {
		live[x.ID] = true
	}
	n.live.Store(&live)
	return nil
}

// Nodes lists the live nodes, sorted by id. Registrations that have
// expired are dropped from the set on the way.
func (n *Node) Nodes(ctx context.Context) ([]Info, error) {
	ids, err := n.rdb.SMembers(ctx, n.key("nodes")).Result()
	if err != nil {
		return nil, err
	}
	slices.Sort(ids)
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	_, err = n.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.HGetAll(ctx, n.nodeKey(id))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]Info, 0, len(ids))
	var gone []any
	for i, c := range cmds {
		m := c.Val()
		if len(m) == 0 {
			gone = append(gone, ids[i])
			continue
		}
		capacity, _ := strconv.Atoi(m["capacity"])
		load, _ := strconv.Atoi(m["load"])
		started, _ := strconv.ParseInt(m["started"], 10, 64)
		info := Info{ID: ids[i], Capacity: capacity, Load: load, Started: time.UnixMilli(started).UTC(), Version: m["version"]}
		if m["media"] != "" {
			info.Media = strings.Split(m["media"], ",")
		}
		out = append(out, info)
	}
	if len(gone) > 0 {
		n.rdb.SRem(ctx, n.key("nodes"), gone...)
	}
	return out, nil
}

// Live reports whether node id was registered at the last refresh.
func (n *Node) Live(id string) bool { return (*n.live.Load())[id] }

// record writes an audit event as the system; a failure is logged.
func (n *Node) record(action, target, outcome string, details map[string]any) {
	if n.audit == nil {
		return
	}
	if details == nil {
		details = map[string]any{}
	}
	details["node"] = n.id
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := n.audit.Record(ctx, audit.Event{Actor: "system", Action: action, Target: target, Outcome: outcome, Details: details}); err != nil {
		n.log.Error("cluster: audit record failed", "action", action, "err", err)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// redactErr is err's text without anything that could carry the Redis
// password (go-redis errors name the address, never the URL, but a
// parse error may quote it).
func redactErr(err error) string {
	s := err.Error()
	if i := strings.Index(s, "@"); i >= 0 {
		if j := strings.Index(s, "://"); j >= 0 && j < i {
			s = s[:j+3] + "…" + s[i:]
		}
	}
	return s
}

var redisLogOnce sync.Once

// redisLogger sends go-redis's own messages (reconnection attempts) to
// the process log at debug level: the outage itself is reported once by
// the refresh loop.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	if l.log != nil {
		l.log.Debug("redis client", "msg", redactErr(fmt.Errorf(format, v...)))
	}
}

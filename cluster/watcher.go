package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/casbin/casbin/v2/persist"
	"github.com/redis/go-redis/v9"
)

// PolicyWatcher is a Casbin watcher (persist.Watcher) over Redis pub/sub:
// a node that changed the authorization policy in the database calls
// Update, and every other node's callback runs (rbac reloads the policy
// and re-checks its live sessions). Messages carry the sender's id, so a
// node does not reload its own change.
//
// Pub/sub delivers to whoever is subscribed at the moment: a node cut off
// from Redis misses changes. The server's periodic refresh (which compares
// the stored policy with the one in memory) covers that.
type PolicyWatcher struct {
	n       *Node
	channel string

	mu       sync.Mutex
	callback func(string)

	stop context.CancelFunc
	done chan struct{}
}

var _ persist.Watcher = (*PolicyWatcher)(nil)

// Watcher subscribes to the policy channel and returns the watcher; Close
// (or the node's Close) stops it.
func (n *Node) Watcher() *PolicyWatcher {
	ctx, cancel := context.WithCancel(n.ctx)
	w := &PolicyWatcher{n: n, channel: n.key("policy"), stop: cancel, done: make(chan struct{})}
	ps := n.rdb.Subscribe(ctx, w.channel)
	go func() {
		defer close(w.done)
		defer ps.Close()
		ch := ps.Channel(redisChannelOptions()...)
		for {
			select {
			case <-ctx.Done():
				return
			case m, ok := <-ch:
				if !ok {
					return
				}
				from, _, _ := strings.Cut(m.Payload, " ")
				if from == n.id {
					continue
				}
				w.mu.Lock()
				cb := w.callback
				w.mu.Unlock()
				if cb != nil {
					cb(m.Payload)
				}
			}
		}
	}()
	return w
}

// SetUpdateCallback sets the function run when another node changed the
// policy.
func (w *PolicyWatcher) SetUpdateCallback(f func(string)) error {
	w.mu.Lock()
	w.callback = f
	w.mu.Unlock()
	return nil
}

// Update tells the other nodes that the policy changed.
func (w *PolicyWatcher) Update() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return w.n.rdb.Publish(ctx, w.channel, w.n.id+" policy").Err()
}

// Close stops the subscription and waits for it.
func (w *PolicyWatcher) Close() {
	w.stop()
	<-w.done
}

// redisChannelOptions keep the subscription's buffer small and notice a
// dead connection within seconds (it is then re-established).
func redisChannelOptions() []redis.ChannelOption {
	return []redis.ChannelOption{redis.WithChannelSize(64), redis.WithChannelHealthCheckInterval(3 * time.Second)}
}

// Announcer tells the nodes of a cluster that the stored policy changed,
// for a process that is not a node (`parley user`, `parley role`). It is a
// persist.Watcher that only announces.
type Announcer struct {
	rdb     *redis.Client
	channel string
}

var _ persist.Watcher = (*Announcer)(nil)

// NewAnnouncer connects to the cluster's Redis (no request is made until
// Update).
func NewAnnouncer(redisURL string) (*Announcer, error) {
	opts, err := redis.ParseURL(redisURL)
	if err != nil {
		return nil, fmt.Errorf("cluster: --redis-url: %s", redactErr(err))
	}
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout, opts.MaxRetries = 2*time.Second, 2*time.Second, 2*time.Second, 1
	return &Announcer{rdb: redis.NewClient(opts), channel: DefaultPrefix + "policy"}, nil
}

// SetUpdateCallback does nothing: an announcer hears nothing.
func (a *Announcer) SetUpdateCallback(func(string)) error { return nil }

// Update announces a change to every node.
func (a *Announcer) Update() error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := a.rdb.Publish(ctx, a.channel, "operator policy").Err(); err != nil {
		return errors.New(redactErr(err))
	}
	return nil
}

// Close closes the connection.
func (a *Announcer) Close() { a.rdb.Close() }

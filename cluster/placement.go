package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/parley-meet/parley/audit"
)

// A room's meeting runs on one node, its owner, named by the key
// room:<id>. The owner holds it while its registration lives; a join
// whose room has no live owner places it. Every change of the key is one
// Lua script, so two nodes racing cannot both own a room.
//
// On a node, the rooms it hosts are counted in leases: one per socket or
// relayed session of the room. When the last lease goes, the node gives
// the room up (compare-and-delete), so that the next meeting is placed on
// the least-loaded node. Route, Claim and the release take the room's
// local lock around their Redis step, so a release cannot remove an
// ownership a new lease has just relied on.

// ownScript decides a room's owner. ARGV: node-key prefix, this node,
// mode ("place": pick the least-loaded live node with capacity left;
// "claim": this node). It returns {owner|false, outcome, previous} where
// outcome is "kept" (a live owner exists), "taken" (claim: a live other
// node owns it), "placed" (no owner before), "moved" (the owner had gone),
// or "none" (place: no node can take it).
var ownScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur and redis.call('EXISTS', ARGV[1] .. cur) == 1 then
  if ARGV[3] == 'claim' and cur ~= ARGV[2] then return {cur, 'taken', cur} end
  return {cur, 'kept', cur}
end
local best = nil
if ARGV[3] == 'claim' then
  best = ARGV[2]
else
  local bestScore = nil
  for _, id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
    local v = redis.call('HMGET', ARGV[1] .. id, 'load', 'capacity')
    if v[1] then
      local load, cap = tonumber(v[1]) or 0, tonumber(v[2]) or 0
      if cap > 0 and load < cap then
        local score = load / cap
        if best == nil or score < bestScore or (score == bestScore and id < best) then
          best, bestScore = id, score
        end
      end
    else
      redis.call('SREM', KEYS[2], id)
    end
  end
  if best == nil then return {false, 'none', cur or ''} end
end
redis.call('SET', KEYS[1], best)
if redis.call('EXISTS', ARGV[1] .. best) == 1 then
  redis.call('HINCRBY', ARGV[1] .. best, 'load', 1)
end
if cur then return {best, 'moved', cur} end
return {best, 'placed', ''}
`)

// releaseScript deletes a room's ownership if this node (ARGV[1]) holds it.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// reconcileScript checks the rooms a node hosts (KEYS) against their keys:
// for each, "ok" (this node, ARGV[2], owns it), "reclaimed" (no live owner:
// now this node again, e.g. after Redis lost its data) or the id of the
// live node that owns it now.
var reconcileScript = redis.NewScript(`
local out = {}
for i, k in ipairs(KEYS) do
  local cur = redis.call('GET', k)
  if cur == ARGV[2] then
    out[i] = 'ok'
  elseif cur and redis.call('EXISTS', ARGV[1] .. cur) == 1 then
    out[i] = cur
  else
    redis.call('SET', k, ARGV[2])
    out[i] = 'reclaimed'
  end
end
return out
`)

// roomState is what this node keeps of a room: a lock for its ownership
// steps and the number of leases.
type roomState struct {
	mu     sync.Mutex
	users  int // callers holding or waiting for mu
	leases int // guarded by n.roomsMu
}

// lockRoom takes the room's local lock; unlock gives it back.
func (n *Node) lockRoom(roomID string) (rs *roomState, unlock func()) {
	n.roomsMu.Lock()
	rs = n.rooms[roomID]
	if rs == nil {
		rs = &roomState{}
		n.rooms[roomID] = rs
	}
	rs.users++
	n.roomsMu.Unlock()
	rs.mu.Lock()
	return rs, func() {
		rs.mu.Unlock()
		n.roomsMu.Lock()
		rs.users--
		if rs.users == 0 && rs.leases == 0 {
			delete(n.rooms, roomID)
		}
		n.roomsMu.Unlock()
	}
}

// Lease is a hold on a room hosted by this node; Release gives it back.
type Lease struct {
	n    *Node
	room string
	once sync.Once
}

// Release gives the lease back; the last one of a room gives the room up.
// Calling it again does nothing.
func (l *Lease) Release() {
	l.once.Do(func() { l.n.release(l.room) })
}

// newLeaseLocked counts a lease of roomID; its lock is held.
func (n *Node) newLeaseLocked(rs *roomState, roomID string) *Lease {
	n.roomsMu.Lock()
	rs.leases++
	n.roomsMu.Unlock()
	return &Lease{n: n, room: roomID}
}

// hostsLocked reports whether this node holds leases of the room.
func (n *Node) hostsLocked(rs *roomState) bool {
	n.roomsMu.Lock()
	defer n.roomsMu.Unlock()
	return rs.leases > 0
}

// Route decides where a join of roomID goes: to this node (a lease is
// returned, to be released when the socket ends) or to another (its id).
// The room is placed when it has no live owner. Without Redis, a room this
// node hosts is still served here; any other is refused (ErrUnavailable).
func (n *Node) Route(ctx context.Context, roomID string) (owner string, lease *Lease, err error) {
	return n.own(ctx, roomID, "place")
}

// Claim makes this node the room's owner unless another live node owns it
// (its id is returned, no lease). It is how a node accepts a session
// relayed to it.
func (n *Node) Claim(ctx context.Context, roomID string) (owner string, lease *Lease, err error) {
	return n.own(ctx, roomID, "claim")
}

func (n *Node) own(ctx context.Context, roomID, mode string) (string, *Lease, error) {
	rs, unlock := n.lockRoom(roomID)
	defer unlock()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	res, err := ownScript.Run(ctx, n.rdb, []string{n.key("room:" + roomID), n.key("nodes")}, n.key("node:"), n.id, mode).Slice()
	if err != nil {
		if n.hostsLocked(rs) {
			return n.id, n.newLeaseLocked(rs, roomID), nil // keep serving what runs here
		}
		n.log.Warn("cluster: cannot place a room", "room", roomID, "err", redactErr(err))
		return "", nil, fmt.Errorf("%w: %v", ErrUnavailable, redactErr(err))
	}
	if len(res) != 3 {
		return "", nil, errors.New("cluster: unexpected placement reply")
	}
	outcome, _ := res[1].(string)
	prev, _ := res[2].(string)
	if outcome == "none" {
		return "", nil, ErrNoNode
	}
	owner, _ := res[0].(string)
	switch outcome {
	case "placed":
		n.record("cluster.room_placed", "room:"+roomID, audit.Success, map[string]any{"owner": owner})
	case "moved":
		n.record("cluster.room_moved", "room:"+roomID, audit.Success, map[string]any{"owner": owner, "previous": prev, "reason": "the previous owner's registration expired"})
	}
	if owner != n.id {
		return owner, nil, nil
	}
	return owner, n.newLeaseLocked(rs, roomID), nil
}

// release drops one lease of roomID; the last one gives the room up.
func (n *Node) release(roomID string) {
	rs, unlock := n.lockRoom(roomID)
	defer unlock()
	n.roomsMu.Lock()
	rs.leases--
	last := rs.leases == 0
	n.roomsMu.Unlock()
	if !last || n.closed.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	deleted, err := releaseScript.Run(ctx, n.rdb, []string{n.key("room:" + roomID)}, n.id).Int()
	if err != nil {
		// The key stays: joins keep coming here while this node lives,
		// which is right; it goes with the registration otherwise.
		n.log.Warn("cluster: could not give up an empty room", "room", roomID, "err", redactErr(err))
		return
	}
	if deleted == 1 {
		n.record("cluster.room_released", "room:"+roomID, audit.Success, map[string]any{"reason": "the meeting ended"})
	}
}

// OnLost sets the function called when a room hosted here turns out to be
// owned by another live node (this node was taken for gone, e.g. cut off
// from Redis, and the room was placed anew): the meeting here must end, so
// that there is one. It is called from the refresh loop and must not block
// for long.
func (n *Node) OnLost(f func(roomID, owner string)) {
	n.roomsMu.Lock()
	n.onLost = f
	n.roomsMu.Unlock()
}

// reconcile checks that the rooms hosted here are still this node's.
func (n *Node) reconcile(ctx context.Context) error {
	n.roomsMu.Lock()
	var ids, keys []string
	for id, rs := range n.rooms {
		if rs.leases > 0 {
			ids = append(ids, id)
			keys = append(keys, n.key("room:"+id))
		}
	}
	lost := n.onLost
	n.roomsMu.Unlock()
	if len(keys) == 0 {
		return nil
	}
	res, err := reconcileScript.Run(ctx, n.rdb, keys, n.key("node:"), n.id).StringSlice()
	if err != nil {
		return err
	}
	for i, r := range res {
		switch r {
		case "ok":
		case "reclaimed":
			n.log.Info("cluster: re-claimed a hosted room whose ownership was missing", "room", ids[i])
			n.record("cluster.room_reclaimed", "room:"+ids[i], audit.Success, nil)
		default:
			n.log.Warn("cluster: a hosted room is owned by another node; ending the meeting here", "room", ids[i], "owner", r)
			n.record("cluster.room_lost", "room:"+ids[i], audit.Failure, map[string]any{"owner": r})
			if lost != nil {
				lost(ids[i], r)
			}
		}
	}
	return nil
}

// Owner reads the room's owner: its id, or "" when the room has no live
// owner.
func (n *Node) Owner(ctx context.Context, roomID string) (string, error) {
	cur, err := n.rdb.Get(ctx, n.key("room:"+roomID)).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrUnavailable, redactErr(err))
	}
	if cur == n.id || n.Live(cur) {
		return cur, nil
	}
	// Not live at the last refresh: perhaps it joined since.
	live, err := n.rdb.Exists(ctx, n.nodeKey(cur)).Result()
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrUnavailable, redactErr(err))
	}
	if live == 1 {
		return cur, nil
	}
	return "", nil
}

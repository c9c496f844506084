package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"

	"github.com/parley-meet/parley/audit"
	"github.com/parley-meet/parley/cluster"
	"github.com/parley-meet/parley/config"
	"github.com/parley-meet/parley/rbac"
	"github.com/parley-meet/parley/sfu"
	"github.com/parley-meet/parley/signaling"
)

// joinCluster registers this process as a node of the cluster of
// --redis-url and connects the authorization policy to the other nodes.
// Redis must be reachable at start (exit 2 otherwise: a configuration
// error); later outages are survived (docs/operations.md).
func joinCluster(ctx context.Context, cfg *config.Config, media *sfu.SFU, hub *signaling.Hub, authz *rbac.Authorizer,
	auditLog *audit.Log, log *slog.Logger, e env) (*cluster.Node, int) {
	// The announced media address: what ICE candidates carry.
	udp := media.UDPAddr()
	addrs := []string{udp.String()}
	if len(cfg.MediaPublicIPs) > 0 {
		addrs = addrs[:0]
		for _, a := range cfg.MediaPublicIPs {
			addrs = append(addrs, net.JoinHostPort(a.String(), strconv.Itoa(udp.Port)))
		}
	}
	node, err := cluster.Start(ctx, cluster.Options{
		RedisURL: cfg.RedisURL, ID: cfg.NodeID, Capacity: cfg.NodeCapacity, Media: addrs,
		Load: func() int { return hub.Stats().Sockets }, Audit: auditLog, Logger: log,
	}, version())
	switch {
	case errors.Is(err, cluster.ErrUnavailable):
		fmt.Fprintf(e.stderr, "parley: invalid value for option --redis-url (PARLEY_REDIS_URL): %v\n", err)
		return nil, 2
	case errors.Is(err, cluster.ErrIDInUse):
		fmt.Fprintf(e.stderr, "parley: invalid value for option --node-id (PARLEY_NODE_ID): %v\n", err)
		return nil, 2
	case err != nil:
		fmt.Fprintf(e.stderr, "parley: %v\n", err)
		return nil, 2
	}
	if err := authz.SetWatcher(node.Watcher()); err != nil {
		node.Close()
		fmt.Fprintf(e.stderr, "parley: policy watcher: %v\n", err)
		return nil, 1
	}
	return node, 0
}

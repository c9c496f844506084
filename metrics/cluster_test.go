package metrics_test

import (
	"context"
	"errors"
	"testing"

	"github.com/parley-meet/parley/cluster"
	"github.com/parley-meet/parley/metrics"
	"github.com/parley-meet/parley/signaling"
)

type fakeNode struct {
	healthy bool
	nodes   []cluster.Info
}

func (f *fakeNode) ID() string    { return "node-b" }
func (f *fakeNode) Healthy() bool { return f.healthy }
func (f *fakeNode) Nodes(context.Context) ([]cluster.Info, error) {
	if !f.healthy {
		return nil, errors.New("redis down")
	}
	return f.nodes, nil
}
func (f *fakeNode) Sessions() (int, int) { return 3, 5 }

func TestClusterCollector(t *testing.T) {
	reg := metrics.New("v1")
	node := &fakeNode{healthy: true, nodes: []cluster.Info{{ID: "node-a", Load: 12, Capacity: 100}, {ID: "node-b", Load: 40, Capacity: 500}}}
	reg.SetNode(node)
	// A node's own sockets: 6 participants here, 2 of them relayed from
	// other nodes, and 3 sockets held here for meetings elsewhere.
	reg.AddHub(&fakeHub{stats: signaling.Stats{Rooms: 1, Sockets: 6, Remote: 2, Relayed: 3}})
	f := families(t, reg.Gatherer())
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"parley_node_info", []string{"node=node-b"}, 1},
		{"parley_cluster_redis_up", nil, 1},
		{"parley_cluster_nodes", nil, 2},
		{"parley_cluster_node_participants", []string{"node=node-a"}, 12},
		{"parley_cluster_node_participants", []string{"node=node-b"}, 40},
		{"parley_cluster_node_capacity", []string{"node=node-b"}, 500},
		{"parley_cluster_relay_sessions", []string{"side=edge"}, 3},
		{"parley_cluster_relay_sessions", []string{"side=owner"}, 5},
		{"parley_websocket_connections", nil, 7},
	} {
		if got := sample(t, f, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// Redis down: it says so, and the registry's series are left out.
	node.healthy = false
	f = families(t, reg.Gatherer())
	if got := sample(t, f, "parley_cluster_redis_up"); got != 0 {
		t.Errorf("redis_up %v during an outage", got)
	}
	if _, ok := f["parley_cluster_node_participants"]; ok {
		t.Error("node loads reported while the registry cannot be read")
	}
}

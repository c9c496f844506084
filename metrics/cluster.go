package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/parley-meet/parley/cluster"
)

// ClusterSource is this process's cluster membership (*cluster.Node).
type ClusterSource interface {
	ID() string
	Healthy() bool
	Nodes(ctx context.Context) ([]cluster.Info, error)
	Sessions() (edge, owner int)
}

var (
	nodeInfoDesc = desc("node_info",
		"Always 1; the node label is this process's id in the cluster (multi-node mode). Every other series of this endpoint is this node's own.", "node")
	clusterRedisDesc = desc("cluster_redis_up",
		"1 when this node's last registry refresh reached Redis, 0 otherwise (new meetings cannot be placed).")
	clusterNodesDesc = desc("cluster_nodes",
		"Nodes registered in the cluster, as this node reads the registry.")
	clusterLoadDesc = desc("cluster_node_participants",
		"Participants in the meetings each live node hosts, from the registry (refreshed every 2 s).", "node")
	clusterCapacityDesc = desc("cluster_node_capacity",
		"Participants each live node takes before placement passes it over.", "node")
	clusterRelayDesc = desc("cluster_relay_sessions",
		"Signaling sessions relayed between nodes: side edge (this node holds the client's socket) or owner (this node runs the meeting).", "side")
)

// SetNode adds the cluster's series: which node this is, Redis reachability,
// and every live node's load and capacity.
func (r *Registry) SetNode(src ClusterSource) { r.reg.MustRegister(&clusterCollector{src: src}) }

type clusterCollector struct{ src ClusterSource }

func (c *clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{nodeInfoDesc, clusterRedisDesc, clusterNodesDesc, clusterLoadDesc, clusterCapacityDesc, clusterRelayDesc} {
		ch <- d
	}
}

func (c *clusterCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(nodeInfoDesc, 1, c.src.ID())
	up := 0.0
	if c.src.Healthy() {
		up = 1
	}
	gauge(clusterRedisDesc, up)
	edge, owner := c.src.Sessions()
	gauge(clusterRelayDesc, float64(edge), "edge")
	gauge(clusterRelayDesc, float64(owner), "owner")
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	nodes, err := c.src.Nodes(ctx)
	if err != nil {
		return // Redis down: cluster_redis_up says so
	}
	gauge(clusterNodesDesc, float64(len(nodes)))
	for _, n := range nodes {
		gauge(clusterLoadDesc, float64(n.Load), n.ID)
		gauge(clusterCapacityDesc, float64(n.Capacity), n.ID)
	}
}

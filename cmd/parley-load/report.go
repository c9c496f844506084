package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"time"
)

// Report is a run's result (the -json file).
type Report struct {
	Scenario string  `json:"scenario"`
	Date     string  `json:"date"`
	Room     string  `json:"room"`
	N        int     `json:"n"`
	K        int     `json:"k"`
	RoomSize int     `json:"room_size,omitempty"` // idle-ws: sockets per room (0: one room)
	Rooms    int     `json:"rooms,omitempty"`
	Rate     float64 `json:"rate_per_s"`
	WarmupS  float64 `json:"warmup_s"`
	WindowS  float64 `json:"window_s"` // the measured steady window

	ClientsOK     int `json:"clients_ok"`
	ClientsFailed int `json:"clients_failed"`

	Tracks          int      `json:"tracks_received"`
	PacketsReceived int64    `json:"packets_received"`
	PacketsExpected int64    `json:"packets_expected"`
	ForwardedPPS    float64  `json:"forwarded_pps"`
	VideoPPS        float64  `json:"forwarded_video_pps"`
	LossPercent     float64  `json:"loss_percent"`
	LatencyUS       *latQ    `json:"latency_us,omitempty"`
	JoinKind        string   `json:"join_kind,omitempty"`
	JoinMS          *joinQ   `json:"join_ms,omitempty"`
	ChatSent        int      `json:"chat_sent,omitempty"`
	ChatReceived    int64    `json:"chat_received,omitempty"`
	ChatLatencyUS   *latQ    `json:"chat_latency_us,omitempty"`
	Server          srvRep   `json:"server"` // several nodes: their sum, per copy over all copies
	Generator       genRep   `json:"generator"`
	Valid           bool     `json:"valid"`
	InvalidReason   string   `json:"invalid_reason,omitempty"`
	Errors          []string `json:"errors,omitempty"`

	// Nodes: one per -url, in order (one for a single server).
	Nodes []nodeRep `json:"nodes"`
	// CopiesByNode: the copies were attributed to the nodes whose meetings
	// forwarded them (a single node, or every room's node known).
	CopiesByNode bool `json:"copies_by_node"`
	// Join times (as join_ms) of the clients whose socket reached their
	// meeting's node and of those relayed to it (several nodes only).
	JoinDirectMS  *joinQ `json:"join_direct_ms,omitempty"`
	JoinRelayedMS *joinQ `json:"join_relayed_ms,omitempty"`
}

type latQ struct {
	P50     float64 `json:"p50"`
	P99     float64 `json:"p99"`
	P999    float64 `json:"p99_9"`
	Samples uint64  `json:"samples"`
}

type joinQ struct {
	P50     float64 `json:"p50"`
	P99     float64 `json:"p99"`
	Max     float64 `json:"max"`
	Samples int     `json:"samples"`
}

type perCopy struct {
	User   float64 `json:"user"`
	Kernel float64 `json:"kernel"`
	Total  float64 `json:"total"`
}

type srvRep struct {
	CPUUserS        float64  `json:"cpu_user_s"`
	CPUSystemS      float64  `json:"cpu_system_s"`
	CPUPercent      float64  `json:"cpu_percent"` // of one core
	CPUUSPerCopy    *perCopy `json:"cpu_us_per_copy,omitempty"`
	RSSBeforeKiB    int64    `json:"rss_before_kib"`
	RSSAfterKiB     int64    `json:"rss_after_kib"`
	RSSPerClientKiB float64  `json:"rss_per_client_kib"`
	RSSPerClientOf  string   `json:"rss_per_client_of,omitempty"`
}

// nodeRep is one node's figures. Its clients are the sockets that dialed
// its URL; the meetings it runs are those placed on it (by the servers)
// and take the packets of every client in them, whichever node that
// client's socket reached (a relayed socket: its node passes the
// signaling on to the room's node; media goes to the room's node
// directly).
type nodeRep struct {
	URL string `json:"url"`
	ID  string `json:"id,omitempty"` // the node's id (its live view; several nodes only)
	PID string `json:"pid,omitempty"`

	Clients    int `json:"clients"`         // the run's clients whose socket dialed this node
	Relayed    int `json:"relayed_clients"` // of them, in a meeting another node runs
	RoomsOwned int `json:"rooms"`           // the run's rooms whose meeting runs here
	Hosted     int `json:"clients_hosted"`  // the run's clients in those meetings

	// Copies is what the meetings here forwarded to the run's clients in
	// the window (copies_by_node only).
	Copies       int64    `json:"copies"`
	CPUUserS     float64  `json:"cpu_user_s"`
	CPUSystemS   float64  `json:"cpu_system_s"`
	CPUUS        float64  `json:"cpu_user_us"` // the same in µs
	CPUSysUS     float64  `json:"cpu_system_us"`
	CPUPercent   float64  `json:"cpu_percent"` // of one core
	CPUShare     float64  `json:"cpu_share"`   // of all the nodes' CPU in the window, 0 to 1
	CPUUSPerCopy *perCopy `json:"cpu_us_per_copy,omitempty"`
	RSSBeforeKiB int64    `json:"rss_before_kib"`
	RSSAfterKiB  int64    `json:"rss_after_kib"`
}

// clientPlace is where a client is: the node its socket dialed, its room.
type clientPlace struct {
	node int
	room string
	join time.Duration // its join time (0: none measured)
}

// placeClients counts each node's clients, the relayed ones (their
// room's meeting runs on another node), the rooms it runs and the clients
// in them, and with several nodes the join times of direct and relayed
// clients. ids are the nodes' ids and owner each room's node id; unknown
// (empty or missing) rooms count as neither relayed nor hosted.
func (r *Report) placeClients(places []clientPlace, ids []string, owner map[string]string) {
	var direct, relayed []time.Duration
	defer func() {
		if len(r.Nodes) > 1 {
			r.JoinDirectMS, r.JoinRelayedMS = joinQuantiles(direct), joinQuantiles(relayed)
		}
	}()
	index := map[string]int{}
	for i, id := range ids {
		if id != "" {
			index[id] = i
		}
	}
	for i := range r.Nodes {
		r.Nodes[i].Clients, r.Nodes[i].Relayed, r.Nodes[i].RoomsOwned, r.Nodes[i].Hosted = 0, 0, 0, 0
		if i < len(ids) {
			r.Nodes[i].ID = ids[i]
		}
	}
	single := len(r.Nodes) == 1
	rooms := map[string]bool{}
	for _, p := range places {
		if p.node < 0 || p.node >= len(r.Nodes) {
			continue
		}
		r.Nodes[p.node].Clients++
		at, ok := index[owner[p.room]]
		if single {
			at, ok = 0, true
		}
		if !ok {
			continue
		}
		r.Nodes[at].Hosted++
		if at != p.node {
			r.Nodes[p.node].Relayed++
		}
		if p.join > 0 && at != p.node {
			relayed = append(relayed, p.join)
		} else if p.join > 0 {
			direct = append(direct, p.join)
		}
		if !rooms[p.room] {
			rooms[p.room] = true
			r.Nodes[at].RoomsOwned++
		}
	}
}

// copiesByNode adds up the copies received in each room by the node that
// runs it; nil when a room that received media has no known node.
func copiesByNode(byRoom map[string]int64, ids []string, owner map[string]string) []int64 {
	out := make([]int64, len(ids))
	for room, n := range byRoom {
		if n == 0 {
			continue
		}
		i := slices.Index(ids, owner[room])
		if owner[room] == "" || i < 0 {
			return nil
		}
		out[i] += n
	}
	return out
}

// serverCPU fills the servers' CPU figures for a window of wall seconds:
// cpu[i] is node i's CPU in the window (nil: not measured), copies[i] the
// copies its meetings forwarded (nil: not attributed), recv all the copies
// received. The server figures are the sum over the nodes, per copy over
// all copies.
func (r *Report) serverCPU(cpu []*cpuTimes, copies []int64, recv int64, wall float64) {
	s := &r.Server
	s.CPUUserS, s.CPUSystemS, s.CPUPercent, s.CPUUSPerCopy = 0, 0, 0, nil
	measured := false
	for _, c := range cpu {
		if c != nil {
			measured = true
			s.CPUUserS += c.User
			s.CPUSystemS += c.System
		}
	}
	if !measured {
		return
	}
	s.CPUPercent = (s.CPUUserS + s.CPUSystemS) / wall * 100
	s.CPUUSPerCopy = copyCost(s.CPUUserS, s.CPUSystemS, recv)
	r.CopiesByNode = copies != nil
	total := s.CPUUserS + s.CPUSystemS
	for i := range r.Nodes {
		n := &r.Nodes[i]
		n.Copies, n.CPUUSPerCopy = 0, nil
		n.CPUUserS, n.CPUSystemS, n.CPUUS, n.CPUSysUS, n.CPUPercent, n.CPUShare = 0, 0, 0, 0, 0, 0
		if copies != nil {
			n.Copies = copies[i]
		}
		c := cpu[i]
		if c == nil {
			continue
		}
		n.CPUUserS, n.CPUSystemS = c.User, c.System
		n.CPUUS, n.CPUSysUS = c.User*1e6, c.System*1e6
		n.CPUPercent = c.Total() / wall * 100
		if total > 0 {
			n.CPUShare = c.Total() / total
		}
		if copies != nil {
			n.CPUUSPerCopy = copyCost(c.User, c.System, copies[i])
		}
	}
}

// copyCost is CPU seconds in µs per copy (nil for no copies).
func copyCost(user, system float64, copies int64) *perCopy {
	if copies <= 0 {
		return nil
	}
	return &perCopy{User: user * 1e6 / float64(copies), Kernel: system * 1e6 / float64(copies),
		Total: (user + system) * 1e6 / float64(copies)}
}

type genRep struct {
	CPUS        float64 `json:"cpu_s"`
	Cores       int     `json:"cores"`
	LoadPerCore float64 `json:"load_per_core"` // cpu_s / window_s / cores; > 0.8: invalid
}

func quantiles(h *Hist) *latQ {
	n := h.Count()
	if n == 0 {
		return nil
	}
	return &latQ{P50: h.Quantile(0.5), P99: h.Quantile(0.99), P999: h.Quantile(0.999), Samples: n}
}

func (r *Report) writeJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func ms(us float64) string {
	if math.IsNaN(us) {
		return "-"
	}
	return fmt.Sprintf("%.2f ms", us/1000)
}

func (r *Report) printSummary(w io.Writer) {
	fmt.Fprintf(w, "scenario %s  n=%d k=%d  window %.1f s (warm-up %.1f s)  clients %d ok, %d failed\n",
		r.Scenario, r.N, r.K, r.WindowS, r.WarmupS, r.ClientsOK, r.ClientsFailed)
	if r.Rooms > 1 && r.RoomSize > 0 {
		fmt.Fprintf(w, "  %d rooms of up to %d\n", r.Rooms, r.RoomSize)
	} else if r.Rooms > 1 {
		fmt.Fprintf(w, "  %d rooms at once, each as above\n", r.Rooms)
	}
	if r.Tracks > 0 || r.PacketsReceived > 0 {
		fmt.Fprintf(w, "  forwarded %.0f packets/s (video %.0f) over %d tracks, loss %.3f %%\n", r.ForwardedPPS, r.VideoPPS, r.Tracks, r.LossPercent)
	}
	if l := r.LatencyUS; l != nil {
		fmt.Fprintf(w, "  one-way latency p50 %s  p99 %s  p99.9 %s  (%d samples)\n", ms(l.P50), ms(l.P99), ms(l.P999), l.Samples)
	}
	if j := r.JoinMS; j != nil {
		fmt.Fprintf(w, "  join (%s) p50 %.0f ms  p99 %.0f ms  max %.0f ms  (%d)\n", r.JoinKind, j.P50, j.P99, j.Max, j.Samples)
	}
	for _, j := range []struct {
		what string
		q    *joinQ
	}{{"socket on the meeting's node", r.JoinDirectMS}, {"socket relayed to it", r.JoinRelayedMS}} {
		if j.q != nil {
			fmt.Fprintf(w, "    %s: p50 %.0f ms  p99 %.0f ms  max %.0f ms  (%d)\n", j.what, j.q.P50, j.q.P99, j.q.Max, j.q.Samples)
		}
	}
	if l := r.ChatLatencyUS; l != nil {
		fmt.Fprintf(w, "  chat: %d sent, %d received; fan-out latency p50 %s  p99 %s\n", r.ChatSent, r.ChatReceived, ms(l.P50), ms(l.P99))
	}
	s := r.Server
	if s.RSSAfterKiB > 0 {
		what := "server"
		if len(r.Nodes) > 1 {
			what = fmt.Sprintf("all %d nodes:", len(r.Nodes))
		}
		fmt.Fprintf(w, "  %s CPU user %.2f s, kernel %.2f s (%.0f %% of a core)", what, s.CPUUserS, s.CPUSystemS, s.CPUPercent)
		if c := s.CPUUSPerCopy; c != nil {
			fmt.Fprintf(w, "; per forwarded copy %.2f µs user + %.2f µs kernel = %.2f µs", c.User, c.Kernel, c.Total)
		}
		fmt.Fprintf(w, "\n  %s RSS %d → %d KiB", what, s.RSSBeforeKiB, s.RSSAfterKiB)
		if s.RSSPerClientOf != "" {
			fmt.Fprintf(w, " (%.0f KiB per %s)", s.RSSPerClientKiB, s.RSSPerClientOf)
		}
		fmt.Fprintln(w)
	}
	if len(r.Nodes) > 1 {
		for _, n := range r.Nodes {
			r.printNode(w, n)
		}
	}
	g := r.Generator
	fmt.Fprintf(w, "  generator CPU %.2f s on %d core(s): %.0f %% per core\n", g.CPUS, g.Cores, g.LoadPerCore*100)
	if !r.Valid {
		fmt.Fprintf(w, "  INVALID: %s\n", r.InvalidReason)
	}
	if len(r.Errors) > 0 {
		fmt.Fprintf(w, "  %d errors, first: %s\n", len(r.Errors), strings.Join(r.Errors[:min(3, len(r.Errors))], "; "))
	}
}

// printNode prints one node's line.
func (r *Report) printNode(w io.Writer, n nodeRep) {
	id := n.ID
	if id == "" {
		id = "?"
	}
	fmt.Fprintf(w, "  node %s %s", id, n.URL)
	if n.PID != "" {
		fmt.Fprintf(w, " (pid %s)", n.PID)
	}
	fmt.Fprintf(w, ": %d clients dialed it (%d relayed to another node); runs %d room(s) with %d clients", n.Clients, n.Relayed, n.RoomsOwned, n.Hosted)
	if n.RSSAfterKiB > 0 {
		fmt.Fprintf(w, "; CPU user %.2f s, kernel %.2f s (%.0f %% of a core, %.0f %% of the nodes' CPU)", n.CPUUserS, n.CPUSystemS, n.CPUPercent, n.CPUShare*100)
		if c := n.CPUUSPerCopy; c != nil {
			fmt.Fprintf(w, ", %.2f µs per copy of its %d (%.2f user + %.2f kernel)", c.Total, n.Copies, c.User, c.Kernel)
		}
		fmt.Fprintf(w, "; RSS %d → %d KiB", n.RSSBeforeKiB, n.RSSAfterKiB)
	}
	fmt.Fprintln(w)
}

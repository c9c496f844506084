package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parley-meet/parley/signaling"
	"github.com/parley-meet/parley/turn"
)

// HubSource is the signaling hub (*signaling.Hub).
type HubSource interface {
	Stats() signaling.Stats
	Live() []signaling.LiveRoom
}

// TURNSource is the embedded TURN server (*turn.Server).
type TURNSource interface {
	Stats() turn.Stats
}

// RecordingSource is the recorder (*recording.Manager).
type RecordingSource interface {
	ActiveCount() int
}

var (
	meetingsDesc = desc("meetings",
		"Meetings in progress (someone is in the meeting or its lobby).")
	meetingParticipantsDesc = desc("meeting_participants",
		"People in meetings in progress (state meeting) or waiting in a lobby (state lobby).", "state")
	websocketsDesc = desc("websocket_connections",
		"Open signaling WebSocket connections this node holds, joined or not yet (in multi-node mode, those relayed to another node's meeting included).")

	turnAllocationsDesc = desc("turn_allocations",
		"TURN allocations (relays) active now.")
	turnAllocationsTotalDesc = desc("turn_allocations_total",
		"TURN allocations made since the start.")
	turnRefusalsDesc = desc("turn_refusals_total",
		"TURN requests refused: auth (bad or expired credentials), permission (peer address refused by policy), "+
			"quota (per participant or server allocation limits), connections (TCP/TLS connections over the limit).", "reason")
	turnPeerDropsDesc = desc("turn_peer_drops_total",
		"Relayed datagrams to or from a refused peer address that were dropped.")
	turnRelayedBytesDesc = desc("turn_relayed_bytes_total",
		"Payload bytes relayed: received from peers (direction in) or sent to peers (direction out).", "direction")

	recordingsDesc = desc("recordings_active", "Recordings in progress.")
)

// hubCollector reads the signaling hub at scrape time.
type hubCollector struct{ src HubSource }

func (c *hubCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- meetingsDesc
	ch <- meetingParticipantsDesc
	ch <- websocketsDesc
}

func (c *hubCollector) Collect(ch chan<- prometheus.Metric) {
	live := c.src.Live()
	var inMeeting, inLobby int
	for _, r := range live {
		for _, p := range r.Participants {
			if p.InLobby {
				inLobby++
			} else {
				inMeeting++
			}
		}
	}
	ch <- prometheus.MustNewConstMetric(meetingsDesc, prometheus.GaugeValue, float64(len(live)))
	ch <- prometheus.MustNewConstMetric(meetingParticipantsDesc, prometheus.GaugeValue, float64(inMeeting), "meeting")
	ch <- prometheus.MustNewConstMetric(meetingParticipantsDesc, prometheus.GaugeValue, float64(inLobby), "lobby")
	st := c.src.Stats()
	ch <- prometheus.MustNewConstMetric(websocketsDesc, prometheus.GaugeValue, float64(st.Sockets-st.Remote+st.Relayed))
}

// turnCollector reads the TURN server's counters at scrape time.
type turnCollector struct{ src TURNSource }

func (c *turnCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{turnAllocationsDesc, turnAllocationsTotalDesc, turnRefusalsDesc, turnPeerDropsDesc, turnRelayedBytesDesc} {
		ch <- d
	}
}

func (c *turnCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.src.Stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	ch <- prometheus.MustNewConstMetric(turnAllocationsDesc, prometheus.GaugeValue, float64(st.AllocationsActive))
	counter(turnAllocationsTotalDesc, st.AllocationsTotal)
	counter(turnRefusalsDesc, st.AuthFailures, "auth")
	counter(turnRefusalsDesc, st.PermissionRefusals, "permission")
	counter(turnRefusalsDesc, st.QuotaRefusals, "quota")
	counter(turnRefusalsDesc, st.ConnectionsRefused, "connections")
	counter(turnPeerDropsDesc, st.PeerDrops)
	counter(turnRelayedBytesDesc, st.RelayedBytesIn, "in")
	counter(turnRelayedBytesDesc, st.RelayedBytesOut, "out")
}

// recordingCollector reads the recorder at scrape time.
type recordingCollector struct{ src RecordingSource }

func (c *recordingCollector) Describe(ch chan<- *prometheus.Desc) { ch <- recordingsDesc }

func (c *recordingCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(recordingsDesc, prometheus.GaugeValue, float64(c.src.ActiveCount()))
}

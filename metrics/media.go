package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/parley-meet/parley/sfu"
)

// MediaRoom is one room of the media plane (*sfu.Room).
type MediaRoom interface {
	Stats() []sfu.ParticipantStats
}

// MediaSource lists the media plane's open rooms. Each room must be
// comparable (a pointer, as *sfu.Room is): the collector remembers the
// counters of its tracks under it.
type MediaSource interface {
	MediaRooms() []MediaRoom
}

// SFU adapts the media plane (*sfu.SFU) to a MediaSource.
func SFU(s interface{ Rooms() []*sfu.Room }) MediaSource { return sfuSource{s} }

type sfuSource struct {
	s interface{ Rooms() []*sfu.Room }
}

func (s sfuSource) MediaRooms() []MediaRoom {
	rooms := s.s.Rooms()
	out := make([]MediaRoom, len(rooms))
	for i, r := range rooms {
		out[i] = r
	}
	return out
}

// The media plane's counters, summed over every track and subscription
// (see counterDescs for their meaning).
const (
	cReceivedPackets = iota
	cForwardedPackets
	cReceivedBytes
	cForwardedBytes
	cNACKs
	cRetransmitted
	cKeyframesToPublishers
	cKeyframesFromSubscribers
	cPublishedLost
	cSubscriberLost
	cBadPackets
	cRefusedCandidates
	numCounters
)

// counterDescs: the family of each counter, and the label values it has
// (keyframe requests share a family).
var counterDescs = [numCounters]struct {
	desc   *prometheus.Desc
	labels []string
}{
	cReceivedPackets: {desc: desc("media_received_packets_total",
		"RTP packets received from publishers (every simulcast layer).")},
	cForwardedPackets: {desc: desc("media_forwarded_packets_total",
		"RTP packets forwarded to subscribers (retransmissions not included).")},
	cReceivedBytes: {desc: desc("media_received_bytes_total",
		"RTP payload bytes received from publishers (every simulcast layer).")},
	cForwardedBytes: {desc: desc("media_forwarded_bytes_total",
		"RTP payload bytes forwarded to subscribers (retransmissions not included).")},
	cNACKs: {desc: desc("media_nacks_received_total",
		"Sequence numbers subscribers asked to be resent (RTCP NACK).")},
	cRetransmitted: {desc: desc("media_retransmitted_packets_total",
		"Packets resent to subscribers from the packet cache in answer to a NACK.")},
	cKeyframesToPublishers:    {desc: keyframeDesc, labels: []string{"to_publishers"}},
	cKeyframesFromSubscribers: {desc: keyframeDesc, labels: []string{"from_subscribers"}},
	cPublishedLost: {desc: desc("media_published_packets_lost_total",
		"Packets lost on the way from publishers to the server (sequence gaps, RFC 3550).")},
	cSubscriberLost: {desc: desc("media_subscriber_packets_lost_total",
		"Packets lost on the way from the server to subscribers, as their receiver reports say.")},
	cBadPackets: {desc: desc("media_bad_packets_total",
		"Malformed or unexpected RTP packets from publishers, dropped.")},
	cRefusedCandidates: {desc: desc("media_refused_candidates_total",
		"Remote ICE candidates the address policy refused (never contacted).")},
}

var keyframeDesc = desc("media_keyframe_requests_total",
	"Keyframe requests: PLIs the server sent to publishers (direction to_publishers), "+
		"PLI/FIR received from subscribers (direction from_subscribers).", "direction")

var (
	mediaRoomsDesc = desc("media_rooms",
		"Rooms open in the media plane.")
	mediaParticipantsDesc = desc("media_participants",
		"Participants of the media plane, by the state of their PeerConnection.", "state")
	mediaTransportsDesc = desc("media_participant_transports",
		"Participants of the media plane by the transport of their selected ICE candidate pair (none: no pair yet).", "transport")
	publishedTracksDesc = desc("media_published_tracks",
		"Tracks being published (a simulcast track counts once).", "kind", "source")
	subscribedTracksDesc = desc("media_subscribed_tracks",
		"Tracks being forwarded to subscribers (one per subscriber and track).", "kind")
	receivedBitrateDesc = desc("media_received_bits_per_second",
		"Bitrate received from publishers, all layers, now.")
	forwardedBitrateDesc = desc("media_forwarded_bits_per_second",
		"Bitrate of the layers being forwarded to subscribers, summed over subscribers, now.")
)

// Fixed label values: anything else is "other".
var (
	connectionStates = []string{"new", "connecting", "connected", "disconnected", "failed", "closed"}
	transports       = []string{"udp", "tcp", "none"}
	trackKinds       = []string{"audio", "video"}
	trackSources     = []string{"microphone", "camera", "screen"}
)

func known(v string, values []string) string {
	for _, k := range values {
		if v == k {
			return v
		}
	}
	return "other"
}

// counterKey names one counter of one track (or one participant).
type counterKey struct {
	room        MediaRoom
	participant string
	track       string
	layer       string
	counter     uint8
}

type lastSeen struct {
	value uint64
	gen   uint64
}

// mediaCollector reads every room's stats at scrape time. It turns the
// counters of tracks, which end, into totals that only grow.
type mediaCollector struct {
	src MediaSource

	mu     sync.Mutex
	gen    uint64
	last   map[counterKey]lastSeen
	totals [numCounters]uint64
}

func newMediaCollector(src MediaSource) *mediaCollector {
	return &mediaCollector{src: src, last: map[counterKey]lastSeen{}}
}

func (c *mediaCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{mediaRoomsDesc, mediaParticipantsDesc, mediaTransportsDesc,
		publishedTracksDesc, subscribedTracksDesc, receivedBitrateDesc, forwardedBitrateDesc} {
		ch <- d
	}
	for _, cd := range counterDescs {
		if cd.desc != keyframeDesc {
			ch <- cd.desc
		}
	}
	ch <- keyframeDesc
}

// add accounts counter k's value now: what it grew by since the last
// scrape, or all of it the first time. A counter that went down (a
// subscriber's cumulative loss can, with duplicates) adds nothing.
func (c *mediaCollector) add(k counterKey, v uint64) {
	prev, ok := c.last[k]
	switch {
	case !ok:
		c.totals[k.counter] += v
	case v > prev.value:
		c.totals[k.counter] += v - prev.value
	}
	c.last[k] = lastSeen{value: v, gen: c.gen}
}

// mediaGauges is the state of the media plane at one scrape.
type mediaGauges struct {
	rooms                     int
	states, transports        map[string]int
	published                 map[[2]string]int // kind, source
	subscribed                map[string]int
	receivedBps, forwardedBps int64
}

func newMediaGauges() *mediaGauges {
	g := &mediaGauges{states: map[string]int{}, transports: map[string]int{},
		published: map[[2]string]int{}, subscribed: map[string]int{}}
	for _, s := range connectionStates {
		g.states[s] = 0
	}
	for _, t := range transports {
		g.transports[t] = 0
	}
	for _, k := range trackKinds {
		g.subscribed[k] = 0
		for _, s := range trackSources {
			g.published[[2]string{k, s}] = 0
		}
	}
	return g
}

func (c *mediaCollector) Collect(ch chan<- prometheus.Metric) {
	rooms := c.src.MediaRooms()
	g := newMediaGauges()
	g.rooms = len(rooms)

	c.mu.Lock()
	c.gen++
	for _, room := range rooms {
		for _, ps := range room.Stats() {
			c.participant(room, &ps, g)
		}
	}
	// Forget the counters of tracks that ended; their last values stay in
	// the totals.
	for k, v := range c.last {
		if v.gen != c.gen {
			delete(c.last, k)
		}
	}
	totals := c.totals
	c.mu.Unlock()

	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(mediaRoomsDesc, float64(g.rooms))
	for s, n := range g.states {
		gauge(mediaParticipantsDesc, float64(n), s)
	}
	for t, n := range g.transports {
		gauge(mediaTransportsDesc, float64(n), t)
	}
	for ks, n := range g.published {
		gauge(publishedTracksDesc, float64(n), ks[0], ks[1])
	}
	for k, n := range g.subscribed {
		gauge(subscribedTracksDesc, float64(n), k)
	}
	gauge(receivedBitrateDesc, float64(g.receivedBps))
	gauge(forwardedBitrateDesc, float64(g.forwardedBps))
	for i, cd := range counterDescs {
		ch <- prometheus.MustNewConstMetric(cd.desc, prometheus.CounterValue, float64(totals[i]), cd.labels...)
	}
}

// participant accounts one participant's stats; c.mu is held.
func (c *mediaCollector) participant(room MediaRoom, ps *sfu.ParticipantStats, g *mediaGauges) {
	g.states[known(ps.ConnectionState, connectionStates)]++
	transport := ps.Transport
	if transport == "" {
		transport = "none"
	}
	g.transports[known(transport, transports)]++
	key := func(track, layer string, counter int) counterKey {
		return counterKey{room: room, participant: ps.ID, track: track, layer: layer, counter: uint8(counter)}
	}
	c.add(key("", "", cRefusedCandidates), ps.RefusedCandidates)

	tracks := map[string]bool{}
	for i := range ps.Published {
		ts := &ps.Published[i]
		if !tracks[ts.ID] {
			// One entry per simulcast layer; the track's own counters
			// are repeated in each.
			tracks[ts.ID] = true
			g.published[[2]string{known(ts.Kind, trackKinds), known(ts.Source, trackSources)}]++
			c.add(key(ts.ID, "", cBadPackets), ts.BadPackets)
		}
		c.add(key(ts.ID, ts.Layer, cReceivedPackets), ts.Packets)
		c.add(key(ts.ID, ts.Layer, cReceivedBytes), ts.Bytes)
		c.add(key(ts.ID, ts.Layer, cPublishedLost), ts.PacketsLost)
		c.add(key(ts.ID, ts.Layer, cKeyframesToPublishers), ts.KeyframeRequests)
		g.receivedBps += ts.Bitrate
	}
	for i := range ps.Subscribed {
		// A subscription's counters do not restart when its layer changes.
		ts := &ps.Subscribed[i]
		g.subscribed[known(ts.Kind, trackKinds)]++
		c.add(key(ts.ID, "", cForwardedPackets), ts.Packets)
		c.add(key(ts.ID, "", cForwardedBytes), ts.Bytes)
		c.add(key(ts.ID, "", cSubscriberLost), ts.PacketsLost)
		c.add(key(ts.ID, "", cKeyframesFromSubscribers), ts.KeyframeRequests)
		c.add(key(ts.ID, "", cNACKs), ts.NACKs)
		c.add(key(ts.ID, "", cRetransmitted), ts.Retransmitted)
		g.forwardedBps += ts.Bitrate
	}
}

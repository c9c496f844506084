package sfu

import (
	"sort"

	"github.com/pion/webrtc/v4"
)

// ParticipantStats is one participant's connection and tracks, from the
// SFU's own counters (for the admin console).
type ParticipantStats struct {
	ID string
	// ConnectionState is Pion's: "new", "connecting", "connected",
	// "disconnected", "failed" or "closed".
	ConnectionState string
	// Transport of the selected ICE candidate pair: "udp", "tcp", or "" when
	// not connected.
	Transport string
	// Published has one entry per incoming layer (simulcast rid).
	Published []TrackStats
	// Subscribed has one entry per track forwarded to this participant.
	Subscribed []TrackStats
	// RefusedCandidates counts remote candidates the address policy dropped.
	RefusedCandidates uint64
	// BandwidthEstimate is the congestion controller's target bitrate
	// toward this participant, in bit/s (0: none yet).
	BandwidthEstimate int64
}

// TrackStats describes one published layer or one subscription.
type TrackStats struct {
	TrackInfo
	Codec string // MIME type, e.g. "video/VP8"
	// Layer is the simulcast rid ("" without simulcast); for a
	// subscription, the layer being forwarded.
	Layer string
	Width int // pixels, from the last keyframe that carried it (0: unknown)
	// Bitrate in bit/s: received (published) or of the forwarded layer
	// (subscribed).
	Bitrate int64
	Packets uint64 // received, or sent to the subscriber
	// Bytes of RTP payload (headers and padding not counted), received or
	// sent to the subscriber.
	Bytes uint64
	// PacketsLost: sequence gaps seen (published), or the cumulative loss
	// the subscriber reports (subscribed).
	PacketsLost uint64
	// LossPercent: lost/expected (published), or the fraction lost in the
	// subscriber's last receiver report (subscribed).
	LossPercent float64
	// KeyframeRequests: PLIs sent to the publisher (published), or PLI/FIR
	// received from the subscriber (subscribed).
	KeyframeRequests uint64
	// NACKs and Retransmitted (subscribed only): sequence numbers the
	// subscriber asked for, and those served from the packet cache.
	NACKs, Retransmitted uint64
	// BadPackets (published only): malformed or unexpected RTP dropped.
	BadPackets uint64
}

func (p *Participant) stats() ParticipantStats {
	p.mu.Lock()
	own := make([]*publishedTrack, 0, len(p.tracks))
	for _, t := range p.tracks {
		if !t.isClosed() {
			own = append(own, t)
		}
	}
	downs := make([]*downTrack, 0, len(p.down))
	for _, d := range p.down {
		downs = append(downs, d)
	}
	p.mu.Unlock()

	now := nanotime()
	st := ParticipantStats{
		ID:                p.id,
		ConnectionState:   p.pc.ConnectionState().String(),
		RefusedCandidates: p.refusedCandidates.Load(),
	}
	if tr := p.transport.Load(); tr != nil {
		st.Transport = *tr
	}
	st.BandwidthEstimate = p.cong.target.Load()
	for _, t := range own {
		ls := t.layers.Load()
		if ls == nil {
			continue
		}
		for _, l := range *ls {
			ts := TrackStats{
				TrackInfo:        t.info,
				Codec:            t.codec.MimeType,
				Layer:            l.rid,
				Width:            int(l.width.Load()),
				Bitrate:          l.rate(now),
				Packets:          l.packets.Load(),
				Bytes:            l.bytes.Load(),
				PacketsLost:      l.lost.Load(),
				KeyframeRequests: l.plis.Load(),
				BadPackets:       t.badPackets.Load(),
			}
			if expected := ts.Packets + ts.PacketsLost; expected > 0 {
				ts.LossPercent = 100 * float64(ts.PacketsLost) / float64(expected)
			}
			st.Published = append(st.Published, ts)
		}
	}
	for _, d := range downs {
		ts := TrackStats{
			TrackInfo:        d.track.info,
			Codec:            d.track.codec.MimeType,
			Packets:          d.packets.Load(),
			Bytes:            d.bytes.Load(),
			PacketsLost:      uint64(d.cumLost.Load()),
			LossPercent:      100 * float64(d.fracLost.Load()) / 256,
			KeyframeRequests: d.keyRequests.Load(),
			NACKs:            d.nacks.Load(),
			Retransmitted:    d.resent.Load(),
		}
		if l := d.track.layerAt(int(d.curLayer.Load())); l != nil {
			ts.Layer, ts.Width, ts.Bitrate = l.rid, int(l.width.Load()), l.rate(now)
		}
		st.Subscribed = append(st.Subscribed, ts)
	}
	sort.Slice(st.Published, func(i, j int) bool {
		a, b := st.Published[i], st.Published[j]
		return a.ID < b.ID || a.ID == b.ID && a.Layer < b.Layer
	})
	sort.Slice(st.Subscribed, func(i, j int) bool { return st.Subscribed[i].ID < st.Subscribed[j].ID })
	return st
}

// rate is the layer's bitrate, 0 once it has gone quiet.
func (l *layer) rate(now int64) int64 {
	if last := l.lastPacket.Load(); last == 0 || now-last > int64(layerActiveFor) {
		return 0
	}
	return l.bitrate.Load()
}

var _ webrtc.TrackLocal = (*downTrack)(nil)

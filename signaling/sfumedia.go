package signaling

import (
	"errors"
	"fmt"

	"github.com/pion/webrtc/v4"

	"github.com/parley-meet/parley/sfu"
)

// SFUMedia adapts the SFU to the Media the hub drives.
func SFUMedia(s *sfu.SFU) Media { return sfuMedia{s} }

type sfuMedia struct{ s *sfu.SFU }

func (m sfuMedia) NewRoom(id string, opts RoomOptions) MediaRoom {
	r := m.s.NewRoom(id)
	if opts.Codecs != nil {
		r.RestrictCodecs(opts.Codecs...)
	}
	return sfuRoom{r}
}

type sfuRoom struct{ r *sfu.Room }

func (r sfuRoom) Join(id string, ev MediaEvents, pub Publish) (MediaParticipant, error) {
	p, err := r.r.Join(id, sfuEvents{ev}, sfu.Publish(pub))
	if err != nil {
		return nil, err
	}
	return sfuParticipant{p}, nil
}

func (r sfuRoom) Tracks() []Track {
	ts := r.r.Tracks()
	out := make([]Track, len(ts))
	for i, t := range ts {
		out[i] = Track(t)
	}
	return out
}

func (r sfuRoom) Stats() []sfu.ParticipantStats { return r.r.Stats() }

func (r sfuRoom) AddTap(h sfu.TapHandler) (*sfu.Tap, error) { return r.r.AddTap(h) }

func (r sfuRoom) Close() { r.r.Close() }

// sfuEvents passes the SFU's events on with signaling's types.
type sfuEvents struct{ ev MediaEvents }

func (e sfuEvents) OnOffer(sdp string)                    { e.ev.OnOffer(sdp) }
func (e sfuEvents) OnCandidate(c webrtc.ICECandidateInit) { e.ev.OnCandidate(c) }
func (e sfuEvents) OnTrackPublished(t sfu.TrackInfo)      { e.ev.OnTrackPublished(Track(t)) }
func (e sfuEvents) OnTrackUnpublished(t sfu.TrackInfo)    { e.ev.OnTrackUnpublished(Track(t)) }
func (e sfuEvents) OnConnectionState(state string)        { e.ev.OnConnectionState(state) }

type sfuParticipant struct{ p *sfu.Participant }

// sdpErr marks the SFU's refusals of an SDP as ErrBadSDP.
func sdpErr(err error) error {
	if errors.Is(err, sfu.ErrBadSDP) {
		return fmt.Errorf("%w: %w", ErrBadSDP, err)
	}
	return err
}

func (p sfuParticipant) HandleOffer(sdp string, sources map[string]string) (string, error) {
	a, err := p.p.HandleOffer(sdp, sources)
	return a, sdpErr(err)
}
func (p sfuParticipant) HandleAnswer(sdp string) error { return sdpErr(p.p.HandleAnswer(sdp)) }
func (p sfuParticipant) AddCandidate(c webrtc.ICECandidateInit) error {
	return p.p.AddCandidate(c)
}
func (p sfuParticipant) SetPublish(pub Publish) { p.p.SetPublish(sfu.Publish(pub)) }
func (p sfuParticipant) StopTrack(kind string)  { p.p.StopTrack(kind) }
func (p sfuParticipant) Subscribe(on bool)      { p.p.Subscribe(on) }
func (p sfuParticipant) RequestLayer(trackID string, maxWidth int) {
	p.p.RequestLayer(trackID, maxWidth)
}
func (p sfuParticipant) Close() { p.p.Close() }

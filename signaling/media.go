package signaling

import (
	"context"
	"errors"

	"github.com/pion/webrtc/v4"

	"github.com/parley-meet/parley/sfu"
)

// Publish says what a participant may publish right now; it mirrors
// sfu.Publish.
type Publish struct{ Audio, Video, Screen bool }

// Track is a published track as the media plane reports it; it mirrors
// sfu.TrackInfo.
type Track struct {
	ID          string // the browser's MediaStreamTrack id (from msid)
	Participant string // the publishing participant's id
	Kind        string // "audio" or "video"
	Source      string // "microphone", "camera" or "screen"
}

// MediaEvents are what the media plane reports about one participant. They
// are called without any lock of the media plane held and must not block.
type MediaEvents interface {
	OnOffer(sdp string)
	OnCandidate(c webrtc.ICECandidateInit)
	OnTrackPublished(t Track)
	OnTrackUnpublished(t Track)
	OnConnectionState(state string)
}

// Media is the part of the SFU the hub drives: one forwarding domain per
// meeting room. SFUMedia adapts *sfu.SFU to it.
type Media interface {
	NewRoom(id string, opts RoomOptions) MediaRoom
}

// RoomOptions are a meeting's media settings, fixed for its life.
type RoomOptions struct {
	// Codecs, when not nil, are the only codecs (MIME types) the meeting
	// negotiates; nil: every codec the media plane forwards.
	Codecs []string
}

// MediaRoom is one room's forwarding domain.
type MediaRoom interface {
	Join(participantID string, ev MediaEvents, pub Publish) (MediaParticipant, error)
	Tracks() []Track
	// Stats reports every participant's connection and tracks.
	Stats() []sfu.ParticipantStats
	TapSource
	Close()
}

// TapSource attaches a hidden in-process subscriber (the recorder) to a
// room's media. An alias of an unnamed interface: recording.Source is the
// same type.
type TapSource = interface {
	AddTap(h sfu.TapHandler) (*sfu.Tap, error)
}

// Recorder records meetings in progress (*recording.Manager). StartRoom
// taps the room's media; names gives the display name of a participant id
// (safe from any goroutine). StopRoom finishes the recording.
type Recorder interface {
	StartRoom(ctx context.Context, room TapSource, roomID, by string, names func(participantID string) string) error
	StopRoom(ctx context.Context, roomID string) error
}

// MediaParticipant is one participant's PeerConnection.
type MediaParticipant interface {
	HandleOffer(sdp string, sources map[string]string) (answer string, err error)
	HandleAnswer(sdp string) error
	AddCandidate(c webrtc.ICECandidateInit) error
	SetPublish(p Publish)
	StopTrack(kind string)
	Subscribe(on bool)
	RequestLayer(trackID string, maxWidth int)
	Close()
}

// ErrBadSDP is returned by a MediaParticipant for an SDP the media plane
// refuses (too large, too many m-lines or candidates, no fingerprint, SDES).
var ErrBadSDP = errors.New("signaling: SDP refused")

package sfu

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"sync"

	"github.com/pion/webrtc/v4"
)

// Room is a forwarding domain: every participant receives the tracks the
// others publish (unless it does not subscribe), never its own.
type Room struct {
	sfu *SFU
	id  string
	log *slog.Logger

	mu           sync.Mutex
	closed       bool
	participants map[string]*Participant
	tracks       []*publishedTrack // published, in publication order
	taps         []*Tap            // hidden subscribers (tap.go)
	codecs       []string          // the only codecs negotiated (RestrictCodecs); nil: all
}

// Join adds a participant with a new PeerConnection. id is opaque and must
// be unique in the room. It may publish what pub allows. Nothing happens
// before its first offer (HandleOffer); from then on it receives the room's
// tracks unless Subscribe(false) was called (a lobby).
func (r *Room) Join(id string, ev Events, pub Publish) (*Participant, error) {
	if ev == nil {
		return nil, errors.New("sfu: Join needs Events")
	}
	r.mu.Lock()
	closed, dup := r.closed, r.participants[id] != nil
	r.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	if dup {
		return nil, errors.New("sfu: participant id already in the room")
	}
	pc, err := r.sfu.api.NewPeerConnection(webrtc.Configuration{
		BundlePolicy:  webrtc.BundlePolicyMaxBundle,
		RTCPMuxPolicy: webrtc.RTCPMuxPolicyRequire,
	})
	if err != nil {
		return nil, err
	}
	log := r.log.With("participant", id)
	p := &Participant{
		id:         id,
		streamID:   streamIDFor(id),
		room:       r,
		sfu:        r.sfu,
		ev:         ev,
		log:        log,
		pc:         pc,
		cong:       newCongestion(),
		events:     newEventQueue(log, &r.sfu.dispatchers),
		pub:        pub,
		subscribed: true,
		sources:    map[string]string{},
		down:       map[*publishedTrack]*downTrack{},
		tracks:     map[*webrtc.RTPReceiver]*publishedTrack{},
		prefs:      map[string]int{},
	}
	pc.OnTrack(p.onTrack)
	pc.OnConnectionStateChange(p.onConnectionState)
	pc.OnICECandidate(p.onICECandidate)
	// (ICETransport.GetSelectedCandidatePair races with the transport's
	// start in Pion; the change callback does not.)
	pc.SCTP().Transport().ICETransport().OnSelectedCandidatePairChange(func(pair *webrtc.ICECandidatePair) {
		if pair != nil && pair.Local != nil {
			proto := pair.Local.Protocol.String()
			p.transport.Store(&proto)
		}
	})

	r.mu.Lock()
	if r.closed || r.participants[id] != nil {
		closed := r.closed
		r.mu.Unlock()
		_ = pc.Close()
		if closed {
			return nil, ErrClosed
		}
		return nil, errors.New("sfu: participant id already in the room")
	}
	r.participants[id] = p
	tracks := len(r.tracks)
	// Started under r.mu while the room is open: SFU.Close closes the rooms
	// (and so the event queues) before it waits for their goroutines.
	p.events.start()
	r.mu.Unlock()
	log.Info("participant joined", "room_tracks", tracks)
	return p, nil
}

// Tracks lists every published track (for late joiners' announcements).
func (r *Room) Tracks() []TrackInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]TrackInfo, 0, len(r.tracks))
	for _, t := range r.tracks {
		out = append(out, t.info)
	}
	return out
}

// Stats reports every participant's connection and tracks.
func (r *Room) Stats() []ParticipantStats {
	r.mu.Lock()
	ps := make([]*Participant, 0, len(r.participants))
	for _, p := range r.participants {
		ps = append(ps, p)
	}
	r.mu.Unlock()
	out := make([]ParticipantStats, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.stats())
	}
	return out
}

// Close ends every participant (their tracks are unpublished, their
// PeerConnections closed). Later Joins fail with ErrClosed.
func (r *Room) Close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	ps := make([]*Participant, 0, len(r.participants))
	for _, p := range r.participants {
		ps = append(ps, p)
	}
	taps := append([]*Tap(nil), r.taps...)
	r.mu.Unlock()
	for _, tp := range taps {
		tp.Close()
	}
	r.sfu.forgetRoom(r)
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.Close()
		}()
	}
	wg.Wait()
}

// publish makes t visible to the room and subscribes everyone else to it.
// It refuses a track whose id another published track already uses.
func (r *Room) publish(t *publishedTrack) bool {
	r.mu.Lock()
	if r.closed || t.isClosed() {
		r.mu.Unlock()
		return false
	}
	for _, o := range r.tracks {
		if o.info.ID == t.info.ID {
			r.mu.Unlock()
			t.close()
			t.owner.log.Warn("track refused: its id is already published in the room", "kind", t.info.Kind)
			return false
		}
	}
	r.tracks = append(r.tracks, t)
	subs := make([]*Participant, 0, len(r.participants))
	for _, p := range r.participants {
		if p != t.owner {
			subs = append(subs, p)
		}
	}
	// Queued under r.mu so that it is ordered with removeTrack's event.
	info := t.info
	t.owner.events.push(func() { t.owner.ev.OnTrackPublished(info) })
	taps := append([]*Tap(nil), r.taps...)
	r.mu.Unlock()
	t.owner.log.Info("track published", "track", info.ID, "kind", info.Kind, "source", info.Source,
		"codec", t.codec.MimeType, "subscribers", len(subs))
	for _, p := range subs {
		p.subscribeTo(t)
	}
	for _, tp := range taps {
		tp.attach(t)
	}
	return true
}

// removeTrack takes t out of the room, announcing it if it was published.
func (r *Room) removeTrack(t *publishedTrack) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, o := range r.tracks {
		if o == t {
			r.tracks = append(r.tracks[:i:i], r.tracks[i+1:]...)
			info := t.info
			t.owner.events.push(func() { t.owner.ev.OnTrackUnpublished(info) })
			return
		}
	}
}

func (r *Room) snapshotTracks() []*publishedTrack {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*publishedTrack(nil), r.tracks...)
}

func (r *Room) leave(p *Participant) {
	r.mu.Lock()
	if r.participants[p.id] == p {
		delete(r.participants, p.id)
	}
	r.mu.Unlock()
}

// streamIDFor is the msid stream id of a participant's tracks: its id when
// that is a short SDP token (UUIDs are), else a hash of it, so that no id
// can break the SDP.
func streamIDFor(id string) string {
	ok := id != "" && len(id) <= 64
	for i := 0; ok && i < len(id); i++ {
		c := id[i]
		ok = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
	}
	if ok {
		return id
	}
	sum := sha256.Sum256([]byte(id))
	return "p-" + hex.EncodeToString(sum[:12])
}

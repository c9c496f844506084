package sfu

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// Publish says what a participant may publish right now.
type Publish struct{ Audio, Video, Screen bool }

func (pub Publish) allows(kind, source string) bool {
	switch {
	case source == "screen":
		return pub.Screen
	case kind == "audio":
		return pub.Audio
	default:
		return pub.Video
	}
}

// Participant is one PeerConnection used both to publish and to subscribe.
type Participant struct {
	id       string
	streamID string
	room     *Room
	sfu      *SFU
	ev       Events
	log      *slog.Logger
	pc       *webrtc.PeerConnection
	cong     *congestion // transport-wide numbering and estimate toward this participant (twcc.go)
	events   *eventQueue

	// wg counts the goroutines that read this participant's streams (its
	// tracks' RTP and RTCP, its subscriptions' RTCP) and the pending offer
	// timer; Close waits for them.
	wg sync.WaitGroup

	refusedCandidates atomic.Uint64
	trickled          atomic.Int32           // candidates accepted through AddCandidate
	lastLocal         atomic.Pointer[string] // the last SDP we returned or offered
	closing           atomic.Bool            // Close has begun
	transport         atomic.Pointer[string] // "udp" or "tcp" once a candidate pair is selected
	videoDowns        atomic.Int32           // video subscriptions (bandwidth shares)
	audioDowns        atomic.Int32           // audio subscriptions

	stateMu   sync.Mutex // orders connection state reports
	lastState string     // the last connection state reported

	mu           sync.Mutex
	closed       bool
	pub          Publish
	subscribed   bool
	sources      map[string]string // msid track id → source, from HandleOffer
	started      bool              // the first client offer is answered
	offerPending bool              // our offer awaits HandleAnswer
	needOffer    bool              // subscriptions changed since our last description
	timer        *time.Timer       // scheduled negotiate
	reportTimer  *time.Timer       // next sender reports (reports.go)
	gen          uint64            // local descriptions made
	offerGen     uint64            // gen of the pending offer
	completedGen uint64            // gen of the last completed negotiation
	midSeq       int
	slots        []*slot                                 // transceivers carrying subscriptions (ours, or the client's recvonly ones)
	down         map[*publishedTrack]*downTrack          // subscriptions
	tracks       map[*webrtc.RTPReceiver]*publishedTrack // own tracks, by receiver
	prefs        map[string]int                          // RequestLayer by track id
	rekey        []*downTrack                            // restart on a keyframe after the next answer (glare.go)
}

// SetPublish changes what the participant may publish. Tracks no longer
// allowed stop being forwarded to everyone (OnTrackUnpublished) and new ones
// are refused. Publishing again takes a new track from the client.
func (p *Participant) SetPublish(pub Publish) {
	p.mu.Lock()
	p.pub = pub
	var stop []*publishedTrack
	for _, t := range p.tracks {
		if !pub.allows(t.info.Kind, t.info.Source) && !t.isClosed() {
			stop = append(stop, t)
		}
	}
	p.mu.Unlock()
	for _, t := range stop {
		p.log.Info("track revoked", "track", t.info.ID, "kind", t.info.Kind, "source", t.info.Source)
		p.unpublish(t)
	}
}

// StopTrack is a server-side mute: forwarding of the participant's "audio"
// tracks, or its "video" camera tracks, stops (OnTrackUnpublished). A later
// unmute is a new publish by the client.
func (p *Participant) StopTrack(kind string) {
	p.mu.Lock()
	var stop []*publishedTrack
	for _, t := range p.tracks {
		if t.info.Kind == kind && (kind == "audio" || t.info.Source == "camera") && !t.isClosed() {
			stop = append(stop, t)
		}
	}
	p.mu.Unlock()
	for _, t := range stop {
		p.log.Info("track stopped by the server", "track", t.info.ID, "kind", t.info.Kind)
		p.unpublish(t)
	}
}

// Subscribe(false) removes every subscription (someone in a lobby receives
// nothing); Subscribe(true) subscribes to every published track again.
func (p *Participant) Subscribe(on bool) {
	p.mu.Lock()
	if p.closed || p.subscribed == on {
		p.mu.Unlock()
		return
	}
	p.subscribed = on
	var downs []*downTrack
	if !on {
		for _, d := range p.down {
			downs = append(downs, d)
		}
	}
	p.mu.Unlock()
	if !on {
		for _, d := range downs {
			p.removeDownTrack(d)
		}
		return
	}
	for _, t := range p.room.snapshotTracks() {
		p.subscribeTo(t)
	}
}

// RequestLayer sets the widest frames (in pixels) this subscriber wants of a
// simulcast track; 0 means no limit. The layer changes at its next keyframe.
func (p *Participant) RequestLayer(trackID string, maxWidth int) {
	maxWidth = min(max(maxWidth, 0), 1<<16)
	p.mu.Lock()
	if _, ok := p.prefs[trackID]; ok || len(p.prefs) < 256 {
		p.prefs[trackID] = maxWidth
	}
	var d *downTrack
	for t, x := range p.down {
		if t.info.ID == trackID {
			d = x
		}
	}
	p.mu.Unlock()
	if d != nil {
		d.maxWidth.Store(int32(maxWidth))
		d.track.retarget(d, nanotime())
	}
}

// Close is the participant leaving: its tracks are unpublished, its
// PeerConnection is closed and its goroutines end (the event goroutine right
// after delivering the last events, see Events).
func (p *Participant) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.closing.Store(true)
	if p.timer != nil && p.timer.Stop() {
		p.wg.Done()
	}
	p.timer = nil
	if p.reportTimer != nil && p.reportTimer.Stop() {
		p.wg.Done()
	}
	p.reportTimer = nil
	own := make([]*publishedTrack, 0, len(p.tracks))
	for _, t := range p.tracks {
		own = append(own, t)
	}
	downs := make([]*downTrack, 0, len(p.down))
	for _, d := range p.down {
		downs = append(downs, d)
		p.countDown(d, -1)
	}
	clear(p.down)
	p.mu.Unlock()

	p.room.leave(p)
	for _, t := range own {
		p.unpublish(t)
	}
	for _, d := range downs {
		d.track.removeDown(d)
	}
	if err := p.pc.Close(); err != nil {
		p.log.Debug("closing the peer connection", "err", err)
	}
	p.wg.Wait()
	p.events.push(func() { p.ev.OnConnectionState("closed") })
	p.events.close()
	p.log.Info("participant left")
}

// countDown keeps the subscription counts the bandwidth shares use.
func (p *Participant) countDown(d *downTrack, delta int32) {
	if d.Kind() == webrtc.RTPCodecTypeVideo {
		p.videoDowns.Add(delta)
	} else {
		p.audioDowns.Add(delta)
	}
}

func (p *Participant) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// onTrack runs in the goroutine Pion starts for a new incoming stream and
// reads it until it ends.
func (p *Participant) onTrack(remote *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.wg.Add(1)
	defer p.wg.Done()
	t := p.tracks[recv]
	fresh := t == nil
	if fresh {
		t = newPublishedTrack(p, recv, remote, p.sourceOf(remote))
		if !p.pub.allows(t.info.Kind, t.info.Source) {
			t.close()
			p.log.Info("track refused: not allowed to publish it", "kind", t.info.Kind, "source", t.info.Source)
		}
		p.tracks[recv] = t
	}
	l := t.addLayer(remote)
	if l != nil {
		t.readers.Add(1)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			l.readRTCP()
		}()
	}
	p.mu.Unlock()

	if l == nil || t.isClosed() {
		// Too many layers, or a refused track: drain it and forward nothing.
		buf := make([]byte, maxPacketSize)
		readLoop(func() error { _, _, err := remote.Read(buf); return err }, nil)
		return
	}
	if fresh {
		p.room.publish(t)
	}
	l.run()

	// The stream ended. Once every layer has, the track is unpublished.
	l.lastPacket.Store(0)
	if t.readers.Add(-1) == 0 && !p.isClosed() {
		p.unpublish(t)
		p.mu.Lock()
		delete(p.tracks, recv)
		p.mu.Unlock()
	}
}

// sourceOf maps an incoming track to its source, from the sources given
// with the offers (default: audio is the microphone, video the camera).
func (p *Participant) sourceOf(remote *webrtc.TrackRemote) string {
	s := p.sources[remote.ID()]
	if remote.Kind() == webrtc.RTPCodecTypeAudio {
		if s == "screen" {
			return s
		}
		return "microphone"
	}
	if s == "screen" {
		return s
	}
	return "camera"
}

// mergeSources records the client's msid → source map (bounded).
func (p *Participant) mergeSources(sources map[string]string) {
	for id, s := range sources {
		if s != "microphone" && s != "camera" && s != "screen" {
			continue
		}
		if _, ok := p.sources[id]; ok || len(p.sources) < 64 {
			p.sources[id] = s
		}
	}
}

// unpublish stops forwarding t to everyone and announces it.
func (p *Participant) unpublish(t *publishedTrack) {
	downs := t.close()
	p.room.removeTrack(t)
	for _, d := range downs {
		if d.tap != nil {
			d.tap.detach(d)
		} else {
			d.sub.removeDownTrack(d)
		}
	}
}

// sendPLI asks this participant (a publisher) for a keyframe.
func (p *Participant) sendPLI(ssrc uint32) {
	if err := p.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}}); err != nil {
		p.log.Debug("sending a keyframe request", "err", err)
	}
}

func (p *Participant) onConnectionState(webrtc.PeerConnectionState) {
	// Pion calls this from a new goroutine per change: read the current
	// state under stateMu so that the reports stay in order. Never p.mu:
	// Pion may hold its own locks while we wait for it under p.mu.
	p.stateMu.Lock()
	defer p.stateMu.Unlock()
	if p.closing.Load() {
		return
	}
	var state string
	switch p.pc.ConnectionState() {
	case webrtc.PeerConnectionStateConnected:
		state = "connected"
	case webrtc.PeerConnectionStateDisconnected:
		state = "disconnected"
	case webrtc.PeerConnectionStateFailed:
		state = "failed"
	default:
		return
	}
	if state == p.lastState {
		return
	}
	p.lastState = state
	p.log.Info("connection state", "state", state)
	p.events.push(func() { p.ev.OnConnectionState(state) })
}

// onICECandidate is called by Pion's ICE agent, synchronously, while
// HandleOffer may be waiting for gathering under p.mu: it must not take p.mu.
func (p *Participant) onICECandidate(c *webrtc.ICECandidate) {
	if c == nil || p.closing.Load() {
		return
	}
	init := c.ToJSON()
	// Candidates are put into every SDP we return; trickle only those
	// gathered after the last one.
	last := p.lastLocal.Load()
	if last == nil || containsLine(*last, "a="+init.Candidate) {
		return
	}
	p.log.Debug("trickling a local candidate")
	p.events.push(func() { p.ev.OnCandidate(init) })
}

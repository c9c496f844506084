package server

import (
	"io"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/logging"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/parley-meet/parley/internal/rtctest"
)

// peerAPI is a Pion API set up like a browser on loopback (the settings of
// shared/e2e/README.md): it gathers on lo only and contacts only loopback.
func peerAPI(t *testing.T) *webrtc.API {
	t.Helper()
	se := rtctest.LoopbackSettingEngine()
	se.LoggerFactory = &logging.DefaultLoggerFactory{Writer: io.Discard}
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se))
}

// peer is a Pion client on a signaling socket: the impolite peer of the
// protocol. One goroutine owns the PeerConnection's negotiation: it answers
// server offers, applies answers and candidates, and passes every other
// message on to events.
type peer struct {
	t      *testing.T
	s      *sock
	pc     *webrtc.PeerConnection
	id     string
	events chan map[string]any
	cmds   chan func()

	pending atomic.Bool // our offer is outstanding

	packets rtctest.Counters // received RTP packets by remote track id

	stop chan struct{}
	wg   sync.WaitGroup
}

// newPeer joins s's room (join must not have been sent yet) and returns
// the peer once welcomed.
func newPeer(t *testing.T, s *sock, api *webrtc.API) *peer {
	t.Helper()
	pc, err := api.NewPeerConnection(webrtc.Configuration{BundlePolicy: webrtc.BundlePolicyMaxBundle})
	if err != nil {
		t.Fatal(err)
	}
	p := &peer{t: t, s: s, pc: pc, events: make(chan map[string]any, 4096), cmds: make(chan func()),
		stop: make(chan struct{})}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		n := p.packets.Counter(tr.ID())
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for {
				if _, _, err := tr.ReadRTP(); err != nil {
					return
				}
				n.Add(1)
			}
		}()
	})
	// Offers and answers are sent with every candidate gathered (no
	// trickling), like the SFU's own.
	w := s.join()
	p.id = w["participant_id"].(string)
	p.wg.Add(1)
	go p.loop()
	t.Cleanup(p.close)
	return p
}

func (p *peer) close() {
	select {
	case <-p.stop:
		return
	default:
	}
	close(p.stop)
	p.pc.Close()
	p.s.ws.Close()
	p.wg.Wait()
}

func (p *peer) loop() {
	defer p.wg.Done()
	for {
		select {
		case <-p.stop:
			return
		case f := <-p.cmds:
			f()
		case m, ok := <-p.s.msgs:
			if !ok {
				close(p.events)
				<-p.stop
				return
			}
			p.handle(m)
		}
	}
}

func (p *peer) handle(m map[string]any) {
	if os.Getenv("PARLEY_TEST_SFU_LOG") != "" {
		p.t.Logf("peer %s got %s", p.id, m["type"])
	}
	switch m["type"] {
	case "offer", "answer", "candidate":
		if p.pc.ConnectionState() == webrtc.PeerConnectionStateClosed {
			return // closing down: nothing to negotiate (other messages, such as kicked, still count)
		}
	}
	switch m["type"] {
	case "offer":
		if p.pending.Load() {
			return // glare: the server rolls its offer back and offers again
		}
		if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: m["sdp"].(string)}); err != nil {
			p.fail("server offer: %v", err)
			return
		}
		answer, err := p.pc.CreateAnswer(nil)
		if err != nil {
			p.fail("create answer: %v", err)
			return
		}
		gathered := webrtc.GatheringCompletePromise(p.pc)
		if err := p.pc.SetLocalDescription(answer); err != nil {
			p.fail("set answer: %v", err)
			return
		}
		<-gathered
		p.s.send(map[string]any{"type": "answer", "sdp": p.pc.LocalDescription().SDP})
	case "answer":
		p.pending.Store(false)
		if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: m["sdp"].(string)}); err != nil {
			p.fail("server answer: %v", err)
		}
	case "candidate":
		c := m["candidate"].(map[string]any)
		init := webrtc.ICECandidateInit{Candidate: c["candidate"].(string)}
		p.pc.AddICECandidate(init)
	default:
		select {
		case p.events <- m:
		default:
			p.t.Errorf("peer %s: event queue full", p.id)
		}
	}
}

// fail reports a negotiation error, unless the peer is closing down.
func (p *peer) fail(format string, args ...any) {
	select {
	case <-p.stop:
		return
	default:
	}
	if p.pc.ConnectionState() == webrtc.PeerConnectionStateClosed {
		return
	}
	p.t.Errorf("peer %s: "+format, append([]any{p.id}, args...)...)
}

// do runs f on the negotiating goroutine.
func (p *peer) do(f func()) {
	done := make(chan struct{})
	select {
	case p.cmds <- func() { f(); close(done) }:
		<-done
	case <-p.stop:
	}
}

// publish adds an audio and a video track fed with synthetic samples, and
// offers them.
func (p *peer) publish(name string) (audioID, videoID string) {
	p.t.Helper()
	audioID, videoID = "audio-"+name, "video-"+name
	a, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, audioID, "stream-"+name)
	if err != nil {
		p.t.Fatal(err)
	}
	v, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, videoID, "stream-"+name)
	if err != nil {
		p.t.Fatal(err)
	}
	p.do(func() {
		if _, err := p.pc.AddTrack(a); err != nil {
			p.t.Error(err)
		}
		if _, err := p.pc.AddTrack(v); err != nil {
			p.t.Error(err)
		}
	})
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		frame := append([]byte{0x50, 0x01, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00}, make([]byte, 200)...)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-tick.C:
				a.WriteSample(media.Sample{Data: []byte{0xfc, 0xff, 0xfe}, Duration: 20 * time.Millisecond})
				v.WriteSample(media.Sample{Data: frame, Duration: 20 * time.Millisecond})
			}
		}
	}()
	p.offer(nil)
	return audioID, videoID
}

// subscribe connects a peer that publishes nothing: one receive-only
// audio and video transceiver, offered.
func (p *peer) subscribe() {
	p.t.Helper()
	p.do(func() {
		for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
			if _, err := p.pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
				p.t.Error(err)
			}
		}
	})
	p.offer(nil)
}

// offer sends the client's offer (sources maps msid track ids).
func (p *peer) offer(sources map[string]string) {
	p.t.Helper()
	p.do(func() {
		offer, err := p.pc.CreateOffer(nil)
		if err != nil {
			p.t.Error(err)
			return
		}
		gathered := webrtc.GatheringCompletePromise(p.pc)
		if err := p.pc.SetLocalDescription(offer); err != nil {
			p.t.Error(err)
			return
		}
		<-gathered
		p.pending.Store(true)
		m := map[string]any{"type": "offer", "sdp": p.pc.LocalDescription().SDP}
		if sources != nil {
			m["tracks"] = sources
		}
		p.s.send(m)
	})
}

// expect waits for an event of type typ.
func (p *peer) expect(typ string, within time.Duration) map[string]any {
	p.t.Helper()
	deadline := time.After(within)
	for {
		select {
		case m, ok := <-p.events:
			if !ok {
				p.t.Fatalf("peer %s: socket closed while waiting for %s", p.id, typ)
			}
			if m["type"] == typ {
				return m
			}
		case <-deadline:
			p.t.Fatalf("peer %s: no %s within %v", p.id, typ, within)
		}
	}
}

// received is the number of RTP packets received on the remote track id.
func (p *peer) received(id string) int64 { return p.packets.Get(id) }

// flowing counts the remote tracks that received packets in the last
// window.
func (p *peer) flowing(window time.Duration) map[string]bool {
	ids, counts := p.packets.Snapshot()
	before := map[string]int64{}
	for i, id := range ids {
		before[id] = counts[i]
	}
	time.Sleep(window)
	out := map[string]bool{}
	ids, counts = p.packets.Snapshot()
	for i, id := range ids {
		if counts[i] > before[id] {
			out[id] = true
		}
	}
	return out
}

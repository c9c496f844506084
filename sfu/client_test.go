package sfu

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/parley-meet/parley/internal/leakcheck"
	"github.com/parley-meet/parley/internal/pionlog"
	"github.com/parley-meet/parley/internal/rtctest"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

// Tests send packets only to loopback: the SFU binds 127.0.0.1, the clients
// gather on lo only, and both refuse every remote address but loopback.
var loopbackOnly = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

func testLogger() *slog.Logger {
	if os.Getenv("SFU_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func newTestSFU(t testing.TB) *SFU {
	t.Helper()
	s, err := New(Config{ListenIP: "127.0.0.1", TCPPort: -1, AllowedRemote: loopbackOnly, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("closing the SFU: %v", err)
		}
	})
	return s
}

// clientAPI is a Pion API configured like a browser on loopback: the
// settings from shared/e2e/README.md.
func clientAPI(t testing.TB, tcp bool) *webrtc.API {
	t.Helper()
	types := []webrtc.NetworkType{webrtc.NetworkTypeUDP4}
	if tcp {
		types = []webrtc.NetworkType{webrtc.NetworkTypeTCP4}
	}
	se := rtctest.LoopbackSettingEngine(types...)
	se.LoggerFactory = pionlog.New(testLogger().With("side", "client"), pionlog.Plain)
	m := &webrtc.MediaEngine{}
	if err := registerCodecs(m); err != nil {
		t.Fatal(err)
	}
	ir := &interceptor.Registry{}
	if err := webrtc.ConfigureNack(m, ir); err != nil {
		t.Fatal(err)
	}
	if err := webrtc.ConfigureRTCPReports(ir); err != nil {
		t.Fatal(err)
	}
	if err := webrtc.ConfigureTWCCSender(m, ir); err != nil {
		t.Fatal(err)
	}
	// Publishers number their packets, as browsers do, so that the SFU
	// answers with transport-cc feedback.
	if err := webrtc.ConfigureTWCCHeaderExtensionSender(m, ir); err != nil {
		t.Fatal(err)
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))
}

// client is an in-process stand-in for a browser: a Pion PeerConnection,
// synthetic publishers, counters of what it receives, and the Events the
// SFU calls for its participant. It is the impolite peer.
type client struct {
	t    testing.TB
	name string
	pc   *webrtc.PeerConnection
	p    *Participant

	negMu         sync.Mutex // one negotiation step at a time
	offersIgnored atomic.Int32
	answerErrs    atomic.Int32

	mu          sync.Mutex
	recv        map[string]*recvTrack // by msid track id
	published   []TrackInfo
	unpublished []TrackInfo
	states      []string
	sources     map[string]string

	stop    chan struct{}
	closing bool // under mu: no new reader goroutines
	wg      sync.WaitGroup
}

type recvTrack struct {
	streamID string
	kind     string
	packets  atomic.Int64
	mu       sync.Mutex
	log      []rtpSample // the first 5000 packets
	lastSeq  uint16
	lastTS   uint32 // timestamp of lastSeq
	gaps     int
	srs      []srSample   // sender reports about its SSRC (reports_test.go), under mu
	arrivals [512]arrival // the newest packets, a ring (reports_test.go)
	narrived int          // packets put in arrivals
}

type arrival struct {
	at time.Time
	ts uint32
}

type srSample struct {
	at time.Time // received
	sr rtcp.SenderReport
	// Of the packets received before the report was made (its NTP time):
	lastTS  uint32 // the newest one's timestamp
	packets int64  // how many
	found   bool   // the ring still held that moment
}

type rtpSample struct {
	seq   uint16
	ts    uint32
	ssrc  uint32
	key   bool
	layer byte
}

func newClient(t testing.TB, room *Room, name string, pub Publish) *client {
	t.Helper()
	return newClientAPI(t, room, name, pub, clientAPI(t, false))
}

func newClientAPI(t testing.TB, room *Room, name string, pub Publish, api *webrtc.API) *client {
	t.Helper()
	pc, err := api.NewPeerConnection(webrtc.Configuration{BundlePolicy: webrtc.BundlePolicyMaxBundle})
	if err != nil {
		t.Fatal(err)
	}
	c := &client{t: t, name: name, pc: pc, recv: map[string]*recvTrack{}, sources: map[string]string{}, stop: make(chan struct{})}
	pc.OnTrack(c.onTrack)
	p, err := room.Join(name, c, pub)
	if err != nil {
		_ = pc.Close()
		t.Fatal(err)
	}
	c.p = p
	return c
}

// close leaves the room and closes the client's PeerConnection.
func (c *client) close() {
	select {
	case <-c.stop:
		return
	default:
	}
	close(c.stop)
	c.mu.Lock()
	c.closing = true
	c.mu.Unlock()
	c.p.Close()
	_ = c.pc.Close()
	done := make(chan struct{})
	go func() {
		c.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		c.t.Errorf("%s: the client's readers did not end after its PeerConnection closed", c.name)
	}
}

// connect sends the client's offer (with whatever it publishes) and applies
// the answer.
func (c *client) connect() {
	c.t.Helper()
	if err := c.offer(); err != nil {
		c.t.Fatalf("%s: offer: %v", c.name, err)
	}
}

func (c *client) offer() error {
	c.negMu.Lock()
	defer c.negMu.Unlock()
	if len(c.pc.GetTransceivers()) == 0 {
		// Receive only: offer recvonly transceivers, as a browser viewer does.
		for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
			if _, err := c.pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
				return err
			}
		}
	}
	offer, err := c.pc.CreateOffer(nil)
	if err != nil {
		return err
	}
	gathered := webrtc.GatheringCompletePromise(c.pc)
	if err := c.pc.SetLocalDescription(offer); err != nil {
		return err
	}
	<-gathered
	c.mu.Lock()
	sources := map[string]string{}
	for k, v := range c.sources {
		sources[k] = v
	}
	c.mu.Unlock()
	answer, err := c.p.HandleOffer(c.pc.LocalDescription().SDP, sources)
	if err != nil {
		_ = c.pc.SetLocalDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeRollback})
		return err
	}
	return c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer})
}

// OnOffer answers a server offer, or ignores it while the client's own
// offer is outstanding (the impolite side of perfect negotiation).
func (c *client) OnOffer(s string) {
	c.negMu.Lock()
	defer c.negMu.Unlock()
	answer, ignored, err := rtctest.Answer(c.pc, s)
	switch {
	case ignored:
		c.offersIgnored.Add(1)
		return
	case err != nil:
		c.fail("answering a server offer: %v", err)
		return
	}
	if err := c.p.HandleAnswer(answer); err != nil && !errors.Is(err, ErrClosed) {
		c.answerErrs.Add(1)
		c.fail("HandleAnswer: %v", err)
	}
}

func (c *client) fail(format string, a ...any) {
	select {
	case <-c.stop:
		return // closing: errors are expected
	default:
	}
	c.t.Errorf(c.name+": "+format, a...)
}

func (c *client) OnCandidate(cand webrtc.ICECandidateInit) { _ = c.pc.AddICECandidate(cand) }

func (c *client) OnTrackPublished(t TrackInfo) {
	c.mu.Lock()
	c.published = append(c.published, t)
	c.mu.Unlock()
}

func (c *client) OnTrackUnpublished(t TrackInfo) {
	c.mu.Lock()
	c.unpublished = append(c.unpublished, t)
	c.mu.Unlock()
}

func (c *client) OnConnectionState(s string) {
	c.mu.Lock()
	c.states = append(c.states, s)
	c.mu.Unlock()
}

func (c *client) unpublishedCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.unpublished)
}

// onTrack counts what arrives, remembering the first packets and every
// keyframe (the layer marker is the payload's last byte).
func (c *client) onTrack(remote *webrtc.TrackRemote, receiver *webrtc.RTPReceiver) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	c.wg.Add(2)
	defer c.wg.Done()
	rt := c.recv[remote.ID()]
	if rt == nil {
		rt = &recvTrack{streamID: remote.StreamID(), kind: remote.Kind().String()}
		c.recv[remote.ID()] = rt
	}
	c.mu.Unlock()
	go func() {
		defer c.wg.Done()
		rtctest.ReadRTCP(receiver.ReadRTCP, c.stop, func(p rtcp.Packet) {
			if sr, ok := p.(*rtcp.SenderReport); ok && webrtc.SSRC(sr.SSRC) == remote.SSRC() {
				rt.mu.Lock()
				rt.srs = append(rt.srs, rt.sample(time.Now(), sr))
				rt.mu.Unlock()
			}
		})
	}()
	buf := make([]byte, 1500)
	var h rtp.Header
	for {
		n, _, err := remote.Read(buf)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe) {
				return
			}
			continue
		}
		hl, err := h.Unmarshal(buf[:n])
		if err != nil {
			continue
		}
		payload := buf[hl:n]
		if h.Padding && len(payload) > 0 {
			payload = payload[:len(payload)-int(payload[len(payload)-1])]
		}
		key := false
		if remote.Kind() == webrtc.RTPCodecTypeVideo {
			key, _ = vp8Keyframe(payload)
		}
		var layer byte
		if len(payload) > 0 {
			layer = payload[len(payload)-1]
		}
		rt.mu.Lock()
		if rt.packets.Load() > 0 && h.SequenceNumber != rt.lastSeq+1 && int16(h.SequenceNumber-rt.lastSeq) > 0 {
			rt.gaps++
		}
		if int16(h.SequenceNumber-rt.lastSeq) > 0 || rt.packets.Load() == 0 {
			rt.lastSeq, rt.lastTS = h.SequenceNumber, h.Timestamp
		}
		rt.arrivals[rt.narrived%len(rt.arrivals)] = arrival{at: time.Now(), ts: h.Timestamp}
		rt.narrived++
		if len(rt.log) < 5000 {
			rt.log = append(rt.log, rtpSample{seq: h.SequenceNumber, ts: h.Timestamp, ssrc: h.SSRC, key: key, layer: layer})
		}
		rt.mu.Unlock()
		rt.packets.Add(1)
	}
}

// sample describes sr against what had arrived when it was made. rt.mu is
// held.
func (rt *recvTrack) sample(now time.Time, sr *rtcp.SenderReport) srSample {
	s := srSample{at: now, sr: *sr}
	made := ntpToTime(sr.NTPTime)
	for i := rt.narrived - 1; i >= 0 && i >= rt.narrived-len(rt.arrivals); i-- {
		if a := rt.arrivals[i%len(rt.arrivals)]; !a.at.After(made) {
			s.lastTS, s.packets, s.found = a.ts, int64(i+1), true
			break
		}
	}
	return s
}

// received returns, per kind, the tracks of others with at least n packets.
func (c *client) received(n int64) (audio, video int, own bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rt := range c.recv {
		if rt.streamID == c.p.streamID {
			own = true
		}
		if rt.packets.Load() < n {
			continue
		}
		if rt.kind == "audio" {
			audio++
		} else {
			video++
		}
	}
	return audio, video, own
}

func (c *client) track(id string) *recvTrack {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.recv[id]
}

// diagnose describes, for a failure message, what the client received of
// track id and what the SFU sent it: the tracks the client counts packets
// for, and the SFU's subscription to id (packets written, held or not).
func (c *client) diagnose(id string) string {
	c.mu.Lock()
	var got []string
	for k, rt := range c.recv {
		got = append(got, fmt.Sprintf("%s:%d", k, rt.packets.Load()))
	}
	c.mu.Unlock()
	sort.Strings(got)
	sub := "no subscription"
	c.p.mu.Lock()
	for t, d := range c.p.down {
		if t.info.ID == id {
			d.mu.Lock()
			sub = fmt.Sprintf("subscription: %d packets written, held %v, bound %v, ssrc %d", d.packets.Load(), d.held, d.writer != nil, d.ssrc)
			d.mu.Unlock()
		}
	}
	slots := len(c.p.slots)
	c.p.mu.Unlock()
	return fmt.Sprintf("client counts %v; SFU %s; %d transceivers", got, sub, slots)
}

func (c *client) packetsOf(id string) int64 {
	if rt := c.track(id); rt != nil {
		return rt.packets.Load()
	}
	return 0
}

// publisher writes synthetic media into a local track: VP8 frames of one
// packet (a keyframe every keyEvery frames, and after a PLI; keyframes
// carry the width) or Opus packets, each payload ending with a marker byte.
type publisher struct {
	track    *webrtc.TrackLocalStaticRTP
	sender   *webrtc.RTPSender
	video    bool
	interval time.Duration
	keyEvery atomic.Int32
	width    int
	marker   byte
	plis     atomic.Int32
	keyNow   atomic.Bool
	sent     atomic.Int64
	paused   atomic.Bool
	fill     int // filler bytes per payload
	// simulcast: the layer's rid, and the header extensions that carry it
	rid          string
	midID, ridID uint8
	mid          atomic.Pointer[string] // known after negotiation
	// RTCP feedback from the SFU (reports_test.go)
	skip      atomic.Bool  // leave out the next sequence number once
	skipped   atomic.Int32 // ... the one left out, +1 (0: none yet)
	nacked    atomic.Int32 // NACKs naming it
	rrs       atomic.Int32 // receiver reports about this sender's SSRC
	feedbacks atomic.Int32 // transport-cc feedback packets
}

func (c *client) publishVideo(id, source string, interval time.Duration) *publisher {
	c.t.Helper()
	return c.publish(id, "video", source, webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, interval)
}

func (c *client) publishAudio(id string, interval time.Duration) *publisher {
	c.t.Helper()
	return c.publish(id, "audio", "microphone", webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, interval)
}

func (c *client) publish(id, kind, source string, codec webrtc.RTPCodecCapability, interval time.Duration) *publisher {
	c.t.Helper()
	tr, err := webrtc.NewTrackLocalStaticRTP(codec, id, "stream-"+c.name)
	if err != nil {
		c.t.Fatal(err)
	}
	sender, err := c.pc.AddTrack(tr)
	if err != nil {
		c.t.Fatal(err)
	}
	c.mu.Lock()
	c.sources[id] = source
	c.mu.Unlock()
	pub := &publisher{track: tr, sender: sender, video: kind == "video", interval: interval, width: 640, fill: 40}
	pub.keyEvery.Store(30)
	c.start(pub)
	return pub
}

// start runs the publisher's writer and its sender's RTCP reader.
func (c *client) start(pub *publisher) {
	c.wg.Add(2)
	go func() {
		defer c.wg.Done()
		read := pub.sender.ReadRTCP
		if pub.rid != "" {
			read = func() ([]rtcp.Packet, interceptor.Attributes, error) { return pub.sender.ReadSimulcastRTCP(pub.rid) }
		}
		rtctest.ReadRTCP(read, c.stop, func(p rtcp.Packet) {
			switch p := p.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				pub.plis.Add(1)
				pub.keyNow.Store(true)
			case *rtcp.ReceiverReport:
				for _, r := range p.Reports {
					if webrtc.SSRC(r.SSRC) == pub.sender.GetParameters().Encodings[0].SSRC {
						pub.rrs.Add(1)
					}
				}
			case *rtcp.TransportLayerCC:
				pub.feedbacks.Add(1)
			case *rtcp.TransportLayerNack:
				if sk := pub.skipped.Load(); sk != 0 {
					for _, n := range p.Nacks {
						hit := false
						n.Range(func(seq uint16) bool {
							hit = hit || seq == uint16(sk-1)
							return !hit
						})
						if hit {
							pub.nacked.Add(1)
						}
					}
				}
			}
		})
	}()
	go func() {
		defer c.wg.Done()
		tick := time.NewTicker(pub.interval)
		defer tick.Stop()
		seq := uint16(1000)
		ts := uint32(5000)
		frame := 0
		for {
			select {
			case <-c.stop:
				return
			case <-tick.C:
			}
			if pub.paused.Load() {
				continue
			}
			var mid *string
			if pub.rid != "" {
				if mid = pub.mid.Load(); mid == nil {
					continue // not negotiated yet
				}
			}
			var payload []byte
			if pub.video {
				key := frame%int(pub.keyEvery.Load()) == 0 || pub.keyNow.Swap(false)
				payload = vp8TestPayload(key, pub.width, uint16(frame), pub.fill, pub.marker)
				ts += 3000
			} else {
				payload = []byte{0xfc, 0xff, 0xfe, pub.marker}
				ts += 960
			}
			frame++
			pkt := &rtp.Packet{Header: rtp.Header{Version: 2, Marker: true, SequenceNumber: seq, Timestamp: ts}, Payload: payload}
			if mid != nil {
				_ = pkt.Header.SetExtension(pub.midID, []byte(*mid))
				_ = pkt.Header.SetExtension(pub.ridID, []byte(pub.rid))
			}
			seq++
			if pub.skip.Swap(false) {
				pub.skipped.Store(int32(seq) + 1)
				seq++
			}
			if err := pub.track.WriteRTP(pkt); err == nil {
				pub.sent.Add(1)
			}
		}
	}()
}

// vp8TestPayload is a one-packet VP8 frame: descriptor with a 15-bit
// picture id, a keyframe header with the width when key, and the marker.
func vp8TestPayload(key bool, width int, picture uint16, fill int, marker byte) []byte {
	p := []byte{0x90, 0x80, 0x80 | byte(picture>>8&0x7f), byte(picture)}
	if key {
		p = append(p, 0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0, 0, 0, 0)
		binary.LittleEndian.PutUint16(p[len(p)-4:], uint16(width))
		binary.LittleEndian.PutUint16(p[len(p)-2:], uint16(width*3/4))
	} else {
		p = append(p, 0x11, 0x00, 0x00)
	}
	p = append(p, make([]byte, fill)...)
	return append(p, marker)
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t testing.TB, timeout time.Duration, cond func() bool, format string, a ...any) {
	t.Helper()
	if !within(timeout, cond) {
		t.Fatalf("timed out: "+format, a...)
	}
}

// within polls cond until it holds (true) or the timeout passes (false);
// for goroutines other than the test's, which may not call t.Fatal.
func within(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// mediaExtIDs returns the ids the client negotiated for mid and rid.
func mediaExtIDs(s *webrtc.RTPSender) (mid, rid uint8) {
	for _, e := range s.GetParameters().HeaderExtensions {
		switch e.URI {
		case sdp.SDESMidURI:
			mid = uint8(e.ID)
		case sdp.SDESRTPStreamIDURI:
			rid = uint8(e.ID)
		}
	}
	return mid, rid
}

// publishSimulcast sends one VP8 track in len(rids) layers, the first the
// narrowest; layer i has width widths[i] and marker byte i+1.
func (c *client) publishSimulcast(id string, rids []string, widths []int, interval time.Duration) []*publisher {
	c.t.Helper()
	var pubs []*publisher
	var sender *webrtc.RTPSender
	for i, rid := range rids {
		tr, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000},
			id, "stream-"+c.name, webrtc.WithRTPStreamID(rid))
		if err != nil {
			c.t.Fatal(err)
		}
		if i == 0 {
			if sender, err = c.pc.AddTrack(tr); err != nil {
				c.t.Fatal(err)
			}
		} else if err := sender.AddEncoding(tr); err != nil {
			c.t.Fatal(err)
		}
		pub := &publisher{track: tr, sender: sender, video: true, interval: interval, width: widths[i], fill: 40 * (i + 1), marker: byte(i + 1), rid: rid}
		pub.keyEvery.Store(25)
		pubs = append(pubs, pub)
	}
	midID, ridID := mediaExtIDs(sender)
	for _, pub := range pubs {
		pub.midID, pub.ridID = midID, ridID
		c.start(pub)
	}
	c.mu.Lock()
	c.sources[id] = "camera"
	c.mu.Unlock()
	return pubs
}

// setMids tells simulcast publishers the mid their packets must carry.
func (c *client) setMids(pubs []*publisher) {
	for _, tr := range c.pc.GetTransceivers() {
		if tr.Sender() == pubs[0].sender {
			mid := tr.Mid()
			for _, p := range pubs {
				p.mid.Store(&mid)
			}
		}
	}
}

// lines returns the SDP lines that start with prefix.
func lines(s, prefix string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return out
}

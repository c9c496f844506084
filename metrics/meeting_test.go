package metrics_test

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/parley-meet/parley/internal/rtctest"
	"github.com/parley-meet/parley/metrics"
	"github.com/parley-meet/parley/sfu"
)

// meetingClient is an in-process stand-in for a browser in a room: a Pion
// PeerConnection that publishes one synthetic Opus track through
// sfu.Room.Join and counts the RTP packets it receives.
type meetingClient struct {
	t    *testing.T
	name string
	pc   *webrtc.PeerConnection
	p    *sfu.Participant

	negMu sync.Mutex // one negotiation step at a time

	track    *webrtc.TrackLocalStaticRTP
	sent     atomic.Int64
	received atomic.Int64
	paused   atomic.Bool

	stop chan struct{}
	wg   sync.WaitGroup // the writer and the track readers
}

func joinMeeting(t *testing.T, room *sfu.Room, name string) *meetingClient {
	t.Helper()
	m := &webrtc.MediaEngine{}
	if err := m.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"},
		PayloadType:        111,
	}, webrtc.RTPCodecTypeAudio); err != nil {
		t.Fatal(err)
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		t.Fatal(err)
	}
	api := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir),
		webrtc.WithSettingEngine(rtctest.LoopbackSettingEngine()))
	pc, err := api.NewPeerConnection(webrtc.Configuration{BundlePolicy: webrtc.BundlePolicyMaxBundle})
	if err != nil {
		t.Fatal(err)
	}
	c := &meetingClient{t: t, name: name, pc: pc, stop: make(chan struct{})}
	pc.OnTrack(c.onTrack)
	c.track, err = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2},
		name+"-mic", "stream-"+name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.AddTrack(c.track); err != nil {
		t.Fatal(err)
	}
	if c.p, err = room.Join(name, c, sfu.Publish{Audio: true}); err != nil {
		_ = pc.Close()
		t.Fatal(err)
	}
	t.Cleanup(c.close)
	c.wg.Add(1)
	go c.write()
	c.offer()
	return c
}

// offer sends the client's offer and applies the SFU's answer.
func (c *meetingClient) offer() {
	c.t.Helper()
	c.negMu.Lock()
	defer c.negMu.Unlock()
	offer, err := c.pc.CreateOffer(nil)
	if err != nil {
		c.t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(c.pc)
	if err := c.pc.SetLocalDescription(offer); err != nil {
		c.t.Fatal(err)
	}
	<-gathered
	answer, err := c.p.HandleOffer(c.pc.LocalDescription().SDP, map[string]string{c.track.ID(): "microphone"})
	if err != nil {
		c.t.Fatalf("%s: HandleOffer: %v", c.name, err)
	}
	if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		c.t.Fatal(err)
	}
}

// write sends a 20 ms Opus packet every 10 ms until stop (paused: none).
func (c *meetingClient) write() {
	defer c.wg.Done()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	seq, ts := uint16(1), uint32(0)
	for {
		select {
		case <-c.stop:
			return
		case <-tick.C:
		}
		if c.paused.Load() {
			continue
		}
		ts += 960
		pkt := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: ts}, Payload: []byte{0xfc, 0xff, 0xfe}}
		seq++
		if err := c.track.WriteRTP(pkt); err == nil {
			c.sent.Add(1)
		}
	}
}

func (c *meetingClient) onTrack(remote *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
	select {
	case <-c.stop:
		return
	default:
	}
	c.wg.Add(1)
	defer c.wg.Done()
	buf := make([]byte, 1500)
	for {
		if _, _, err := remote.Read(buf); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe) {
				return
			}
			continue
		}
		c.received.Add(1)
	}
}

func (c *meetingClient) close() {
	select {
	case <-c.stop:
		return
	default:
	}
	close(c.stop)
	c.p.Close()
	_ = c.pc.Close()
	c.wg.Wait()
}

// The sfu.Events of the client's participant: server offers are answered
// unless the client's own offer is outstanding (the SFU then offers again).
func (c *meetingClient) OnOffer(s string) {
	c.negMu.Lock()
	defer c.negMu.Unlock()
	if answer, ignored, err := rtctest.Answer(c.pc, s); err == nil && !ignored {
		_ = c.p.HandleAnswer(answer)
	}
}

func (c *meetingClient) OnCandidate(cand webrtc.ICECandidateInit) { _ = c.pc.AddICECandidate(cand) }
func (c *meetingClient) OnTrackPublished(sfu.TrackInfo)           {}
func (c *meetingClient) OnTrackUnpublished(sfu.TrackInfo)         {}
func (c *meetingClient) OnConnectionState(string)                 {}

// scrape GETs /metrics and parses it.
func scrape(t *testing.T, c *http.Client, base string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := c.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %d", resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing the scrape: %v", err)
	}
	return fams
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A real meeting on loopback: two Pion clients each publish Opus through
// the SFU and receive the other's; the metrics endpoint, scraped over
// HTTP, shows two participants and forwarded packets that match what the
// clients received.
func TestMeetingMetrics(t *testing.T) {
	s, err := sfu.New(sfu.Config{ListenIP: "127.0.0.1", TCPPort: -1,
		AllowedRemote: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	reg := metrics.New("test")
	reg.AddMedia(metrics.SFU(s))
	base, _ := serve(t, reg) // stopped after the SFU (cleanups run last first)
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("closing the SFU: %v", err)
		}
	})
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()

	room := s.NewRoom("meeting")
	alice := joinMeeting(t, room, "alice")
	bob := joinMeeting(t, room, "bob")
	clients := []*meetingClient{alice, bob}
	received := func() int64 { return alice.received.Load() + bob.received.Load() }
	waitFor(t, "both clients to receive the other's audio", func() bool {
		return alice.received.Load() >= 50 && bob.received.Load() >= 50
	})

	// While media flows. The SFU counts a packet when it has written it to
	// the socket, a client when it has read it: the counter taken between
	// two readings of the clients' counts lies between the first (minus
	// packets lost before a client read them, see below) and the second
	// plus the packets in flight then: a few per subscription (one every
	// 10 ms, over loopback), bounded generously by inFlight.
	const inFlight = 50
	before := received()
	f1 := scrape(t, hc, base)
	after := received()
	fwd1 := sample(t, f1, "parley_media_forwarded_packets_total")
	if fwd1 < float64(before)-lossSlack(before) || fwd1 > float64(after+inFlight) {
		t.Errorf("forwarded %v while the clients had received %d then %d", fwd1, before, after)
	}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"parley_media_rooms", nil, 1},
		{"parley_media_participants", []string{"state=connected"}, 2},
		{"parley_media_participant_transports", []string{"transport=udp"}, 2},
		{"parley_media_published_tracks", []string{"kind=audio", "source=microphone"}, 2},
		{"parley_media_subscribed_tracks", []string{"kind=audio"}, 2},
	} {
		if got := sample(t, f1, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	var participants float64
	for _, m := range f1["parley_media_participants"].GetMetric() {
		participants += m.GetGauge().GetValue()
	}
	if participants != 2 {
		t.Errorf("%v participants in every state, want 2", participants)
	}

	// More media, then none: once the clients' counts settle nothing is in
	// flight, and the counter must equal what the clients received, but
	// for packets lost on the way (loopback loses none in practice; a
	// packet that reached a client before its track was set up is not
	// read): lossSlack allows 2%.
	waitFor(t, "more packets", func() bool { return received() >= after+100 })
	for _, c := range clients {
		c.paused.Store(true)
	}
	last, stable := received(), 0
	waitFor(t, "the clients' counts to settle", func() bool {
		if n := received(); n != last {
			last, stable = n, 0
			return false
		}
		stable++
		return stable >= 10
	})
	f2 := scrape(t, hc, base)
	total := received()
	fwd2 := sample(t, f2, "parley_media_forwarded_packets_total")
	if fwd2 < float64(total) || fwd2 > float64(total)+lossSlack(total) {
		t.Errorf("forwarded %v, the clients received %d", fwd2, total)
	}
	t.Logf("forwarded %v between %d and %d received; then forwarded %v, received %d", fwd1, before, after, fwd2, total)
	if fwd2 <= fwd1 {
		t.Errorf("the forwarded counter did not grow: %v then %v", fwd1, fwd2)
	}
	// Every packet the SFU received went to one subscriber (two people,
	// one track each), but those that came before the other had joined.
	recv2 := sample(t, f2, "parley_media_received_packets_total")
	sent := alice.sent.Load() + bob.sent.Load()
	if recv2 < fwd2 || recv2 > float64(sent) {
		t.Errorf("received %v, forwarded %v, the clients sent %d", recv2, fwd2, sent)
	}
}

// lossSlack is the number of packets out of n that may be lost between the
// SFU's socket and a client's reader.
func lossSlack(n int64) float64 { return 2 + 0.02*float64(n) }

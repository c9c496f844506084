package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/fasthttp/websocket"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/parley-meet/parley/internal/rtctest"
)

// relayOnlyScript makes every RTCPeerConnection of a tab gather and use
// relay candidates only, as a browser behind a firewall that lets nothing
// but TURN through would. It is added after recorderScript, so it wraps
// the recording class.
const relayOnlyScript = `(() => {
	const Base = window.RTCPeerConnection;
	window.RTCPeerConnection = class extends Base {
		constructor(config, ...rest) {
			super({...(config || {}), iceTransportPolicy: 'relay'}, ...rest);
		}
		setConfiguration(config) {
			return super.setConfiguration({...(config || {}), iceTransportPolicy: 'relay'});
		}
	};
})();`

// relayServerFlags: the SFU and the relay may reach loopback peers (the
// browsers, the SFU itself); the default policies refuse loopback.
var relayServerFlags = []string{"--media-allowed-remote", "127.0.0.0/8", "--turn-allowed-peers", "127.0.0.0/8"}

// TestRelay: two people meet, one of them in a browser that may use relay
// candidates only: every packet between that browser and the SFU goes
// through Parley's embedded TURN server, with the credentials the welcome
// carried. Each decodes the other's video; the restricted browser's chosen
// candidate pair is a relayed one. Then a Pion client, also relay-only,
// joins with an API token through the public protocol and exchanges media
// with both.
func TestRelay(t *testing.T) {
	parleyBin, chromium := environment(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)

	srv := startParley(ctx, t, parleyBin, relayServerFlags...)
	relayed, direct := browserPage(ctx, t, chromium), browserPage(ctx, t, chromium)
	hostAcct := account{username: "rita.relay", displayName: "Rita Relay", password: "pylon estuary quartz 8812"}
	memberAcct := account{username: "dino.direct", displayName: "Dino Direct", password: "marble cobalt fennel 2290"}
	roomID := hostAndMember(ctx, srv, relayed, direct, hostAcct, memberAcct, "Behind the firewall")

	installRecorder(relayed)
	relayed.do("allow relay candidates only", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, cdppage.AddScriptToEvaluateOnNewDocument,
			cdppage.AddScriptToEvaluateOnNewDocumentParams{Source: relayOnlyScript})
		return err
	}))
	installRecorder(direct)
	relayed.do("open the meeting", chromedp.Navigate(srv.publicURL+"/rooms/"+roomID))
	direct.do("open the meeting", chromedp.Navigate(srv.publicURL+"/rooms/"+roomID))
	joinMeeting(relayed, "relayed", hostAcct.displayName, true)
	joinMeeting(direct, "direct", memberAcct.displayName, true)
	relayedID, directID := selfID(relayed), selfID(direct)

	expectDecodes(direct, "direct", relayed, "relayed", relayedID)
	expectDecodes(relayed, "relayed", direct, "direct", directID)
	pair := evalAwait[map[string]string](relayed, "read the selected candidate pair", `(async () => {
		const stats = await `+livePC+`.getStats();
		let pairId = '';
		stats.forEach(s => { if (s.type === 'transport' && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId; });
		const pair = stats.get(pairId);
		const local = pair && stats.get(pair.localCandidateId);
		return {local: local ? local.candidateType : '', protocol: local ? (local.relayProtocol || '') : '', url: local ? (local.url || '') : ''};
	})()`)
	t.Logf("the relay-only browser's selected local candidate: %v", pair)
	if pair["local"] != "relay" || !strings.HasPrefix(pair["url"], "turn:127.0.0.1:") {
		t.Errorf("the relay-only browser's selected local candidate is %v, want a relay candidate from Parley's TURN server", pair)
	}

	// A Pion client, relay only, with a token minted by the host's session.
	status, body := pageAPI(relayed, "POST", "/api/v1/auth/token", map[string]any{})
	if status != 200 {
		t.Fatalf("minting an API token: %d %s", status, body)
	}
	var tok struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal([]byte(body), &tok); err != nil || tok.Token == "" {
		t.Fatalf("token answer %s: %v", body, err)
	}
	bot := joinRelayBot(ctx, t, srv, roomID, tok.Token)
	defer bot.close()
	waitUntil(direct, "the bot receives both browsers' video", 30*time.Second, func() bool {
		return bot.videoPacketsFrom(relayedID) > 50 && bot.videoPacketsFrom(directID) > 50
	})
	waitUntil(direct, "the direct browser receives the bot's video", 30*time.Second, func() bool {
		return packetsReceivedOf(direct, bot.trackID) > 50
	})
	waitUntil(relayed, "the relay-only browser receives the bot's video", 30*time.Second, func() bool {
		return packetsReceivedOf(relayed, bot.trackID) > 50
	})
	if err := bot.failure(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*page{relayed, direct} {
		p.watcher.check(t, "relay meeting")
	}
}

// packetsReceivedOf is how many RTP packets p received of the published
// track trackID (found through the a=msid of the m-section it arrives on).
func packetsReceivedOf(p *page, trackID string) int {
	p.t.Helper()
	return evalAwait[int](p, "read packetsReceived", `(async () => {
		const pc = `+livePC+`;
		if (!pc || !pc.remoteDescription) return 0;
		let mid = null;
		for (const section of pc.remoteDescription.sdp.split('\nm=')) {
			const m = section.match(/a=mid:(\S+)/), msid = section.match(/a=msid:\S+ (\S+)/);
			if (m && msid && msid[1] === `+js(trackID)+`) mid = m[1];
		}
		const tr = pc.getTransceivers().find(t => t.mid === mid);
		if (!tr) return 0;
		let n = 0;
		(await pc.getStats(tr.receiver.track)).forEach(s => { if (s.type === 'inbound-rtp') n = s.packetsReceived || 0; });
		return n;
	})()`)
}

// relayBot is a meeting participant in Go: a signaling socket with an API
// token and a relay-only Pion PeerConnection that publishes a synthetic
// VP8 track and counts the video it receives per publisher.
type relayBot struct {
	t       *testing.T
	ws      *websocket.Conn
	pc      *webrtc.PeerConnection
	trackID string

	writeMu sync.Mutex
	mu      sync.Mutex
	video   rtctest.Counters // video packets by publisher stream id (= participant id)
	types   map[string]bool  // the types of the signaling messages received
	err     error
	stop    chan struct{}
	wg      sync.WaitGroup
}

func joinRelayBot(ctx context.Context, t *testing.T, srv *parleyServer, roomID, token string) *relayBot {
	t.Helper()
	wsURL := "wss" + strings.TrimPrefix(srv.publicURL, "https") + "/api/v1/rooms/" + roomID + "/signal"
	d := websocket.Dialer{
		TLSClientConfig:  &tls.Config{InsecureSkipVerify: true}, // the test server's self-signed certificate
		HandshakeTimeout: 10 * time.Second,
	}
	h := http.Header{}
	h.Set("Authorization", "Bearer "+token)
	h.Set("Origin", srv.publicURL)
	ws, res, err := d.DialContext(ctx, wsURL, h)
	if err != nil {
		status := 0
		if res != nil {
			status = res.StatusCode
		}
		t.Fatalf("bot: opening the signaling socket: %v (HTTP %d)", err, status)
	}
	b := &relayBot{t: t, ws: ws, trackID: "bot-camera-" + strconv.FormatInt(time.Now().UnixNano(), 36), stop: make(chan struct{})}
	b.send(map[string]any{"type": "join", "display_name": "Relay bot"})
	var welcome struct {
		Type       string             `json:"type"`
		ICEServers []webrtc.ICEServer `json:"ice_servers"`
	}
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for welcome.Type != "welcome" {
		if err := ws.ReadJSON(&welcome); err != nil {
			t.Fatalf("bot: waiting for welcome: %v", err)
		}
	}
	_ = ws.SetReadDeadline(time.Time{})
	if len(welcome.ICEServers) == 0 || welcome.ICEServers[0].Username == "" {
		t.Fatalf("bot: the welcome has no TURN server with a credential: %+v", welcome.ICEServers)
	}

	se := rtctest.LoopbackSettingEngine()
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	api := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se))
	pc, err := api.NewPeerConnection(webrtc.Configuration{
		ICEServers:         welcome.ICEServers,
		ICETransportPolicy: webrtc.ICETransportPolicyRelay,
		BundlePolicy:       webrtc.BundlePolicyMaxBundle,
	})
	if err != nil {
		t.Fatal(err)
	}
	b.pc = pc
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, b.trackID, "bot-stream")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c != nil {
			b.send(map[string]any{"type": "candidate", "candidate": c.ToJSON()})
		}
	})
	pc.OnTrack(func(remote *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		n := b.video.Counter(remote.StreamID())
		buf := make([]byte, 1500)
		for {
			if _, _, err := remote.Read(buf); err != nil {
				return
			}
			if remote.Kind() == webrtc.RTPCodecTypeVideo {
				n.Add(1)
			}
		}
	})
	offer, err := pc.CreateOffer(nil)
	if err == nil {
		err = pc.SetLocalDescription(offer)
	}
	if err != nil {
		t.Fatal(err)
	}
	b.send(map[string]any{"type": "offer", "sdp": pc.LocalDescription().SDP, "tracks": map[string]string{b.trackID: "camera"}})

	b.wg.Add(2)
	go b.read()
	go b.publish(track)
	return b
}

func (b *relayBot) send(v any) {
	b.writeMu.Lock()
	defer b.writeMu.Unlock()
	if err := b.ws.WriteJSON(v); err != nil {
		b.fail(err)
	}
}

func (b *relayBot) fail(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case <-b.stop:
		return // closing: errors are expected
	default:
	}
	if b.err == nil {
		b.err = err
	}
}

func (b *relayBot) failure() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// read applies the server's signaling: answers, offers (answered) and
// candidates.
func (b *relayBot) read() {
	defer b.wg.Done()
	for {
		var msg struct {
			Type      string                   `json:"type"`
			SDP       string                   `json:"sdp"`
			Candidate *webrtc.ICECandidateInit `json:"candidate"`
			Code      string                   `json:"code"`
		}
		if err := b.ws.ReadJSON(&msg); err != nil {
			b.fail(err)
			return
		}
		b.mu.Lock()
		if b.types == nil {
			b.types = map[string]bool{}
		}
		b.types[msg.Type] = true
		b.mu.Unlock()
		var err error
		switch msg.Type {
		case "answer":
			err = b.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: msg.SDP})
		case "offer":
			if err = b.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: msg.SDP}); err != nil {
				break
			}
			var answer webrtc.SessionDescription
			if answer, err = b.pc.CreateAnswer(nil); err == nil {
				if err = b.pc.SetLocalDescription(answer); err == nil {
					b.send(map[string]any{"type": "answer", "sdp": b.pc.LocalDescription().SDP})
				}
			}
		case "candidate":
			if msg.Candidate != nil {
				err = b.pc.AddICECandidate(*msg.Candidate)
			}
		case "error":
			err = errors.New("server error " + msg.Code)
		}
		if err != nil {
			b.fail(err)
		}
	}
}

// publish sends a synthetic VP8 stream (one-packet frames, a keyframe
// every 30) at 25 frames per second.
func (b *relayBot) publish(track *webrtc.TrackLocalStaticRTP) {
	defer b.wg.Done()
	tick := time.NewTicker(40 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-b.stop:
			return
		case <-tick.C:
		}
		// VP8 payload descriptor (S=1, partition 0), then a frame header:
		// bit 0 of the first byte clear on keyframes, with the start code
		// and 320x240.
		payload := []byte{0x10, 0x01, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00}
		if i%30 == 0 {
			payload[1] = 0x00
		}
		payload = append(payload, make([]byte, 200)...)
		pkt := &rtp.Packet{Header: rtp.Header{Version: 2, Marker: true, SequenceNumber: uint16(i), Timestamp: uint32(i * 3600)}, Payload: payload}
		_ = track.WriteRTP(pkt)
	}
}

func (b *relayBot) videoPacketsFrom(participant string) int64 { return b.video.Get(participant) }

// gotType reports whether the bot has received a signaling message of this
// type, such as "kicked".
func (b *relayBot) gotType(typ string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.types[typ]
}

func (b *relayBot) close() {
	select {
	case <-b.stop:
		return
	default:
	}
	b.mu.Lock()
	close(b.stop)
	b.mu.Unlock()
	b.send(map[string]any{"type": "leave"})
	_ = b.pc.Close()
	_ = b.ws.Close()
	b.wg.Wait()
}

package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/interceptor"
	"github.com/pion/logging"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/parley-meet/parley/internal/rtctest"
)

// newPionAPI is the clients' Pion API: loopback only (no mDNS), DTLS-SRTP
// with AES-128-GCM first as the SFU prefers, and an EMPTY interceptor
// registry (no NACK, reports or TWCC: the generator spends its CPU on
// receiving).
func newPionAPI() (*webrtc.API, error) {
	se := rtctest.LoopbackSettingEngine()
	se.LoggerFactory = &logging.DefaultLoggerFactory{Writer: io.Discard}
	se.SetSRTPProtectionProfiles(dtls.SRTP_AEAD_AES_128_GCM, dtls.SRTP_AEAD_AES_256_GCM, dtls.SRTP_AES128_CM_HMAC_SHA1_80)
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		return nil, err
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se),
		webrtc.WithInterceptorRegistry(&interceptor.Registry{})), nil
}

// trackStats counts one received track. Only its reader goroutine writes.
type trackStats struct {
	received atomic.Int64
	maxExt   atomic.Int64 // highest extended sequence number
	firstExt int64
	video    bool
	room     string // the receiving client's
	lat      Hist   // one-way latency, µs, while recording
}

// stats is everything the clients measure.
type stats struct {
	recording atomic.Bool

	mu     sync.Mutex
	tracks []*trackStats
	joins  []time.Duration // socket open → first media packet (or welcome, sockets only)
	errs   []string

	chatLat  Hist // chat fan-out latency, µs
	chatRecv atomic.Int64
}

func (s *stats) addTrack(t *trackStats) {
	s.mu.Lock()
	s.tracks = append(s.tracks, t)
	s.mu.Unlock()
}

func (s *stats) addJoin(d time.Duration) {
	s.mu.Lock()
	s.joins = append(s.joins, d)
	s.mu.Unlock()
}

func (s *stats) errorf(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.errs) < 50 {
		s.errs = append(s.errs, fmt.Sprintf(format, args...))
	}
}

// trackSnap is a track's counters at one moment.
type trackSnap struct{ received, maxExt int64 }

func (s *stats) snapshot() map[*trackStats]trackSnap {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[*trackStats]trackSnap, len(s.tracks))
	for _, t := range s.tracks {
		m[t] = trackSnap{t.received.Load(), t.maxExt.Load()}
	}
	return m
}

// client is one participant: a signaling socket and, unless it only
// idles or chats, a PeerConnection.
type client struct {
	name         string
	room         string
	node         int // the index of the -url its socket dialed
	s            *sock
	pc           *webrtc.PeerConnection
	st           *stats
	start        time.Time
	gotData      atomic.Bool
	joined       atomic.Int64 // its join time (ns; 0: not yet)
	pending      atomic.Bool
	stop         chan struct{}
	wg           sync.WaitGroup
	chat         bool // measure chat latency on this client
	expectsMedia bool
	joinOnVideo  bool        // join time ends at the first video packet
	keyframe     atomic.Bool // a keyframe was asked for (PLI, FIR)
}

type clientOpts struct {
	video, audio bool   // publish
	media        bool   // open a PeerConnection
	chat         bool   // record chat latency
	expect       bool   // media is expected to arrive (waitMedia)
	room         string // the room to join (default: the run's)
	api          *api   // the account to join as (default: the run's)
	joinOnVideo  bool   // the join ends at the first video packet, not the first packet
}

// newClient opens the socket, joins and, with media, offers.
func newClient(ctx context.Context, a *api, pion *webrtc.API, room, name string, st *stats, o clientOpts) (*client, error) {
	c := &client{name: name, room: room, st: st, start: time.Now(), stop: make(chan struct{}), chat: o.chat, expectsMedia: o.expect, joinOnVideo: o.joinOnVideo}
	s, err := dial(ctx, a, room)
	if err != nil {
		return nil, err
	}
	c.s = s
	if _, err := s.join(name); err != nil {
		s.close()
		return nil, err
	}
	if !o.media {
		c.joined.Store(int64(time.Since(c.start)))
		st.addJoin(time.Duration(c.joined.Load()))
		c.wg.Add(1)
		go c.readLoop()
		return c, nil
	}
	pc, err := pion.NewPeerConnection(webrtc.Configuration{BundlePolicy: webrtc.BundlePolicyMaxBundle})
	if err != nil {
		s.close()
		return nil, err
	}
	c.pc = pc
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		c.wg.Add(1)
		go c.readTrack(tr)
	})
	pc.OnConnectionStateChange(func(cs webrtc.PeerConnectionState) {
		if cs == webrtc.PeerConnectionStateFailed {
			st.errorf("%s: PeerConnection failed", name)
		}
	})
	tracks := map[string]string{}
	var video, audio *webrtc.TrackLocalStaticRTP
	if o.video {
		video, err = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: vp8ClockRate}, "v-"+name, "s-"+name)
		if err == nil {
			err = c.addTrack(video)
		}
		tracks["v-"+name] = "camera"
	}
	if err == nil && o.audio {
		audio, err = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: opusClockRate, Channels: 2}, "a-"+name, "s-"+name)
		if err == nil {
			err = c.addTrack(audio)
		}
		tracks["a-"+name] = "microphone"
	}
	if err == nil && !o.video && !o.audio {
		for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
			if _, err = pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
				break
			}
		}
	}
	if err == nil {
		err = c.offer(tracks)
	}
	if err != nil {
		c.close()
		return nil, err
	}
	c.wg.Add(1)
	go c.readLoop()
	if video != nil {
		c.wg.Add(1)
		go c.sendVideo(video)
	}
	if audio != nil {
		c.wg.Add(1)
		go c.sendAudio(audio)
	}
	return c, nil
}

func (c *client) addTrack(t *webrtc.TrackLocalStaticRTP) error {
	sender, err := c.pc.AddTrack(t)
	if err != nil {
		return err
	}
	c.wg.Add(1)
	go func() { // read RTCP: a PLI or FIR asks for a keyframe
		defer c.wg.Done()
		buf := make([]byte, 1500)
		for {
			n, _, err := sender.Read(buf)
			if err != nil {
				return
			}
			pkts, err := rtcp.Unmarshal(buf[:n])
			if err != nil {
				continue
			}
			for _, p := range pkts {
				switch p.(type) {
				case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
					c.keyframe.Store(true)
				}
			}
		}
	}()
	return nil
}

func (c *client) offer(tracks map[string]string) error {
	offer, err := c.pc.CreateOffer(nil)
	if err != nil {
		return err
	}
	gathered := webrtc.GatheringCompletePromise(c.pc)
	if err := c.pc.SetLocalDescription(offer); err != nil {
		return err
	}
	<-gathered
	c.pending.Store(true)
	m := map[string]any{"type": "offer", "sdp": c.pc.LocalDescription().SDP}
	if len(tracks) > 0 {
		m["tracks"] = tracks
	}
	return c.s.send(m)
}

// readLoop handles the socket: negotiation (the client is the impolite
// peer), chat; everything else is dropped. The library answers pings.
func (c *client) readLoop() {
	defer c.wg.Done()
	for {
		m, err := c.s.read()
		if err != nil {
			select {
			case <-c.stop:
			default:
				c.st.errorf("%s: socket: %v", c.name, err)
			}
			return
		}
		switch m["type"] {
		case "offer":
			if c.pc == nil || c.pending.Load() {
				continue // glare: the server withdraws its offer and offers again
			}
			sdp, _ := m["sdp"].(string)
			if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sdp}); err != nil {
				c.st.errorf("%s: server offer: %v", c.name, err)
				continue
			}
			ans, err := c.pc.CreateAnswer(nil)
			if err == nil {
				gathered := webrtc.GatheringCompletePromise(c.pc)
				err = c.pc.SetLocalDescription(ans)
				<-gathered
			}
			if err != nil {
				c.st.errorf("%s: answer: %v", c.name, err)
				continue
			}
			_ = c.s.send(map[string]any{"type": "answer", "sdp": c.pc.LocalDescription().SDP})
		case "answer":
			if c.pc == nil {
				continue
			}
			c.pending.Store(false)
			sdp, _ := m["sdp"].(string)
			if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sdp}); err != nil {
				c.st.errorf("%s: server answer: %v", c.name, err)
			}
		case "candidate":
			if c.pc == nil {
				continue
			}
			if cand, ok := m["candidate"].(map[string]any); ok {
				if s, _ := cand["candidate"].(string); s != "" {
					_ = c.pc.AddICECandidate(webrtc.ICECandidateInit{Candidate: s})
				}
			}
		case "chat":
			if !c.chat || !c.st.recording.Load() {
				continue
			}
			text, _ := m["text"].(string)
			if rest, ok := strings.CutPrefix(text, chatPrefix); ok {
				if ns, err := strconv.ParseInt(rest, 10, 64); err == nil {
					c.st.chatLat.Record((time.Now().UnixNano() - ns) / 1000)
					c.st.chatRecv.Add(1)
				}
			}
		case "error":
			c.st.errorf("%s: server error %v: %v (%v)", c.name, m["code"], m["message"], m["request"])
		}
	}
}

const chatPrefix = "parley-load t="

// readTrack reads a received track into its own buffer and counts it.
func (c *client) readTrack(tr *webrtc.TrackRemote) {
	defer c.wg.Done()
	t := &trackStats{video: tr.Kind() == webrtc.RTPCodecTypeVideo, room: c.room}
	buf := make([]byte, 1500)
	var cycles int64
	var last uint16
	first := true
	for {
		n, _, err := tr.Read(buf)
		if err != nil {
			return
		}
		now := time.Now().UnixNano()
		if n < 12 {
			continue
		}
		seq := binary.BigEndian.Uint16(buf[2:])
		if first {
			first = false
			last = seq
			t.firstExt = int64(seq)
			t.maxExt.Store(int64(seq))
			t.received.Store(1)
			c.st.addTrack(t)
			if (t.video || !c.joinOnVideo) && !c.gotData.Swap(true) {
				c.joined.Store(int64(time.Since(c.start)))
				c.st.addJoin(time.Duration(c.joined.Load()))
			}
		} else {
			diff := seq - last // modulo 2^16
			if diff < 0x8000 && diff != 0 {
				if seq < last {
					cycles++
				}
				last = seq
				t.maxExt.Store(cycles<<16 | int64(seq))
			}
			t.received.Add(1)
		}
		if c.st.recording.Load() {
			if p, ok := rtpPayload(buf[:n]); ok {
				if ts, ok := sendTime(p); ok {
					t.lat.Record((now - ts) / 1000)
				}
			}
		}
	}
}

func (c *client) sendVideo(t *webrtc.TrackLocalStaticRTP) {
	defer c.wg.Done()
	var pk vp8Packetizer
	tick := time.NewTicker(time.Second / vp8FPS)
	defer tick.Stop()
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2}}
	var lastKey time.Time
	for {
		select {
		case <-c.stop:
			return
		case now := <-tick.C:
			key := now.Sub(lastKey) >= vp8KeyEvery || c.keyframe.Swap(false)
			if key {
				lastKey = now
			}
			payloads := pk.packetize(key, vp8FrameBytes, time.Now())
			for i, p := range payloads {
				pkt.Marker = i == len(payloads)-1
				pkt.Payload = p
				if err := t.WriteRTP(pkt); err != nil {
					return
				}
				pkt.SequenceNumber++
			}
			pkt.Timestamp += vp8ClockRate / vp8FPS
		}
	}
}

func (c *client) sendAudio(t *webrtc.TrackLocalStaticRTP) {
	defer c.wg.Done()
	payload := make([]byte, opusPayloadSize)
	payload[0] = 0xfc // TOC: CELT-only FB 20 ms, one frame
	tick := time.NewTicker(time.Second / opusPerSecond)
	defer tick.Stop()
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2, Marker: true}}
	for {
		select {
		case <-c.stop:
			return
		case <-tick.C:
			binary.BigEndian.PutUint64(payload[len(payload)-tsLen:], uint64(time.Now().UnixNano()))
			pkt.Payload = payload
			if err := t.WriteRTP(pkt); err != nil {
				return
			}
			pkt.Marker = false
			pkt.SequenceNumber++
			pkt.Timestamp += opusClockRate / opusPerSecond
		}
	}
}

func (c *client) close() {
	select {
	case <-c.stop:
		return
	default:
	}
	close(c.stop)
	if c.pc != nil {
		_ = c.pc.Close()
	}
	c.s.close()
	c.wg.Wait()
}

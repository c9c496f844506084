package recording_test

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/parley-meet/parley/internal/rtctest"
	"github.com/parley-meet/parley/recording"
	"github.com/parley-meet/parley/sfu"
)

// publisher is a Pion client in an SFU room that publishes a camera
// (synthetic VP8) and a microphone (synthetic Opus).
type publisher struct {
	t    *testing.T
	pc   *webrtc.PeerConnection
	p    atomic.Pointer[sfu.Participant]
	neg  sync.Mutex
	stop chan struct{}
	wg   sync.WaitGroup

	cam, mic   *webrtc.TrackLocalStaticRTP
	camSender  *webrtc.RTPSender
	keyNow     atomic.Bool
	plis       atomic.Int32
	videoSent  atomic.Int32
	audioSent  atomic.Int32
	closedOnce sync.Once
}

func newPublisher(t *testing.T, room *sfu.Room) *publisher {
	t.Helper()
	m := &webrtc.MediaEngine{}
	fb := []webrtc.RTCPFeedback{{Type: "nack"}, {Type: "nack", Parameter: "pli"}}
	if err := m.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000, RTCPFeedback: fb}, PayloadType: 96}, webrtc.RTPCodecTypeVideo); err != nil {
		t.Fatal(err)
	}
	if err := m.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, PayloadType: 111}, webrtc.RTPCodecTypeAudio); err != nil {
		t.Fatal(err)
	}
	ir := &interceptor.Registry{}
	if err := webrtc.ConfigureNack(m, ir); err != nil {
		t.Fatal(err)
	}
	if err := webrtc.ConfigureRTCPReports(ir); err != nil {
		t.Fatal(err)
	}
	api := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(rtctest.LoopbackSettingEngine()))
	pc, err := api.NewPeerConnection(webrtc.Configuration{BundlePolicy: webrtc.BundlePolicyMaxBundle})
	if err != nil {
		t.Fatal(err)
	}
	c := &publisher{t: t, pc: pc, stop: make(chan struct{})}
	t.Cleanup(c.close)
	if c.cam, err = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "cam", "alice"); err != nil {
		t.Fatal(err)
	}
	if c.mic, err = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "mic", "alice"); err != nil {
		t.Fatal(err)
	}
	if c.camSender, err = pc.AddTrack(c.cam); err != nil {
		t.Fatal(err)
	}
	micSender, err := pc.AddTrack(c.mic)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*webrtc.RTPSender{c.camSender, micSender} {
		c.wg.Add(1)
		go c.readRTCP(s)
	}
	p, err := room.Join("alice", c, sfu.Publish{Audio: true, Video: true, Screen: true})
	if err != nil {
		t.Fatal(err)
	}
	c.p.Store(p)
	return c
}

// readRTCP notes keyframe requests.
func (c *publisher) readRTCP(s *webrtc.RTPSender) {
	defer c.wg.Done()
	rtctest.ReadRTCP(s.ReadRTCP, c.stop, func(p rtcp.Packet) {
		switch p.(type) {
		case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
			c.plis.Add(1)
			c.keyNow.Store(true)
		}
	})
}

// connect offers what the client publishes and applies the answer.
func (c *publisher) connect() {
	c.t.Helper()
	c.neg.Lock()
	defer c.neg.Unlock()
	offer, err := c.pc.CreateOffer(nil)
	if err != nil {
		c.t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(c.pc)
	if err := c.pc.SetLocalDescription(offer); err != nil {
		c.t.Fatal(err)
	}
	<-gathered
	answer, err := c.p.Load().HandleOffer(c.pc.LocalDescription().SDP, map[string]string{"cam": "camera", "mic": "microphone"})
	if err != nil {
		c.t.Fatal(err)
	}
	if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		c.t.Fatal(err)
	}
}

// send publishes d of media: 25 fps VP8 (a keyframe every second and when
// asked; keyframes of three packets) and 50 packets/s of Opus.
func (c *publisher) send(d time.Duration) {
	start := time.Now()
	vseq, aseq := uint16(7000), uint16(3000)
	vts, ats := uint32(90000), uint32(48000)
	pid := uint16(0)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for n := 0; time.Since(start) < d; n++ {
		select {
		case <-c.stop:
			return
		case <-tick.C:
		}
		if err := c.mic.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, Marker: true, SequenceNumber: aseq, Timestamp: ats}, Payload: opusFrame(n)}); err == nil {
			c.audioSent.Add(1)
		}
		aseq++
		ats += 960
		if n%2 == 0 {
			key := (n/2)%25 == 0 || c.keyNow.Swap(false)
			size := 300
			if key {
				size = 2500
			}
			pkts := vp8Packets(vp8Frame(key, size), pid)
			for i, p := range pkts {
				_ = c.cam.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, Marker: i == len(pkts)-1, SequenceNumber: vseq, Timestamp: vts}, Payload: p})
				vseq++
			}
			c.videoSent.Add(1)
			pid++
			vts += 3600
		}
	}
}

func (c *publisher) close() {
	c.closedOnce.Do(func() {
		close(c.stop)
		if p := c.p.Load(); p != nil {
			p.Close()
		}
		_ = c.pc.Close()
		c.wg.Wait()
	})
}

// Events of the participant.
func (c *publisher) OnOffer(s string) {
	c.neg.Lock()
	defer c.neg.Unlock()
	if answer, ignored, err := rtctest.Answer(c.pc, s); err == nil && !ignored {
		_ = c.p.Load().HandleAnswer(answer)
	}
}
func (c *publisher) OnCandidate(cand webrtc.ICECandidateInit) { _ = c.pc.AddICECandidate(cand) }
func (c *publisher) OnTrackPublished(sfu.TrackInfo)           {}
func (c *publisher) OnTrackUnpublished(sfu.TrackInfo)         {}
func (c *publisher) OnConnectionState(string)                 {}

// End to end: a Pion client publishes through the real SFU for 10 s while
// the room is recorded; the file, decrypted with the identity, is a WebM
// with both tracks, the right duration, starting on a keyframe, and the
// bytes on disk show none of the media.
func TestRecordThroughSFU(t *testing.T) {
	d := 10 * time.Second
	if testing.Short() {
		d = 3 * time.Second
	}
	s, err := sfu.New(sfu.Config{ListenIP: "127.0.0.1", TCPPort: -1, AllowedRemote: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("closing the SFU: %v", err)
		}
	})
	room := s.NewRoom("room-e2e")
	e := newEnv(t)
	m := e.manager()
	ctx := context.Background()
	rec, err := m.Start(ctx, room, recording.StartOptions{RoomID: "room-e2e", StartedBy: "user:u1", Names: func(id string) string {
		if id == "alice" {
			return "Alice"
		}
		return ""
	}})
	if err != nil {
		t.Fatal(err)
	}
	c := newPublisher(t, room)
	c.connect()
	eventually(t, 10*time.Second, func() bool { return c.pc.ConnectionState() == webrtc.PeerConnectionStateConnected }, "the client connects")
	c.send(d)
	time.Sleep(300 * time.Millisecond) // the last packets reach the tap
	stopped, err := m.Stop(ctx, "room-e2e")
	if err != nil {
		t.Fatal(err)
	}
	c.close()
	if stopped.ID != rec.ID || stopped.Status != recording.StatusComplete || len(stopped.Tracks) != 1 {
		t.Fatalf("recording = %+v", stopped)
	}
	tr := stopped.Tracks[0]
	if tr.Kind != recording.KindAV || tr.ParticipantName != "Alice" || tr.Status != recording.StatusComplete || len(tr.Codecs) != 2 {
		t.Errorf("track = %+v", tr)
	}
	if c.plis.Load() == 0 {
		t.Error("no keyframe was asked for")
	}

	path := e.trackFile(rec.ID, tr.ID)
	if !fileNameRE.MatchString(filepath.Base(path)) {
		t.Errorf("file name %q", filepath.Base(path))
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode: %v, %v", fi.Mode(), err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, anyPattern) {
		t.Error("the file on disk holds plaintext media")
	}
	plain, err := decryptFile(t, path, e.id)
	if err != nil {
		t.Fatalf("decrypting with the identity: %v", err)
	}
	p, blocks := parseWebM(t, plain)
	if p.Header.DocType != "webm" || len(p.Segment.Tracks.TrackEntry) != 2 {
		t.Fatalf("header %+v, tracks %+v", p.Header, p.Segment.Tracks.TrackEntry)
	}
	var vTrack, aTrack uint64
	for _, te := range p.Segment.Tracks.TrackEntry {
		switch te.CodecID {
		case "V_VP8":
			vTrack = te.TrackNumber
			if te.Video == nil || te.Video.PixelWidth != 320 || te.Video.PixelHeight != 240 {
				t.Errorf("video track %+v", te)
			}
		case "A_OPUS":
			aTrack = te.TrackNumber
			if !bytes.HasPrefix(te.CodecPrivate, []byte("OpusHead")) {
				t.Errorf("audio CodecPrivate %q", te.CodecPrivate)
			}
		}
	}
	if vTrack == 0 || aTrack == 0 {
		t.Fatalf("tracks %+v", p.Segment.Tracks.TrackEntry)
	}
	var nv, na int
	first, last := int64(-1), int64(0)
	for _, b := range blocks {
		if first < 0 {
			first = b.ms
		}
		last = max(last, b.ms)
		switch b.track {
		case vTrack:
			if nv == 0 && (!b.key || b.data[0]&1 != 0 || !bytes.Equal(b.data[3:6], []byte{0x9d, 0x01, 0x2a})) {
				t.Error("the first video frame is not a keyframe")
			}
			if b.key != (b.data[0]&1 == 0) || !bytes.Contains(b.data, videoPattern) {
				t.Fatalf("video frame %d: key flag %v, data %x...", nv, b.key, b.data[:min(16, len(b.data))])
			}
			nv++
		case aTrack:
			if !bytes.HasPrefix(b.data, append([]byte{0xfc}, audioPattern...)) {
				t.Fatalf("audio frame %d: %x", na, b.data)
			}
			na++
		}
	}
	got := time.Duration(last-first+20) * time.Millisecond
	if got < d-500*time.Millisecond || got > d+500*time.Millisecond {
		t.Errorf("duration from the block timecodes %v, want %v ± 0.5 s", got, d)
	}
	wantV, wantA := int(c.videoSent.Load()), int(c.audioSent.Load())
	if nv < wantV*9/10 || na < wantA*9/10 {
		t.Errorf("%d video frames of %d sent, %d audio of %d", nv, wantV, na, wantA)
	}
	t.Logf("recorded %v: %d video and %d audio frames (%d and %d sent), %d bytes", got, nv, na, wantV, wantA, len(plain))

	// The portal's view of it: the duration is in the header it serves.
	md, err := m.Open(ctx, rec.ID, tr.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer md.Close()
	served := readAll(t, md)
	ps, _ := parseWebM(t, served)
	if dur := time.Duration(ps.Segment.Info.Duration) * time.Millisecond; dur < d-500*time.Millisecond || dur > d+500*time.Millisecond {
		t.Errorf("served Duration %v, want about %v", dur, d)
	}
}

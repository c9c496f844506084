package recording_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/at-wat/ebml-go"
	"github.com/at-wat/ebml-go/webm"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/parley-meet/parley/internal/leakcheck"
	"github.com/parley-meet/parley/recording"
	"github.com/parley-meet/parley/sfu"
	"github.com/parley-meet/parley/store"
	"github.com/parley-meet/parley/store/storetest"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

// The payloads carry these patterns: the decrypted WebM must hold them,
// the file on disk must not.
var (
	videoPattern = []byte("PARLEY-PLAINTEXT-VIDEO:")
	audioPattern = []byte("PARLEY-PLAINTEXT-AUDIO:")
	anyPattern   = []byte("PARLEY-PLAINTEXT")
)

// env is a store, a recordings directory and an identity.
type env struct {
	t     *testing.T
	store *store.Store
	dir   string
	id    *age.X25519Identity
	clock *fakeClock
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

func newEnv(t *testing.T) *env {
	t.Helper()
	st, _ := storetest.Targets()[0].Open(t) // SQLite: the store's own tests cover both engines
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, store: st, dir: filepath.Join(t.TempDir(), "recordings"), id: id}
}

// manager makes a Manager on the env, closed when the test ends.
func (e *env) manager() *recording.Manager {
	e.t.Helper()
	return e.managerOn("")
}

// managerOn makes a Manager of cluster node node ("" for a single node)
// on the env, closed when the test ends.
func (e *env) managerOn(node string) *recording.Manager {
	e.t.Helper()
	cfg := recording.Config{Dir: e.dir, Recipients: []age.Recipient{e.id.Recipient()}, Identities: []age.Identity{e.id}, Store: e.store, Node: node}
	if os.Getenv("RECORDING_TEST_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if e.clock != nil {
		cfg.Now = e.clock.Now
	}
	m, err := recording.New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		if err := m.Close(); err != nil {
			e.t.Errorf("closing the manager: %v", err)
		}
	})
	return m
}

// fakeSource is a room without an SFU: the test plays the forwarding path.
type fakeSource struct {
	mu sync.Mutex
	h  sfu.TapHandler
}

func (f *fakeSource) AddTap(h sfu.TapHandler) (*sfu.Tap, error) {
	f.mu.Lock()
	f.h = h
	f.mu.Unlock()
	return nil, nil
}

func (f *fakeSource) publish(t *testing.T, info sfu.TrackInfo, codec webrtc.RTPCodecCapability) *synth {
	t.Helper()
	f.mu.Lock()
	h := f.h
	f.mu.Unlock()
	if h == nil {
		t.Fatal("no tap")
	}
	return &synth{sink: h.TrackStarted(info, codec), seq: 100, ts: 1000, video: info.Kind == "video"}
}

var (
	vp8  = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}
	opus = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}
	h264 = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000}
)

// synth writes synthetic RTP into a sink.
type synth struct {
	sink  sfu.TrackSink
	seq   uint16
	ts    uint32
	pid   uint16
	video bool
}

// vp8Frame is a VP8 frame: a keyframe (frame tag, start code, 320x240)
// or an interframe, filled with the video pattern.
func vp8Frame(key bool, size int) []byte {
	var b []byte
	if key {
		b = []byte{0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a}
		b = binary.LittleEndian.AppendUint16(b, 320)
		b = binary.LittleEndian.AppendUint16(b, 240)
	} else {
		b = []byte{0x11, 0x02, 0x00}
	}
	for len(b) < size {
		b = append(b, videoPattern...)
	}
	return b
}

// vp8Packets splits a frame into RTP payloads of at most 1000 bytes, each
// with a payload descriptor carrying a 15-bit picture id.
func vp8Packets(frame []byte, pid uint16) [][]byte {
	var out [][]byte
	for i := 0; i < len(frame); i += 1000 {
		d := []byte{0x80, 0x80, 0x80 | byte(pid>>8&0x7f), byte(pid)}
		if i == 0 {
			d[0] |= 0x10 // S: start of the frame
		}
		out = append(out, append(d, frame[i:min(i+1000, len(frame))]...))
	}
	return out
}

func opusFrame(n int) []byte {
	b := []byte{0xfc}
	b = append(b, audioPattern...)
	return binary.BigEndian.AppendUint32(b, uint32(n))
}

func (s *synth) write(payload []byte, marker bool) {
	s.sink.WriteRTP(&rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: s.seq, Timestamp: s.ts, SSRC: 1234, Marker: marker}, payload)
	s.seq++
}

// videoFrame writes one frame and advances the clock by 40 ms.
func (s *synth) videoFrame(key bool, size int) {
	pkts := vp8Packets(vp8Frame(key, size), s.pid)
	for i, p := range pkts {
		s.write(p, i == len(pkts)-1)
	}
	s.pid++
	s.ts += 3600
}

// audioFrame writes one 20 ms Opus packet.
func (s *synth) audioFrame(n int) {
	s.write(opusFrame(n), true)
	s.ts += 960
}

// stream writes d of 25 fps video (a keyframe every keyEvery frames)
// and 50 packets/s of audio, paced in real time when paced.
func stream(v, a *synth, d time.Duration, frameSize, keyEvery int, paced bool) {
	start := time.Now()
	for ms := 0; ms < int(d.Milliseconds()); ms += 20 {
		if paced {
			if wait := time.Until(start.Add(time.Duration(ms) * time.Millisecond)); wait > 0 {
				time.Sleep(wait)
			}
		}
		if a != nil {
			a.audioFrame(ms / 20)
		}
		if v != nil && ms%40 == 0 {
			n := ms / 40
			v.videoFrame(n%keyEvery == 0, frameSize)
		}
	}
}

// parsed is a decrypted WebM, read with ebml-go.
type parsed struct {
	Header  webm.EBMLHeader `ebml:"EBML"`
	Segment webm.Segment    `ebml:"Segment"`
}

type block struct {
	track uint64
	ms    int64
	key   bool
	data  []byte
}

func parseWebM(t *testing.T, b []byte) (*parsed, []block) {
	t.Helper()
	var p parsed
	if err := ebml.Unmarshal(bytes.NewReader(b), &p); err != nil {
		t.Fatalf("the WebM does not parse: %v", err)
	}
	var blocks []block
	for _, c := range p.Segment.Cluster {
		for _, sb := range c.SimpleBlock {
			blocks = append(blocks, block{track: sb.TrackNumber, ms: int64(c.Timecode) + int64(sb.Timecode), key: sb.Keyframe, data: bytes.Join(sb.Data, nil)})
		}
	}
	return &p, blocks
}

// readAll reads a Media whole.
func readAll(t *testing.T, md *recording.Media) []byte {
	t.Helper()
	b, err := io.ReadAll(io.NewSectionReader(md, 0, md.Size))
	if err != nil {
		t.Fatalf("reading the media: %v", err)
	}
	return b
}

// decryptFile decrypts a recording file with age, as an operator would,
// up to where it stops decrypting.
func decryptFile(t *testing.T, path string, id age.Identity) ([]byte, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := age.Decrypt(f, id)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	_, err = io.Copy(&buf, r)
	return buf.Bytes(), err
}

// trackFile is the path of a track's file, found in the store.
func (e *env) trackFile(recID, trackID string) string {
	e.t.Helper()
	tr, err := e.store.RecordingTrack(context.Background(), recID, trackID)
	if err != nil || tr.File == "" {
		e.t.Fatalf("track %s: %+v, %v", trackID, tr, err)
	}
	return filepath.Join(e.dir, tr.File)
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// recordFake records d of synthetic media from one participant through a
// fake source and returns the stopped recording.
func recordFake(t *testing.T, m *recording.Manager, room string, d time.Duration, frameSize int, paced bool) recording.Recording {
	t.Helper()
	src := &fakeSource{}
	if _, err := m.Start(context.Background(), src, recording.StartOptions{RoomID: room, StartedBy: "user:u1",
		Names: func(string) string { return "Zoë Lee-Smith" }}); err != nil {
		t.Fatal(err)
	}
	v := src.publish(t, sfu.TrackInfo{ID: "cam", Participant: "p1", Kind: "video", Source: "camera"}, vp8)
	a := src.publish(t, sfu.TrackInfo{ID: "mic", Participant: "p1", Kind: "audio", Source: "microphone"}, opus)
	stream(v, a, d, frameSize, 25, paced)
	rec, err := m.Stop(context.Background(), room)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

func isIntegrity(err error) bool { return errors.Is(err, recording.ErrIntegrity) }

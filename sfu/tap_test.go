package sfu

import (
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

type tapSink struct {
	mu      sync.Mutex
	info    TrackInfo
	codec   string
	packets int
	seqGaps int
	lastSeq uint16
	ssrcs   map[uint32]bool
	keys    int
	closed  int
	written bool // a write after Close
}

func (s *tapSink) WriteRTP(h *rtp.Header, payload []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed > 0 {
		s.written = true
	}
	if s.packets > 0 && h.SequenceNumber != s.lastSeq+1 {
		s.seqGaps++
	}
	s.lastSeq = h.SequenceNumber
	s.ssrcs[h.SSRC] = true
	if k, _ := vp8Keyframe(payload); k {
		s.keys++
	}
	s.packets++
}

func (s *tapSink) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed++
}

// sinkState is a copy of a tapSink's counters.
type sinkState struct {
	info    TrackInfo
	codec   string
	packets int
	seqGaps int
	ssrcs   int
	keys    int
	closed  int
	written bool
}

func (s *tapSink) snapshot() sinkState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return sinkState{info: s.info, codec: s.codec, packets: s.packets, seqGaps: s.seqGaps, keys: s.keys, closed: s.closed, written: s.written, ssrcs: len(s.ssrcs)}
}

type tapRecorder struct {
	mu    sync.Mutex
	sinks map[string]*tapSink
	skip  string // a track id to ignore
}

func (r *tapRecorder) TrackStarted(info TrackInfo, codec webrtc.RTPCodecCapability) TrackSink {
	if info.ID == r.skip {
		return nil
	}
	s := &tapSink{info: info, codec: codec.MimeType, ssrcs: map[uint32]bool{}}
	r.mu.Lock()
	r.sinks[info.ID] = s
	r.mu.Unlock()
	return s
}

func (r *tapRecorder) sink(id string) *tapSink {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sinks[id]
}

// A tap gets the tracks published before and after it was added, as one
// stream each, starting on a keyframe; participants never see it; an
// unpublished track's sink is closed, and Close closes the rest.
func TestTap(t *testing.T) {
	s := newTestSFU(t)
	room := s.NewRoom("tap")
	a := newClient(t, room, "a", publishAll)
	defer a.close()
	cam := a.publishVideo("a-cam", "camera", 20*time.Millisecond)
	cam.keyEvery.Store(1 << 20) // keyframes only when asked
	a.publishAudio("a-mic", 20*time.Millisecond)
	a.connect()
	eventually(t, 10*time.Second, func() bool { return len(room.Tracks()) == 2 }, "a publishes two tracks")

	rec := &tapRecorder{sinks: map[string]*tapSink{}, skip: "b-ignored"}
	plis := cam.plis.Load()
	tap, err := room.AddTap(rec)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() bool {
		v, m := rec.sink("a-cam"), rec.sink("a-mic")
		return v != nil && m != nil && v.snapshot().packets > 20 && m.snapshot().packets > 20
	}, "the tap receives a's camera and microphone")
	if cam.plis.Load() == plis {
		t.Error("the tap did not ask for a keyframe")
	}
	v := rec.sink("a-cam").snapshot()
	if v.keys == 0 || v.seqGaps != 0 || v.ssrcs != 1 || v.codec != webrtc.MimeTypeVP8 || v.info.Source != "camera" || v.info.Participant != "a" {
		t.Errorf("camera at the tap: %+v", v)
	}

	// Published after the tap was added; and one the handler ignores.
	b := newClient(t, room, "b", publishAll)
	defer b.close()
	b.publishAudio("b-mic", 20*time.Millisecond)
	b.publishAudio("b-ignored", 20*time.Millisecond)
	b.connect()
	eventually(t, 10*time.Second, func() bool { m := rec.sink("b-mic"); return m != nil && m.snapshot().packets > 10 }, "the tap receives b-mic")
	if rec.sink("b-ignored") != nil {
		t.Error("the ignored track got a sink")
	}
	// The tap is nobody's participant: a and b see one another only.
	if n := len(room.Stats()); n != 2 {
		t.Errorf("%d participants in the stats, want 2", n)
	}

	b.close()
	eventually(t, 5*time.Second, func() bool { return rec.sink("b-mic").snapshot().closed == 1 }, "b-mic's sink closed when b left")
	tap.Close()
	for _, id := range []string{"a-cam", "a-mic"} {
		if got := rec.sink(id).snapshot(); got.closed != 1 {
			t.Errorf("%s's sink closed %d times after tap.Close, want 1", id, got.closed)
		}
	}
	time.Sleep(100 * time.Millisecond)
	for _, id := range []string{"a-cam", "a-mic", "b-mic"} {
		if rec.sink(id).snapshot().written {
			t.Errorf("%s was written after its Close", id)
		}
	}
	tap.Close() // twice is fine
}

// Closing the room closes its taps' sinks.
func TestTapClosedWithRoom(t *testing.T) {
	s := newTestSFU(t)
	room := s.NewRoom("tap-close")
	a := newClient(t, room, "a", publishAll)
	defer a.close()
	a.publishAudio("a-mic", 20*time.Millisecond)
	a.connect()
	rec := &tapRecorder{sinks: map[string]*tapSink{}}
	if _, err := room.AddTap(rec); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() bool { m := rec.sink("a-mic"); return m != nil && m.snapshot().packets > 5 }, "the tap receives a-mic")
	room.Close()
	if got := rec.sink("a-mic").snapshot().closed; got != 1 {
		t.Errorf("sink closed %d times after the room closed, want 1", got)
	}
	if _, err := room.AddTap(rec); err != ErrClosed {
		t.Errorf("AddTap on a closed room: %v", err)
	}
}

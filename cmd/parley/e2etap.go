//go:build parley_e2etap

package main

import (
	"encoding/binary"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/parley-meet/parley/config"
	"github.com/parley-meet/parley/sfu"
)

// A test build of parley serve (`go build -tags parley_e2etap`), for the
// browser test of end-to-end encrypted meetings (e2e/e2ee_test.go) only:
// it taps every meeting's media the way the recorder does (a hidden
// in-process subscriber, sfu.Room.AddTap) and writes what the SFU forwards
// (whole VP8 frames, reassembled from their packets, and Opus packets) to
// <data-dir>/e2etap/<participant>.<source>.<codec>.frames, a 4-byte
// big-endian length before each frame, so that the test can show that an
// encrypted meeting's media is ciphertext to the server. The binary that
// ships is built without this file (e2etap_off.go).

// tapLimit bounds what is kept of one track: the first frames only.
const (
	tapFrames = 600
	tapBytes  = 16 << 20
)

func startTestTap(cfg *config.Config, media *sfu.SFU, log *slog.Logger) (stop func()) {
	dir := filepath.Join(cfg.DataDir, "e2etap")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		log.Error("e2etap: no directory", "err", err)
		return func() {}
	}
	log.Warn("TEST BUILD: every meeting's forwarded media is written to " + dir)
	t := &testTap{dir: dir, taps: map[*sfu.Room]*sfu.Tap{}, done: make(chan struct{})}
	t.wg.Add(1)
	go t.run(media)
	return func() {
		close(t.done)
		t.wg.Wait()
	}
}

type testTap struct {
	dir  string
	done chan struct{}
	wg   sync.WaitGroup

	taps  map[*sfu.Room]*sfu.Tap // the run goroutine's
	mu    sync.Mutex
	sinks []*tapFile
}

// run taps new rooms and writes the files every 100 ms.
func (t *testTap) run(media *sfu.SFU) {
	defer t.wg.Done()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-t.done:
			for _, tp := range t.taps {
				tp.Close()
			}
			t.flush()
			return
		case <-tick.C:
		}
		for _, r := range media.Rooms() {
			if t.taps[r] != nil {
				continue
			}
			if tp, err := r.AddTap(t); err == nil {
				t.taps[r] = tp
			}
		}
		t.flush()
	}
}

// TrackStarted keeps VP8 and Opus tracks.
func (t *testTap) TrackStarted(info sfu.TrackInfo, codec webrtc.RTPCodecCapability) sfu.TrackSink {
	var name string
	switch {
	case strings.EqualFold(codec.MimeType, webrtc.MimeTypeVP8):
		name = "vp8"
	case strings.EqualFold(codec.MimeType, webrtc.MimeTypeOpus):
		name = "opus"
	default:
		return nil
	}
	f := &tapFile{path: filepath.Join(t.dir, safeName(info.Participant)+"."+safeName(info.Source)+"."+name+".frames"), vp8: name == "vp8"}
	t.mu.Lock()
	t.sinks = append(t.sinks, f)
	t.mu.Unlock()
	return f
}

func (t *testTap) flush() {
	t.mu.Lock()
	sinks := append([]*tapFile(nil), t.sinks...)
	t.mu.Unlock()
	for _, f := range sinks {
		f.flush()
	}
}

func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, s)
}

// tapFile collects one track's frames.
type tapFile struct {
	path string
	vp8  bool

	mu      sync.Mutex
	frames  [][]byte
	bytes   int
	cur     []byte // the VP8 frame being reassembled
	inFrame bool
	curTS   uint32 // its RTP timestamp
	curSeq  uint16 // the sequence number of its last packet
	lastTS  uint32 // that of the last frame kept
	kept    bool   // lastTS is set
	written int    // frames already in the file
}

func (f *tapFile) WriteRTP(h *rtp.Header, payload []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.frames) >= tapFrames || f.bytes >= tapBytes {
		return
	}
	if !f.vp8 {
		f.keep(append([]byte(nil), payload...))
		return
	}
	body, start, ok := vp8Body(payload)
	if !ok {
		f.inFrame = false
		return
	}
	// Only frames whose packets all arrived, in order, are kept: a lost
	// packet, or a retransmission (of this frame or an older one) arriving
	// in the middle of another frame, would splice two frames into one.
	if start {
		if f.kept && int32(h.Timestamp-f.lastTS) <= 0 {
			f.inFrame = false // a retransmission of a frame kept already, or older
			return
		}
		f.cur, f.inFrame, f.curTS, f.curSeq = append(f.cur[:0], body...), true, h.Timestamp, h.SequenceNumber
	} else {
		if !f.inFrame || h.Timestamp != f.curTS || h.SequenceNumber != f.curSeq+1 {
			f.inFrame = false // the start of this frame was not seen, or a packet is missing
			return
		}
		f.curSeq = h.SequenceNumber
		f.cur = append(f.cur, body...)
	}
	if h.Marker {
		f.keep(append([]byte(nil), f.cur...))
		f.inFrame, f.lastTS, f.kept = false, f.curTS, true
	}
}

func (f *tapFile) keep(frame []byte) {
	f.frames = append(f.frames, frame)
	f.bytes += len(frame)
}

func (f *tapFile) Close() {}

// flush writes the frames kept so far (the whole file again: a reader
// never sees half of it).
func (f *tapFile) flush() {
	f.mu.Lock()
	if len(f.frames) == f.written {
		f.mu.Unlock()
		return
	}
	var out []byte
	for _, fr := range f.frames {
		out = binary.BigEndian.AppendUint32(out, uint32(len(fr)))
		out = append(out, fr...)
	}
	f.written = len(f.frames)
	f.mu.Unlock()
	tmp := f.path + ".tmp"
	if os.WriteFile(tmp, out, 0o600) == nil {
		_ = os.Rename(tmp, f.path)
	}
}

// vp8Body strips the VP8 payload descriptor (RFC 7741, 4.2): the frame's
// bytes in this packet, and whether they start a frame.
func vp8Body(p []byte) (body []byte, start, ok bool) {
	if len(p) < 1 {
		return nil, false, false
	}
	i := 1
	if p[0]&0x80 != 0 {
		if len(p) < 2 {
			return nil, false, false
		}
		x := p[1]
		i = 2
		if x&0x80 != 0 {
			if len(p) <= i {
				return nil, false, false
			}
			if p[i]&0x80 != 0 {
				i += 2
			} else {
				i++
			}
		}
		if x&0x40 != 0 {
			i++
		}
		if x&0x30 != 0 {
			i++
		}
	}
	if len(p) < i {
		return nil, false, false
	}
	return p[i:], p[0]&0x10 != 0 && p[0]&0x07 == 0, true
}

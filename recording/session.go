package recording

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"github.com/pion/webrtc/v4/pkg/media/samplebuilder"

	"github.com/parley-meet/parley/sfu"
	"github.com/parley-meet/parley/store"
)

// Timing of the recorder.
const (
	// partnerWait: a participant's first track waits this long for its
	// partner (camera for microphone, or the reverse) before its file's
	// header is written without it.
	partnerWait = 1500 * time.Millisecond
	// keyframeWait: a file with video waits this long (from its first
	// track) for a keyframe that tells the picture size.
	keyframeWait = 4 * time.Second
	// interleaveWait: a frame waits at most this long for the other
	// track of its file to catch up before it is written.
	interleaveWait = 700 * time.Millisecond
	// progressEvery: the catalog learns a file's size and duration this
	// often, so that a crash keeps what was known.
	progressEvery = 5 * time.Second
	// keyframeEvery: a keyframe is asked for this often while recording
	// video, so that the file can be seeked into.
	keyframeEvery = 10 * time.Second
	// keyframeRetry throttles the recorder's own keyframe requests.
	keyframeRetry = time.Second
	// tickEvery: how often each track's goroutine looks at the clock.
	tickEvery = 200 * time.Millisecond
)

const (
	// queuePackets bounds each track's queue between the forwarding path
	// and its goroutine; what does not fit is dropped and counted.
	queuePackets = 1024
	// bufferFrames bounds the frames a file holds before its header.
	bufferFrames = 600
	// reanchorAfter: when a track's RTP clock and its arrival times
	// disagree by more than this (a pause without timestamps advancing, a
	// jump), its timeline is re-anchored on the arrival time.
	reanchorAfter = 2 * time.Second
)

// session records one room: it is the tap's handler.
type session struct {
	m       *Manager
	id      string
	roomID  string
	names   func(string) string
	started chan struct{} // closed when Start has stored the tap or failed

	tap atomic.Pointer[sfu.Tap]
	wg  sync.WaitGroup // the tracks' goroutines

	mu       sync.Mutex
	closing  bool
	groups   map[string]*group
	tracks   []*track
	stopping bool // Stop or Close has begun
}

func newSession(m *Manager, id, roomID string, names func(string) string) *session {
	if names == nil {
		names = func(string) string { return "" }
	}
	return &session{m: m, id: id, roomID: roomID, names: names, started: make(chan struct{}), groups: map[string]*group{}}
}

// TrackStarted gives a recordable track a sink and a place in its
// participant's file, and notes an unrecordable one in the catalog.
func (s *session) TrackStarted(info sfu.TrackInfo, codec webrtc.RTPCodecCapability) sfu.TrackSink {
	kind := "av"
	if info.Source == "screen" {
		kind = "screen"
	}
	name := s.names(info.Participant)
	if _, ok := codecID(codec.MimeType); !ok {
		s.unsupported(info, kind, name, codec.MimeType)
		return nil
	}
	slot := slotAudio
	if info.Kind == "video" {
		slot = slotVideo
	}
	if (slot == slotVideo) != strings.HasPrefix(strings.ToLower(codec.MimeType), "video/") {
		s.unsupported(info, kind, name, codec.MimeType)
		return nil
	}
	t := &track{s: s, info: info, codec: codec, slot: slot, ch: make(chan packet, queuePackets)}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return nil
	}
	key := kind + ":" + info.Participant
	g := s.groups[key]
	if g == nil || !g.add(t) {
		if g != nil { // that slot is taken by a live track: a file of its own
			key += ":" + info.ID
		}
		g = newGroup(s, kind, info.Participant, name)
		g.add(t)
		s.groups[key] = g
	}
	t.g, t.gkey = g, key
	s.tracks = append(s.tracks, t)
	s.wg.Add(1)
	go t.run()
	return t
}

// unsupported puts a track Parley does not record into the catalog.
func (s *session) unsupported(info sfu.TrackInfo, kind, name, mime string) {
	ctx, cancel := context.WithTimeout(context.Background(), dbTimeout)
	defer cancel()
	codecs, _ := json.Marshal([]string{mime})
	row := store.RecordingTrack{ID: randomID(), RecordingID: s.id, Kind: kind, ParticipantID: info.Participant,
		ParticipantName: name, Codecs: string(codecs), StartedUS: s.m.now().UnixMicro(), Status: StatusUnsupported,
		Note: unsupportedNote(mime)}
	if err := s.m.store.AddRecordingTrack(ctx, row); err != nil {
		s.m.log.Error("recording: cannot note an unsupported track", "recording", s.id, "err", err)
	}
	s.m.log.Info("recording: track not recordable", "recording", s.id, "codec", mime)
}

// removeGroup forgets a group whose tracks all ended.
func (s *session) removeGroup(key string, g *group) {
	s.mu.Lock()
	if s.groups[key] == g {
		delete(s.groups, key)
	}
	s.mu.Unlock()
}

// requestKeyframe asks the publisher of a track for a keyframe.
func (s *session) requestKeyframe(trackID string) {
	if f := s.m.keyframeHook; f != nil {
		f(trackID)
	}
	if tap := s.tap.Load(); tap != nil {
		tap.RequestKeyframe(trackID)
	}
}

// finish ends the recording's media: the tap's sinks close, each track's
// goroutine writes what it holds, and every file is finished.
func (s *session) finish() {
	<-s.started
	s.mu.Lock()
	s.closing = true
	tracks := append([]*track(nil), s.tracks...)
	s.mu.Unlock()
	if tap := s.tap.Load(); tap != nil {
		tap.Close() // closes every sink it gave out
	} else {
		for _, t := range tracks { // a Source without a tap: its sinks are ours to close
			t.Close()
		}
	}
	s.wg.Wait()
}

// packet is one RTP packet copied off the forwarding path.
type packet struct {
	hdr     rtp.Header
	payload []byte
	at      time.Time
}

// track is one published track being recorded: its sink, its queue and
// the goroutine that turns its packets into frames.
type track struct {
	s     *session
	info  sfu.TrackInfo
	codec webrtc.RTPCodecCapability
	slot  int
	g     *group
	gkey  string

	ch        chan packet
	dropped   atomic.Uint64
	closeOnce sync.Once

	// Used by the track's goroutine only.
	sb          *samplebuilder.SampleBuilder
	anchored    bool
	anchorAt    time.Time // arrival of the packet the timeline is anchored on
	tsAcc       int64     // RTP ticks since the anchor, unwrapped
	lastTS      uint32
	lastArrival time.Time
	havePID     bool
	lastPID     uint16
	// arrivals: when the first packet of each recent RTP timestamp came.
	arrivals [arrivalRing]arrival
	nArrival int
}

// arrival is when a timestamp's first packet came.
type arrival struct {
	ts uint32
	at time.Time
}

const arrivalRing = 256

// arrivalOf is when the first packet with timestamp ts came (the latest
// packet's arrival if it is no longer remembered).
func (t *track) arrivalOf(ts uint32) time.Time {
	for i := 1; i <= min(t.nArrival, arrivalRing); i++ {
		if a := t.arrivals[(t.nArrival-i)%arrivalRing]; a.ts == ts {
			return a.at
		}
	}
	return t.lastArrival
}

// WriteRTP copies the packet into the track's queue, or drops it when the
// queue is full: it never blocks the forwarding path.
func (t *track) WriteRTP(h *rtp.Header, payload []byte) {
	p := packet{hdr: *h, payload: append([]byte(nil), payload...), at: time.Now()}
	p.hdr.CSRC = append([]uint32(nil), h.CSRC...)
	p.hdr.Extensions = nil
	p.hdr.Extension = false
	p.hdr.Padding, p.hdr.PaddingSize = false, 0
	select {
	case t.ch <- p:
	default:
		if t.dropped.Add(1) == 1 {
			t.s.m.log.Warn("recording: a track's queue overflowed; packets are dropped", "recording", t.s.id, "track", t.info.ID)
		}
	}
}

// Close ends the track's queue; its goroutine then finishes.
func (t *track) Close() {
	t.closeOnce.Do(func() { close(t.ch) })
}

// pictureID is what the packet-head handler reports of a video frame.
type pictureID struct {
	ok bool
	id uint16
}

func headPictureID(d any) any {
	switch p := d.(type) {
	case *codecs.VP8Packet:
		if p.I == 1 {
			return pictureID{true, p.PictureID}
		}
	case *codecs.VP9Packet:
		if p.I {
			return pictureID{true, p.PictureID}
		}
	}
	return pictureID{}
}

func (t *track) newSampleBuilder() *samplebuilder.SampleBuilder {
	clock := t.codec.ClockRate
	if clock == 0 {
		clock = 90000
		if t.slot == slotAudio {
			clock = 48000
		}
		t.codec.ClockRate = clock
	}
	var dep rtp.Depacketizer
	maxLate := uint16(50)
	switch strings.ToLower(t.codec.MimeType) {
	case strings.ToLower(webrtc.MimeTypeVP8):
		dep, maxLate = &codecs.VP8Packet{}, 500
	case strings.ToLower(webrtc.MimeTypeVP9):
		dep, maxLate = &codecs.VP9Packet{}, 500
	default:
		dep = &codecs.OpusPacket{}
	}
	return samplebuilder.New(maxLate, dep, clock, samplebuilder.WithMaxTimeDelay(500*time.Millisecond),
		samplebuilder.WithPacketHeadHandler(headPictureID))
}

// run drains the queue until the sink is closed.
func (t *track) run() {
	defer t.s.wg.Done()
	t.sb = t.newSampleBuilder()
	tick := time.NewTicker(tickEvery)
	defer tick.Stop()
	for {
		select {
		case p, ok := <-t.ch:
			if !ok {
				// No Flush: the builder's flush can take most of a second
				// (pion/webrtc v4.2.26) for the one frame it would add.
				t.pop()
				if n := t.dropped.Load(); n > 0 {
					t.s.m.log.Warn("recording: packets dropped on a full queue", "recording", t.s.id, "track", t.info.ID, "packets", n)
				}
				t.g.trackEnded(t)
				return
			}
			t.push(p)
		case <-tick.C:
			t.g.tick(time.Now())
		}
	}
}

func (t *track) push(p packet) {
	t.lastArrival = p.at
	if t.nArrival == 0 || t.arrivals[(t.nArrival-1)%arrivalRing].ts != p.hdr.Timestamp {
		t.arrivals[t.nArrival%arrivalRing] = arrival{ts: p.hdr.Timestamp, at: p.at}
		t.nArrival++
	}
	if !t.anchored {
		t.anchored, t.anchorAt, t.lastTS = true, p.at, p.hdr.Timestamp
	}
	t.sb.Push(&rtp.Packet{Header: p.hdr, Payload: p.payload})
	t.pop()
}

func (t *track) pop() {
	for s := t.sb.Pop(); s != nil; s = t.sb.Pop() {
		t.sample(s)
	}
}

// sample turns a complete frame into a timed frame for the group.
func (t *track) sample(s *media.Sample) {
	if len(s.Data) == 0 {
		return
	}
	t.tsAcc += int64(int32(s.PacketTimestamp - t.lastTS))
	t.lastTS = s.PacketTimestamp
	clock := int64(t.codec.ClockRate)
	at := t.anchorAt.Add(time.Duration(t.tsAcc * int64(time.Second) / clock))
	if came := t.arrivalOf(s.PacketTimestamp); at.Sub(came) > reanchorAfter || came.Sub(at) > reanchorAfter {
		t.s.m.log.Debug("recording: track timeline re-anchored", "recording", t.s.id, "track", t.info.ID, "off", at.Sub(came))
		t.anchorAt, t.tsAcc = came, 0
		at = came
	}
	f := frame{at: at, data: s.Data, dur: s.Duration, key: true}
	if t.slot == slotVideo {
		var w, h int
		if strings.EqualFold(t.codec.MimeType, webrtc.MimeTypeVP9) {
			f.key, w, h = vp9Frame(s.Data)
		} else {
			f.key, w, h = vp8Frame(s.Data)
		}
		f.width, f.height = w, h
		// A frame lost before this one breaks the reference chain unless
		// this is a keyframe; picture ids tell, else the dropped count.
		pid, _ := s.Metadata.(pictureID)
		switch {
		case pid.ok && t.havePID:
			f.afterLoss = !pidFollows(t.lastPID, pid.id)
		default:
			f.afterLoss = s.PrevDroppedPackets > 0
		}
		t.havePID, t.lastPID = pid.ok, pid.id
	}
	t.g.frame(t, f)
}

// pidFollows reports whether picture id b directly follows a (7- or
// 15-bit picture ids).
func pidFollows(a, b uint16) bool {
	if (b-a)&0x7fff == 1 {
		return true
	}
	return a <= 0x7f && b <= 0x7f && (b-a)&0x7f == 1
}

// frame is one complete media frame with its place in time.
type frame struct {
	at            time.Time // wall-clock time of its RTP timestamp
	key           bool
	afterLoss     bool
	data          []byte
	dur           time.Duration
	width, height int
}

package sfu

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"sync"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// A Tap receives a room's media inside the process, without a
// PeerConnection: the recorder is one. It is a hidden subscriber: it gets
// every published track (the widest simulcast layer, switched at
// keyframes, in one continuous stream per track), participants do not see
// it, and it never publishes.

// TapHandler is told about every track of the room, those published when
// the tap is added and those published later.
type TapHandler interface {
	// TrackStarted returns the sink for a track's RTP, or nil to ignore the
	// track. clockRate is the codec's RTP clock rate.
	TrackStarted(info TrackInfo, codec webrtc.RTPCodecCapability) TrackSink
}

// TrackSink receives one track's packets.
type TrackSink interface {
	// WriteRTP is called on the forwarding path, from the publisher's
	// reader goroutine: it must copy what it keeps (h and payload are
	// reused after it returns) and must not block.
	WriteRTP(h *rtp.Header, payload []byte)
	// Close: the track was unpublished, or the tap or the room closed. No
	// WriteRTP follows or runs concurrently.
	Close()
}

// Tap is a hidden subscriber added with Room.AddTap.
type Tap struct {
	room *Room
	h    TapHandler

	mu     sync.Mutex
	closed bool
	downs  map[*publishedTrack]*downTrack
	sinks  map[*downTrack]TrackSink
}

// AddTap attaches h to the room: TrackStarted is called at once for the
// published tracks and later for each new one.
func (r *Room) AddTap(h TapHandler) (*Tap, error) {
	if h == nil {
		return nil, errors.New("sfu: AddTap needs a handler")
	}
	tp := &Tap{room: r, h: h, downs: map[*publishedTrack]*downTrack{}, sinks: map[*downTrack]TrackSink{}}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, ErrClosed
	}
	r.taps = append(r.taps, tp)
	tracks := append([]*publishedTrack(nil), r.tracks...)
	r.mu.Unlock()
	for _, t := range tracks {
		tp.attach(t)
	}
	return tp, nil
}

// attach starts forwarding t to the tap.
func (tp *Tap) attach(t *publishedTrack) {
	tp.mu.Lock()
	if tp.closed || tp.downs[t] != nil {
		tp.mu.Unlock()
		return
	}
	tp.mu.Unlock()
	sink := tp.h.TrackStarted(t.info, t.codec)
	if sink == nil {
		return
	}
	d := newDownTrack(t, nil)
	d.tap = tp
	var ssrc [4]byte
	_, _ = rand.Read(ssrc[:])
	d.ssrc = binary.BigEndian.Uint32(ssrc[:])
	if l := t.layerAt(0); l != nil {
		d.pt = l.pt
	}
	d.writer = tapWriter{sink}
	now := nanotime()
	if li := t.selectLayer(0, 0, now); li >= 0 {
		d.target.Store(int32(li))
	}
	tp.mu.Lock()
	if tp.closed {
		tp.mu.Unlock()
		sink.Close()
		return
	}
	tp.downs[t] = d
	tp.sinks[d] = sink
	tp.mu.Unlock()
	if !t.addDown(d) {
		tp.detach(d) // unpublished meanwhile
		return
	}
	t.wantKeyframe(int(d.target.Load()), now) // start on a keyframe
}

// detach stops d and closes its sink (once).
func (tp *Tap) detach(d *downTrack) {
	d.track.removeDown(d)
	d.mu.Lock()
	d.writer = nil // no write runs or follows once we hold d.mu
	d.mu.Unlock()
	tp.mu.Lock()
	sink := tp.sinks[d]
	delete(tp.sinks, d)
	if tp.downs[d.track] == d {
		delete(tp.downs, d.track)
	}
	tp.mu.Unlock()
	if sink != nil {
		sink.Close()
	}
}

// RequestKeyframe asks the publisher of trackID for a keyframe (throttled
// like subscribers' requests), for a sink that lost its decoder state.
func (tp *Tap) RequestKeyframe(trackID string) {
	tp.mu.Lock()
	var d *downTrack
	for t, x := range tp.downs {
		if t.info.ID == trackID {
			d = x
		}
	}
	tp.mu.Unlock()
	if d != nil {
		d.keyframeRequested()
	}
}

// Close detaches the tap: every sink is closed.
func (tp *Tap) Close() {
	tp.mu.Lock()
	if tp.closed {
		tp.mu.Unlock()
		return
	}
	tp.closed = true
	downs := make([]*downTrack, 0, len(tp.sinks))
	for d := range tp.sinks {
		downs = append(downs, d)
	}
	tp.mu.Unlock()
	r := tp.room
	r.mu.Lock()
	for i, x := range r.taps {
		if x == tp {
			r.taps = append(r.taps[:i:i], r.taps[i+1:]...)
			break
		}
	}
	r.mu.Unlock()
	for _, d := range downs {
		tp.detach(d)
	}
}

// tapWriter hands forwarded packets to a sink.
type tapWriter struct{ sink TrackSink }

func (w tapWriter) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	w.sink.WriteRTP(h, payload)
	return len(payload), nil
}

func (w tapWriter) Write([]byte) (int, error) {
	return 0, errors.New("sfu: a tap takes parsed packets only")
}

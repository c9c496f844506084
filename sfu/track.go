package sfu

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// TrackInfo describes a published track.
type TrackInfo struct {
	ID          string // stable id of the published track (the browser's MediaStreamTrack id from msid)
	Participant string
	Kind        string // "audio" | "video"
	Source      string // "microphone" | "camera" | "screen"
}

const (
	// maxLayers is the most simulcast layers (rids) of one track we forward.
	maxLayers = 4
	// keyframeInterval throttles keyframe requests (PLI) toward a publisher,
	// per layer, however many subscribers ask.
	keyframeInterval = 500 * time.Millisecond
	// startKeyframeInterval throttles the requests of subscriptions that
	// wait for a keyframe to start or to switch layers: they forward
	// nothing until it comes, so they may ask more often (a join storm
	// then costs at most ten keyframes a second per layer).
	startKeyframeInterval = 100 * time.Millisecond
	// layerActiveFor: a layer that sent nothing for this long is not chosen.
	layerActiveFor = 2 * time.Second
	// rateWindow is how often a layer's bitrate is measured and its
	// subscribers' layer choice revisited.
	rateWindow = time.Second
)

// clockStart anchors nanotime; time.Since reads the monotonic clock and
// does not allocate.
var clockStart = time.Now()

func nanotime() int64 { return int64(time.Since(clockStart)) }

// publishedTrack is one track a participant publishes: one layer, or one per
// simulcast rid, and the downtracks that forward it to subscribers.
type publishedTrack struct {
	info     TrackInfo
	owner    *Participant
	receiver *webrtc.RTPReceiver
	kind     webrtc.RTPCodecType
	codec    webrtc.RTPCodecCapability
	ckind    codecKind
	clock    uint32
	sendPLI  func(ssrc uint32) // asks the publisher for a keyframe

	// layers and down are copy-on-write: the readers load them without a
	// lock for every packet; writers hold mu and store a new slice.
	layers atomic.Pointer[[]*layer]
	down   atomic.Pointer[[]*downTrack]

	mu     sync.Mutex
	closed bool // unpublished (or never allowed): no downtracks any more

	badPackets atomic.Uint64 // malformed or unreadable RTP
	readers    atomic.Int32  // layers whose reader is running
}

func newPublishedTrack(owner *Participant, recv *webrtc.RTPReceiver, remote *webrtc.TrackRemote, source string) *publishedTrack {
	codec := remote.Codec()
	kind := "audio"
	if remote.Kind() == webrtc.RTPCodecTypeVideo {
		kind = "video"
	}
	t := &publishedTrack{
		info:     TrackInfo{ID: remote.ID(), Participant: owner.id, Kind: kind, Source: source},
		owner:    owner,
		receiver: recv,
		kind:     remote.Kind(),
		codec:    codec.RTPCodecCapability,
		ckind:    codecKindOf(codec.MimeType),
		clock:    codec.ClockRate,
		sendPLI:  owner.sendPLI,
	}
	if t.clock == 0 {
		t.clock = 90000
	}
	return t
}

// addLayer registers one incoming RTP stream (a simulcast rid, or the only
// one) of this track.
func (t *publishedTrack) addLayer(remote *webrtc.TrackRemote) *layer {
	t.mu.Lock()
	defer t.mu.Unlock()
	var old []*layer
	if p := t.layers.Load(); p != nil {
		old = *p
	}
	if len(old) >= maxLayers {
		return nil
	}
	size := videoCacheSize
	if t.kind == webrtc.RTPCodecTypeAudio {
		size = audioCacheSize
	}
	l := &layer{
		track:  t,
		index:  len(old),
		rid:    remote.RID(),
		remote: remote,
		ssrc:   uint32(remote.SSRC()),
		pt:     uint8(remote.Codec().PayloadType), // PayloadType() is 0 until the first Read with simulcast
		cache:  newPacketCache(size),
	}
	n := make([]*layer, len(old)+1)
	copy(n, old)
	n[len(old)] = l
	t.layers.Store(&n)
	return l
}

func (t *publishedTrack) layerAt(i int) *layer {
	p := t.layers.Load()
	if p == nil || i < 0 || i >= len(*p) {
		return nil
	}
	return (*p)[i]
}

func (t *publishedTrack) simulcast() bool {
	p := t.layers.Load()
	return p != nil && len(*p) > 1
}

// addDown starts forwarding to d; false if the track is unpublished.
func (t *publishedTrack) addDown(d *downTrack) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	var old []*downTrack
	if p := t.down.Load(); p != nil {
		old = *p
	}
	n := make([]*downTrack, len(old)+1)
	copy(n, old)
	n[len(old)] = d
	t.down.Store(&n)
	return true
}

// removeDown stops forwarding to d.
func (t *publishedTrack) removeDown(d *downTrack) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.down.Load()
	if p == nil {
		return
	}
	n := make([]*downTrack, 0, len(*p))
	for _, x := range *p {
		if x != d {
			n = append(n, x)
		}
	}
	t.down.Store(&n)
}

// close marks the track unpublished and returns the downtracks that
// forwarded it; nil if it was already closed.
func (t *publishedTrack) close() []*downTrack {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	p := t.down.Swap(nil)
	if p == nil {
		return []*downTrack{}
	}
	return *p
}

func (t *publishedTrack) isClosed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closed
}

// requestKeyframe asks the publisher for a keyframe on layer i, at most
// once per keyframeInterval per layer.
func (t *publishedTrack) requestKeyframe(i int, now int64) {
	t.requestKeyframeEvery(i, now, keyframeInterval)
}

// wantKeyframe is requestKeyframe for a subscription that forwards
// nothing until the keyframe comes (throttled by startKeyframeInterval).
func (t *publishedTrack) wantKeyframe(i int, now int64) {
	t.requestKeyframeEvery(i, now, startKeyframeInterval)
}

func (t *publishedTrack) requestKeyframeEvery(i int, now int64, gap time.Duration) {
	if t.kind != webrtc.RTPCodecTypeVideo {
		return
	}
	l := t.layerAt(i)
	if l == nil {
		return
	}
	last := l.lastPLI.Load()
	if last != 0 && now-last < int64(gap) {
		return
	}
	if !l.lastPLI.CompareAndSwap(last, now) {
		return
	}
	l.plis.Add(1)
	t.sendPLI(l.ssrc)
}

// selectLayer returns the layer to forward to a subscriber that wants
// frames at most maxWidth pixels wide (0: no limit) and at most capRate
// bit/s (0: no limit): the widest active layer that fits both, else the
// narrowest. Widths come from keyframes; when a codec does not carry them,
// layers are ranked by bitrate and assumed to halve in width from the top
// one. A layer whose bitrate is not measured yet fits any cap. -1: no layer
// is active.
func (t *publishedTrack) selectLayer(maxWidth int, capRate int64, now int64) int {
	p := t.layers.Load()
	if p == nil || len(*p) == 0 {
		return -1
	}
	ls := *p
	if len(ls) == 1 {
		return 0
	}
	var (
		idx   [maxLayers]int
		width [maxLayers]int
		rate  [maxLayers]int64
		n     int
		known = true
		top   = 0
	)
	for _, l := range ls {
		last := l.lastPacket.Load()
		if last == 0 || now-last > int64(layerActiveFor) {
			continue
		}
		idx[n], width[n], rate[n] = l.index, int(l.width.Load()), l.bitrate.Load()
		if width[n] == 0 {
			known = false
		}
		top = max(top, width[n])
		n++
	}
	if n == 0 {
		return -1
	}
	// Insertion sort, ascending by width (or by bitrate when widths are
	// missing); ties by bitrate.
	less := func(a, b int) bool {
		if known && width[a] != width[b] {
			return width[a] < width[b]
		}
		return rate[a] < rate[b]
	}
	for i := 1; i < n; i++ {
		for j := i; j > 0 && less(j, j-1); j-- {
			idx[j], idx[j-1] = idx[j-1], idx[j]
			width[j], width[j-1] = width[j-1], width[j]
			rate[j], rate[j-1] = rate[j-1], rate[j]
		}
	}
	if !known {
		if top == 0 {
			top = 1280
		}
		for i := n - 1; i >= 0; i-- {
			width[i] = top >> (n - 1 - i)
		}
	}
	pos := 0
	for i := 0; i < n; i++ {
		if maxWidth <= 0 || width[i] <= maxWidth {
			pos = i
		}
	}
	for capRate > 0 && pos > 0 && rate[pos] > capRate {
		pos--
	}
	return idx[pos]
}

// activeRates appends the bitrates of the layers that are sending.
func (t *publishedTrack) activeRates(now int64, out []int64) []int64 {
	if p := t.layers.Load(); p != nil {
		for _, l := range *p {
			if r := l.rate(now); r > 0 {
				out = append(out, r)
			}
		}
	}
	return out
}

// retarget revisits the layer d should receive, by the width it asked for
// and its bandwidth (bwe.go); a new target gets a keyframe request, and the
// switch happens when that keyframe arrives.
func (t *publishedTrack) retarget(d *downTrack, now int64) {
	var buf [maxLayers]int64
	rates := t.activeRates(now, buf[:0])
	var sending int64
	if l := t.layerAt(int(d.curLayer.Load())); l != nil {
		sending = l.rate(now)
	}
	capRate := d.bw.update(d.sub.videoBudget(), sending, d.sub.estimateCut(now), d.fracLost.Load() > lossyFraction, rates, now)
	li := t.selectLayer(int(d.maxWidth.Load()), capRate, now)
	if li < 0 {
		return
	}
	if old := d.target.Swap(int32(li)); int(old) != li && int(d.curLayer.Load()) != li {
		t.wantKeyframe(li, now)
	}
}

// layer is one incoming RTP stream: the only one of a track, or one
// simulcast rid. Its reader goroutine is the only writer of the fields
// marked "reader".
type layer struct {
	track  *publishedTrack
	index  int
	rid    string
	remote *webrtc.TrackRemote
	ssrc   uint32
	pt     uint8
	cache  *packetCache

	width      atomic.Int32 // from the last keyframe that carried it
	lastPacket atomic.Int64 // nanotime
	lastPLI    atomic.Int64 // nanotime
	bitrate    atomic.Int64 // bit/s over the last rateWindow
	packets    atomic.Uint64
	bytes      atomic.Uint64
	lost       atomic.Uint64
	plis       atomic.Uint64

	hdr         rtp.Header // reader: parsed header of the current packet
	seqStarted  bool       // reader
	baseSeq     uint16     // reader
	maxSeq      uint16     // reader
	cycles      uint64     // reader
	received    uint64     // reader
	windowStart int64      // reader
	windowBytes uint64     // reader
	fan         fanout     // reader: a large fan-out's chunks (fanout.go)
}

// run reads the stream until it ends, with one reused buffer. It runs in
// the goroutine Pion starts for OnTrack, owned by the publisher.
func (l *layer) run() {
	buf := make([]byte, maxPacketSize)
	readLoop(func() error {
		n, _, err := l.remote.Read(buf)
		if err == nil {
			l.ingest(buf[:n], nanotime())
		}
		return err
	}, func() { l.track.badPackets.Add(1) })
}

// readRTCP drains the publisher's RTCP for this layer so that Pion's
// interceptors see its sender reports (needed for our receiver reports).
func (l *layer) readRTCP() {
	buf := make([]byte, maxPacketSize)
	readLoop(func() error {
		_, _, err := l.track.receiver.ReadSimulcast(buf, l.rid)
		return err
	}, nil)
}

// readLoop calls read until it fails with a "closed" error. Other errors
// (a malformed packet) are counted and skipped, unless there are so many in
// a row that read is evidently not blocking any more.
func readLoop(read func() error, bad func()) {
	errs := 0
	for {
		err := read()
		if err == nil {
			errs = 0
			continue
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe) || errors.Is(err, net.ErrClosed) {
			return
		}
		if bad != nil {
			bad()
		}
		if errs++; errs > 1000 {
			return
		}
	}
}

// ingest handles one RTP packet: parse, count, cache, and hand it to every
// subscriber. This is the forwarding hot path: it must not allocate.
func (l *layer) ingest(pkt []byte, now int64) {
	t := l.track
	h := &l.hdr
	hlen, err := h.Unmarshal(pkt)
	if err != nil || h.Version != 2 || h.PayloadType != l.pt {
		t.badPackets.Add(1)
		return
	}
	payload, pad, ok := splitPadding(h, pkt[hlen:])
	if !ok {
		t.badPackets.Add(1)
		return
	}

	l.count(h.SequenceNumber, len(payload), now)
	l.cache.store(h.SequenceNumber, pkt)

	key, width := false, 0
	if len(payload) > 0 {
		key, width = keyframe(t.ckind, payload)
	}
	revisit := false
	if width > 0 && width < 1<<15 && l.width.Swap(int32(width)) != int32(width) {
		revisit = true // a layer's width is known, or changed
	}

	var downs []*downTrack
	if p := t.down.Load(); p != nil {
		downs = *p
	}
	if now-l.windowStart >= int64(rateWindow) {
		if l.windowStart != 0 {
			l.bitrate.Store(int64(l.windowBytes*8) * int64(time.Second) / (now - l.windowStart))
		}
		l.windowStart, l.windowBytes = now, 0
		revisit = true
	}
	if revisit && t.simulcast() {
		for _, d := range downs {
			t.retarget(d, now)
		}
	}
	// Several cores for a large room (fanout.go).
	var pool *fanPool
	if s := t.sfu(); s != nil {
		pool = s.pool
	}
	l.forwardAll(pool, downs, h, payload, pad, key, now)
}

// sfu is the SFU the track's publisher belongs to (nil in tests without one).
func (t *publishedTrack) sfu() *SFU {
	if t.owner == nil {
		return nil
	}
	return t.owner.sfu
}

// count updates the layer's statistics (RFC 3550 loss: expected - received).
func (l *layer) count(seq uint16, size int, now int64) {
	if !l.seqStarted {
		l.seqStarted, l.baseSeq, l.maxSeq = true, seq, seq
	} else if d := int16(seq - l.maxSeq); d > 0 {
		if seq < l.maxSeq {
			l.cycles += 1 << 16
		}
		l.maxSeq = seq
	}
	l.received++
	expected := l.cycles + uint64(l.maxSeq) - uint64(l.baseSeq) + 1
	if expected > l.received {
		l.lost.Store(expected - l.received)
	} else {
		l.lost.Store(0)
	}
	l.packets.Add(1)
	l.bytes.Add(uint64(size))
	l.windowBytes += uint64(size)
	l.lastPacket.Store(now)
}

// splitPadding separates RTP padding from the payload: Pion's marshaller
// writes the padding itself from PaddingSize.
func splitPadding(h *rtp.Header, payload []byte) ([]byte, byte, bool) {
	if !h.Padding {
		return payload, 0, true
	}
	if len(payload) == 0 {
		return nil, 0, false
	}
	pad := payload[len(payload)-1]
	if pad == 0 || int(pad) > len(payload) {
		return nil, 0, false
	}
	return payload[:len(payload)-int(pad)], pad, true
}

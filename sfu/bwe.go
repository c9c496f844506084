package sfu

import (
	"sync"
	"time"
)

// Bandwidth toward subscribers.
//
// Every subscriber's PeerConnection runs a send-side congestion controller
// in the manner of Google Congestion Control (twcc.go): our outgoing packets
// carry transport-wide sequence numbers, the browser returns transport-cc
// feedback, and the estimator turns it into a target bitrate for the whole
// connection. A simulcast
// subscription then gets the widest layer that fits the width the
// subscriber asked for and, after congestion, its share of that estimate.
//
// The estimate never rises above 1.5 times the rate seen to arrive, so a
// subscriber held on a low layer would never earn a higher one by estimate
// alone (real SFUs probe with padding; we do not pad), and right after a
// switch up it still measures what arrived before: compared with the new
// layer at once, it said "does not fit" on an idle path and sent the
// subscription back down within milliseconds. So the estimate holds a
// subscription down only when the estimator has just seen congestion.
// Each subscription keeps a bitrate cap: when the receiver reports loss,
// or when the estimator cut its estimate (a queue building up, or loss)
// within cutMemory and the layer being sent does not fit the
// subscription's share of it, the cap drops to that share; after a quiet
// period the cap is lifted to allow one layer more than the one being sent
// (a probe), and a probe that runs into congestion again makes the next
// quiet period twice as long (8 s up to 64 s).
const (
	bweInitial = 1_500_000 // bit/s, before any feedback
	bweMin     = 100_000
	bweMax     = 20_000_000
	// audioShare is set aside from the estimate for each audio
	// subscription (Opus in a meeting: 20–40 kbit/s plus overhead).
	audioShare = 48_000
	// congested: the estimate covers less than this share (in %) of the
	// bitrate of the layer being sent.
	congestedPercent = 85
	// lossyFraction: a receiver report losing more than this share (of
	// 256) counts as congestion too, for clients without transport-cc.
	lossyFraction = 26
	probeAfterMin = 8 * time.Second
	probeAfterMax = 64 * time.Second
	// cutMemory: a cut of the estimate this recent is congestion that a
	// layer not fitting the estimate runs into (the estimator cuts at most
	// every 300 ms while it lasts, and layers are revisited every second).
	cutMemory = 2 * time.Second
)

// videoBudget is this subscriber's estimate share for one video
// subscription, in bit/s; 0 when there is no estimate.
func (p *Participant) videoBudget() int64 {
	if p == nil { // a tap has no connection to estimate
		return 0
	}
	target := p.cong.target.Load()
	if target <= 0 {
		return 0
	}
	video := max(int64(p.videoDowns.Load()), 1)
	rest := target - audioShare*int64(p.audioDowns.Load())
	return max(rest, bweMin/2) / video
}

// estimateCut: the estimator toward p cut its estimate (a queue building
// up, or loss) within cutMemory before now. False for a tap.
func (p *Participant) estimateCut(now int64) bool {
	if p == nil {
		return false
	}
	at := p.cong.cutAt.Load()
	return at != 0 && now-at < int64(cutMemory)
}

// bwCap is one subscription's bitrate cap (see the top of this file).
type bwCap struct {
	mu        sync.Mutex
	cap       int64 // bit/s; 0: none
	changed   int64 // nanotime of the last change
	probed    int64 // nanotime of the last probe up
	probeWait time.Duration
}

// update revisits the cap. budget is the subscription's share of the
// estimate (0: unknown), sending the bitrate of the layer being forwarded
// (0: none or unknown), cut whether the estimator cut the estimate lately
// (estimateCut), lossy whether the subscriber's last receiver report lost
// too much, and rates the bitrates of the track's active layers. An
// estimate below the rate sent is congestion only after a cut: otherwise
// it has not measured the layer yet. It returns the cap to choose a layer
// under (0: none).
func (b *bwCap) update(budget, sending int64, cut, lossy bool, rates []int64, now int64) int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.probeWait == 0 {
		b.probeWait = probeAfterMin
	}
	congested := lossy || cut && budget > 0 && sending > 0 && budget*100 < sending*congestedPercent
	switch {
	case congested:
		limit := budget
		if limit <= 0 || limit >= sending {
			limit = sending * 3 / 4 // loss alone: below what we send
		}
		if b.cap != 0 && b.cap <= limit {
			return b.cap // already capped below this
		}
		if b.probed != 0 && now-b.probed < int64(2*b.probeWait) {
			// The last probe up ran into this: wait longer next time.
			b.probeWait = min(2*b.probeWait, probeAfterMax)
		} else {
			b.probeWait = probeAfterMin
		}
		b.cap, b.changed = limit, now
	case b.cap != 0 && now-b.changed >= int64(b.probeWait):
		// Quiet for a while: allow the next layer up from the one being
		// sent. Not from the cap: congestion on the lowest layer puts the
		// cap below it, and lifting the cap to that layer, which is sent
		// anyway, spent a whole quiet period on nothing. The new cap lies
		// halfway to the layer above the allowed one, so that the allowed
		// layer's bitrate may vary (a keyframe doubles it for a moment)
		// without falling outside again; with none above, no cap.
		next := nextRate(rates, max(b.cap, sending))
		if above := nextRate(rates, next); next == 0 || above == 0 {
			b.cap = 0
		} else {
			b.cap = (next + above) / 2
		}
		b.changed, b.probed = now, now
	}
	return b.cap
}

// nextRate is the lowest of rates above r; 0 if there is none.
func nextRate(rates []int64, r int64) int64 {
	next := int64(0)
	for _, x := range rates {
		if x > r && (next == 0 || x < next) {
			next = x
		}
	}
	return next
}

// current is the cap without revisiting it.
func (b *bwCap) current() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cap
}

package sfu

import (
	"math"
	"sync"
	"sync/atomic"

	"github.com/pion/rtcp"
)

// Transport-wide congestion control toward one subscriber.
//
// Every packet forwarded to a subscriber carries a transport-wide sequence
// number (the transport-cc header extension, numbered per connection in
// downTrack.write), and its send time and size are kept in a small ring.
// The browser answers with transport-cc feedback: which of those numbers
// arrived, and when. From it the estimator below derives a target bitrate
// the way Google Congestion Control does, in two parts:
//
//   - delay: packets are grouped by send time (5 ms bursts); the growth of
//     the one-way delay between groups is accumulated, smoothed, and its
//     trend (the slope of a least-squares line over the last 20 groups)
//     compared with an adaptive threshold. A rising trend means a queue is
//     building on the path: overuse.
//   - loss: more than 10 % of a feedback's packets lost lowers the target in
//     proportion; under 2 % lets it grow.
//
// The rate control is additive-increase/multiplicative-decrease on top:
// overuse sets the target to 85 % of the rate that was acknowledged
// (measured from arrivals), normal feedback raises it by 8 % a second, never
// above 1.5 times the acknowledged rate.
//
// This replaces Pion's GCC interceptor (interceptor/pkg/gcc): it computed
// the same signals, but kept every sent packet in a map and a list (about
// 1 µs of CPU per forwarded packet copy, a quarter of the forwarding path's
// user time, measured with perf in bench/), ran two goroutines and held
// ~36 KB per connection. Here a sent packet costs a ring-slot write under
// a mutex, and feedback (every ~100 ms) does the arithmetic.
const (
	// ccRing is the number of sent packets remembered: at least a second of
	// a subscriber's traffic in ordinary meetings; feedback arrives every
	// 50–100 ms.
	ccRing = 1024
	// ccBurst groups packets sent less than this apart (µs).
	ccBurst = 5000
	// ccTrendWindow is the number of groups in the delay trend.
	ccTrendWindow = 20
	// ccSmoothing of the accumulated delay (exponential, per group).
	ccSmoothing = 0.9
	// ccTrendGain scales the slope (ms of delay per ms) into the value
	// compared with the threshold (GCC's "threshold gain").
	ccTrendGain = 4.0
	// ccDecreaseEvery: after a decrease, the next one waits this long (µs),
	// so that one queue does not cut the target twice.
	ccDecreaseEvery = 300_000
	// ccAckWindow: the acknowledged rate is measured over at least this
	// much arrival time (µs).
	ccAckWindow = 500_000
)

// sentPacket is what the ring keeps of one packet: its transport-wide
// sequence number, its send time (µs since clockStart, wrapping every
// 71 minutes) and its size in bytes.
type sentPacket struct {
	at   uint32
	seq  uint16
	size uint16
}

// congestion is one subscriber connection's transport-wide sequence
// numbering, sent-packet ring and bandwidth estimate.
type congestion struct {
	target atomic.Int64 // bit/s; read by layer selection and stats
	cutAt  atomic.Int64 // nanotime of the last cut of target (overuse, loss); 0: none

	mu   sync.Mutex
	seq  uint16 // next transport-wide sequence number
	ring *[ccRing]sentPacket

	// Estimator state, touched only by feedback (under mu).
	lastUpdate   int64   // µs of the previous update
	lastDecrease int64   // µs
	group        ccGroup // the group being filled
	prev         ccGroup // the last complete group
	havePrev     bool
	accDelay     float64 // accumulated delay variation, ms
	smoothed     float64
	trend        [ccTrendWindow][2]float64 // (arrival ms, smoothed delay ms)
	ntrend       int
	ntotal       int // groups seen (capped), scales the trend like GCC
	threshold    float64
	lastThresh   float64 // arrival ms of the last threshold update
	overusing    int     // consecutive groups over the threshold
	ackBytes     int64
	ackFirst     int64   // arrival µs of the window's first packet
	ackLast      int64   // ... and last
	acked        float64 // acknowledged bit/s, 0: unknown
}

// ccGroup is a burst of packets sent within ccBurst of its first.
type ccGroup struct {
	firstSend int64 // µs
	lastSend  int64
	arrival   int64 // µs, of its last packet
	valid     bool
}

func newCongestion() *congestion {
	c := &congestion{threshold: 12.5}
	c.target.Store(bweInitial)
	return c
}

// sent numbers one outgoing packet of size bytes sent at now (nanotime)
// and remembers it. Hot path: no allocation.
func (c *congestion) sent(now int64, size int) uint16 {
	c.mu.Lock()
	if c.ring == nil {
		c.ring = new([ccRing]sentPacket)
	}
	seq := c.seq
	c.seq++
	c.ring[seq%ccRing] = sentPacket{at: uint32(now / 1000), seq: seq, size: uint16(min(size, math.MaxUint16))}
	c.mu.Unlock()
	return seq
}

// lookup finds the packet with transport-wide number seq. c.mu is held.
func (c *congestion) lookup(seq uint16) (sentPacket, bool) {
	if c.ring == nil {
		return sentPacket{}, false
	}
	p := c.ring[seq%ccRing]
	return p, p.seq == seq && p.size != 0
}

// feedback processes one transport-cc feedback packet received at now
// (nanotime).
func (c *congestion) feedback(fb *rtcp.TransportLayerCC, now int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ring == nil {
		return
	}
	// The reference time is in 64 ms units (24 bits); arrivals are only
	// compared with each other, so its origin does not matter.
	arrival := int64(fb.ReferenceTime) * 64000
	seq := fb.BaseSequenceNumber
	deltas := fb.RecvDeltas
	var lost, total int
	nowUs := now / 1000
	sendBase := nowUs - int64(uint32(nowUs)) // undoes the 32-bit wrap of sentPacket.at, near now
	for _, chunk := range fb.PacketChunks {
		var symbols []uint16
		var run uint16
		var runSymbol uint16
		switch ch := chunk.(type) {
		case *rtcp.RunLengthChunk:
			run, runSymbol = ch.RunLength, ch.PacketStatusSymbol
		case *rtcp.StatusVectorChunk:
			symbols = ch.SymbolList
			run = uint16(len(symbols))
		default:
			continue
		}
		for i := uint16(0); i < run; i++ {
			if total >= int(fb.PacketStatusCount) {
				break
			}
			sym := runSymbol
			if symbols != nil {
				sym = symbols[i]
				if chunk.(*rtcp.StatusVectorChunk).SymbolSize == rtcp.TypeTCCSymbolSizeOneBit && sym == 1 {
					sym = rtcp.TypeTCCPacketReceivedSmallDelta
				}
			}
			total++
			s := seq
			seq++
			switch sym {
			case rtcp.TypeTCCPacketReceivedSmallDelta, rtcp.TypeTCCPacketReceivedLargeDelta:
				if len(deltas) == 0 {
					continue
				}
				arrival += deltas[0].Delta
				deltas = deltas[1:]
			default:
				lost++
				continue
			}
			p, ok := c.lookup(s)
			if !ok {
				continue
			}
			sentAt := sendBase + int64(p.at)
			if sentAt > nowUs {
				sentAt -= 1 << 32
			}
			c.arrived(sentAt, arrival, int(p.size))
		}
	}
	if total > 0 {
		c.update(float64(lost)/float64(total), total, nowUs)
	}
}

// arrived feeds one acknowledged packet (send and arrival time in µs) to
// the delay and rate measurements.
func (c *congestion) arrived(sent, arrival int64, size int) {
	// Acknowledged rate over windows of at least ccAckWindow of arrivals.
	if c.ackBytes == 0 || arrival < c.ackFirst {
		c.ackFirst, c.ackLast, c.ackBytes = arrival, arrival, 0
	}
	c.ackBytes += int64(size)
	c.ackLast = max(c.ackLast, arrival)
	if span := c.ackLast - c.ackFirst; span >= ccAckWindow {
		rate := float64(c.ackBytes*8) * 1e6 / float64(span)
		if c.acked == 0 {
			c.acked = rate
		} else {
			c.acked = 0.5*c.acked + 0.5*rate
		}
		c.ackBytes = 0
	}

	// Delay: packets in 5 ms bursts form a group.
	g := &c.group
	if g.valid && sent-g.firstSend < ccBurst && sent >= g.firstSend {
		g.lastSend = max(g.lastSend, sent)
		g.arrival = max(g.arrival, arrival)
		return
	}
	if g.valid && sent < g.firstSend {
		return // reordered from an older group: ignored
	}
	if g.valid {
		if c.havePrev {
			c.delayDelta(float64((g.arrival-c.prev.arrival)-(g.lastSend-c.prev.lastSend))/1000, float64(g.arrival)/1000)
		}
		c.prev, c.havePrev = *g, true
	}
	*g = ccGroup{firstSend: sent, lastSend: sent, arrival: arrival, valid: true}
}

// delayDelta adds one inter-group delay variation (ms) observed at arrival
// (ms) to the trend and updates the overuse detector.
func (c *congestion) delayDelta(d, arrival float64) {
	c.accDelay += d
	c.smoothed = ccSmoothing*c.smoothed + (1-ccSmoothing)*c.accDelay
	if c.ntrend < ccTrendWindow {
		c.ntrend++
	} else {
		copy(c.trend[:], c.trend[1:])
	}
	c.trend[c.ntrend-1] = [2]float64{arrival, c.smoothed}
	c.ntotal = min(c.ntotal+1, 60)
	if c.ntrend < ccTrendWindow {
		return
	}
	// Least-squares slope of smoothed delay over arrival time.
	var mx, my float64
	for _, p := range c.trend {
		mx += p[0]
		my += p[1]
	}
	mx /= ccTrendWindow
	my /= ccTrendWindow
	var num, den float64
	for _, p := range c.trend {
		num += (p[0] - mx) * (p[1] - my)
		den += (p[0] - mx) * (p[0] - mx)
	}
	if den == 0 {
		return
	}
	modified := float64(c.ntotal) * num / den * ccTrendGain
	// Adaptive threshold (GCC): follows |trend| slowly up, faster down,
	// so that a competing flow's steady queue is not overuse for ever.
	dt := min(arrival-c.lastThresh, 100)
	if c.lastThresh == 0 {
		dt = 0
	}
	c.lastThresh = arrival
	if math.Abs(modified) < c.threshold+15 {
		k := 0.0087
		if math.Abs(modified) < c.threshold {
			k = 0.039
		}
		c.threshold += k * (math.Abs(modified) - c.threshold) * dt
		c.threshold = min(max(c.threshold, 6), 600)
	}
	if modified > c.threshold {
		c.overusing++
	} else {
		c.overusing = 0
	}
}

// update moves the target after one feedback: loss fraction lost of total
// packets, at nowUs.
func (c *congestion) update(lost float64, total int, nowUs int64) {
	target := float64(c.target.Load())
	dt := 0.0
	if c.lastUpdate != 0 {
		dt = float64(nowUs-c.lastUpdate) / 1e6
	}
	c.lastUpdate = nowUs
	switch {
	case c.overusing >= 2 && nowUs-c.lastDecrease >= ccDecreaseEvery:
		if c.acked > 0 {
			target = min(target, 0.85*c.acked)
		} else {
			target *= 0.85
		}
		c.lastDecrease = nowUs
		c.cutAt.Store(nowUs * 1000)
	case lost > 0.10 && total >= 10 && nowUs-c.lastDecrease >= ccDecreaseEvery:
		target *= 1 - 0.5*lost
		c.lastDecrease = nowUs
		c.cutAt.Store(nowUs * 1000)
	case c.overusing == 0 && lost < 0.02:
		// 8 % a second, for the time since the previous feedback
		// (bounded: a long silence is not a licence to jump).
		target *= 1 + 0.08*min(dt, 0.5)
		if c.acked > 0 {
			target = min(target, 1.5*c.acked+10_000)
		}
	}
	c.target.Store(int64(min(max(target, bweMin), bweMax)))
}

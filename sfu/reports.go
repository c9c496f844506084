package sfu

import (
	"math/rand/v2"
	"sync"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
)

// RTCP reports without Pion's per-packet interceptors.
//
// Sender reports toward subscribers are made here, from the counters and
// the last rewritten timestamp the forwarding path keeps anyway, instead
// of by Pion's sender-report interceptor, which sat in every forwarded
// packet's write (a lock, a clock read and two calls per copy) and ran a
// goroutine per connection.
//
// The publishing side keeps Pion's receiver-report, NACK-generator and
// transport-cc feedback interceptors, but each is started only when its
// connection receives a stream (lazyRemote): a subscriber that publishes
// nothing runs none of their goroutines.

// reportInterval is the mean time between a participant's sender reports
// (RFC 3550 leaves it to the application; browsers send theirs about every
// second, as Pion's interceptor did).
const reportInterval = time.Second

// armReportsLocked schedules the participant's next sender reports after
// about d (±10 %, so that connections made together do not report
// together). p.mu is held.
func (p *Participant) armReportsLocked(d time.Duration) {
	if p.closed || p.reportTimer != nil {
		return
	}
	d += time.Duration(rand.Int64N(int64(d)/5)) - d/10
	p.wg.Add(1)
	p.reportTimer = time.AfterFunc(d, func() {
		defer p.wg.Done()
		p.sendReports()
	})
}

// sendReports writes one compound RTCP packet with a sender report per
// stream the participant receives, and schedules the next.
func (p *Participant) sendReports() {
	var buf [16]*downTrack
	downs := buf[:0]
	p.mu.Lock()
	p.reportTimer = nil
	if p.closed {
		p.mu.Unlock()
		return
	}
	for _, s := range p.slots {
		if d := s.cur.Load(); d != nil {
			downs = append(downs, d)
		}
	}
	p.armReportsLocked(reportInterval)
	p.mu.Unlock()

	now, mono := time.Now(), nanotime()
	pkts := make([]rtcp.Packet, 0, len(downs))
	for _, d := range downs {
		if sr, ok := d.senderReport(now, mono); ok {
			pkts = append(pkts, sr)
		}
	}
	if len(pkts) == 0 {
		return
	}
	if err := p.pc.WriteRTCP(pkts); err != nil {
		p.log.Debug("sender reports", "err", err)
	}
}

// senderReport describes what this downtrack sent on its SSRC: the packet
// and payload-octet counts, and the RTP timestamp that corresponds to now
// (the last one sent, advanced by the time since at the codec's clock).
// Nothing before the first packet, or while held.
func (d *downTrack) senderReport(now time.Time, mono int64) (*rtcp.SenderReport, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	packets := d.packets.Load()
	if d.writer == nil || d.held || !d.started || packets == 0 {
		return nil, false
	}
	elapsed := min(max(mono-d.lastWrite, 0), int64(time.Hour))
	return &rtcp.SenderReport{
		SSRC:        d.ssrc,
		NTPTime:     ntpTime(now),
		RTPTime:     d.lastTS + uint32(uint64(elapsed)*uint64(d.track.clock)/uint64(time.Second)),
		PacketCount: uint32(packets),
		OctetCount:  uint32(d.bytes.Load()),
	}, true
}

// ntpTime is t in the NTP timestamp format of RFC 3550 section 4: seconds
// since 1900 in the high 32 bits, the fraction of a second in the low 32.
func ntpTime(t time.Time) uint64 {
	const ntpEpochOffset = 2208988800 // seconds from 1900 to 1970
	ns := t.UnixNano()
	sec := uint64(ns/1e9) + ntpEpochOffset
	frac := uint64(ns%1e9) << 32 / 1e9
	return sec<<32 | frac
}

// lazyRemoteFactory builds lazyRemote interceptors around another factory's.
type lazyRemoteFactory struct{ inner interceptor.Factory }

func (f lazyRemoteFactory) NewInterceptor(id string) (interceptor.Interceptor, error) {
	in, err := f.inner.NewInterceptor(id)
	if err != nil {
		return nil, err
	}
	return &lazyRemote{inner: in}, nil
}

// lazyRemote wraps an interceptor that acts only on received streams and
// starts a goroutine when given the connection's RTCP writer (Pion's
// receiver-report, NACK-generator and transport-cc feedback interceptors):
// it hands the writer over at the first received stream instead of when
// the connection is made. The wrapped interceptor must return the writer
// it is given unchanged (those three do), since the connection's writer is
// fixed before any stream exists.
type lazyRemote struct {
	inner interceptor.Interceptor

	mu      sync.Mutex
	writer  interceptor.RTCPWriter
	started bool
}

func (l *lazyRemote) BindRTCPReader(r interceptor.RTCPReader) interceptor.RTCPReader {
	return l.inner.BindRTCPReader(r)
}

func (l *lazyRemote) BindRTCPWriter(w interceptor.RTCPWriter) interceptor.RTCPWriter {
	l.mu.Lock()
	l.writer = w
	l.mu.Unlock()
	return w
}

func (l *lazyRemote) BindLocalStream(info *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	return l.inner.BindLocalStream(info, w)
}

func (l *lazyRemote) UnbindLocalStream(info *interceptor.StreamInfo) {
	l.inner.UnbindLocalStream(info)
}

func (l *lazyRemote) BindRemoteStream(info *interceptor.StreamInfo, r interceptor.RTPReader) interceptor.RTPReader {
	l.mu.Lock()
	if !l.started && l.writer != nil {
		l.started = true
		l.inner.BindRTCPWriter(l.writer)
	}
	l.mu.Unlock()
	return l.inner.BindRemoteStream(info, r)
}

func (l *lazyRemote) UnbindRemoteStream(info *interceptor.StreamInfo) {
	l.inner.UnbindRemoteStream(info)
}

func (l *lazyRemote) Close() error { return l.inner.Close() }

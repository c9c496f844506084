package sfu

import (
	"sync"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
)

// The RTCP a browser relies on still flows without Pion's sender-report
// interceptor and with the publishing side's interceptors started lazily:
// receiver reports, transport-cc feedback and NACKs reach the publisher;
// sender reports with a consistent NTP/RTP mapping and counts reach the
// subscriber, for audio and video.
func TestRTCPFeedback(t *testing.T) {
	s := newTestSFU(t)
	room := s.NewRoom("rtcp")
	a := newClient(t, room, "a", publishAll)
	defer a.close()
	b := newClient(t, room, "b", publishAll)
	defer b.close()
	cam := a.publishVideo("a-cam", "camera", 20*time.Millisecond)
	mic := a.publishAudio("a-mic", 20*time.Millisecond)
	a.connect()
	b.connect()
	eventually(t, 10*time.Second, func() bool { return b.packetsOf("a-cam") > 10 && b.packetsOf("a-mic") > 10 }, "b receives a's tracks")

	// Toward the publisher.
	eventually(t, 5*time.Second, func() bool { return cam.rrs.Load() > 0 && mic.rrs.Load() > 0 }, "receiver reports about both of a's SSRCs")
	eventually(t, 5*time.Second, func() bool { return cam.feedbacks.Load() > 0 }, "transport-cc feedback to a")
	cam.skip.Store(true)
	eventually(t, 5*time.Second, func() bool { return cam.nacked.Load() > 0 }, "a NACK for the sequence number a left out")

	// Toward the subscriber: a few reports per track.
	for _, id := range []string{"a-cam", "a-mic"} {
		rt := b.track(id)
		eventually(t, 6*time.Second, func() bool {
			rt.mu.Lock()
			defer rt.mu.Unlock()
			return len(rt.srs) >= 3
		}, "sender reports about %s", id)
		clock := int64(90000)
		if id == "a-mic" {
			clock = 48000
		}
		rt.mu.Lock()
		srs := append([]srSample(nil), rt.srs...)
		rt.mu.Unlock()
		final := rt.packets.Load()
		for i, s := range srs {
			// The NTP time is the SFU's wall clock when it sent the report:
			// before its receipt (same clock), and not long before.
			made := ntpToTime(s.sr.NTPTime)
			if d := s.at.Sub(made); d < -50*time.Millisecond || d > 3*time.Second {
				t.Errorf("%s report %d: made at %v, received %v later", id, i, made, d)
			}
			if !s.found {
				t.Errorf("%s report %d: no packet had arrived before it was made", id, i)
				continue
			}
			// The RTP time is that of the stream when the report was made:
			// at or after the newest packet received by then (sent before
			// it), ahead by no more than that packet's lag (a packet
			// interval, or the test reader's delay on a loaded machine).
			if d := int64(int32(s.sr.RTPTime - s.lastTS)); d < -clock/100 || d > clock {
				t.Errorf("%s report %d: RTP time %d is %d ticks from the newest packet received before it (%d)", id, i, s.sr.RTPTime, d, s.lastTS)
			}
			// Counts: at least what had arrived when it was made, at most
			// what arrived in the end (loopback loses nothing; the one
			// sequence number left out was never sent).
			if n := int64(s.sr.PacketCount); n < s.packets-2 || n > final+2 {
				t.Errorf("%s report %d: packet count %d; %d packets had arrived when it was made, %d in the end", id, i, n, s.packets, final)
			}
			if s.sr.OctetCount <= s.sr.PacketCount {
				t.Errorf("%s report %d: octet count %d for %d packets", id, i, s.sr.OctetCount, s.sr.PacketCount)
			}
			if i > 0 {
				p := srs[i-1]
				if s.sr.PacketCount <= p.sr.PacketCount || int32(s.sr.RTPTime-p.sr.RTPTime) <= 0 || s.sr.NTPTime <= p.sr.NTPTime {
					t.Errorf("%s reports %d and %d do not advance: %+v then %+v", id, i-1, i, p.sr, s.sr)
				}
				// About one a second (by the SFU's clock: ±10 %, later
				// when the machine is loaded).
				if gap := made.Sub(ntpToTime(p.sr.NTPTime)); gap < reportInterval/2 || gap > 5*reportInterval {
					t.Errorf("%s reports %d and %d were made %v apart", id, i-1, i, gap)
				}
			}
		}
	}
}

func ntpToTime(ntp uint64) time.Time {
	sec := int64(ntp>>32) - 2208988800
	ns := int64((ntp & 0xffffffff) * 1e9 >> 32)
	return time.Unix(sec, ns)
}

func TestNTPTime(t *testing.T) {
	for _, c := range []struct {
		t    time.Time
		want uint64
	}{
		{time.Unix(0, 0), 2208988800 << 32},
		{time.Unix(1, 500_000_000), 2208988801<<32 | 0x80000000},
		{time.Unix(1_800_000_000, 250_000_000), (1_800_000_000+2208988800)<<32 | 0x40000000},
	} {
		if got := ntpTime(c.t); got != c.want {
			t.Errorf("ntpTime(%v) = %#x, want %#x", c.t, got, c.want)
		}
	}
	now := time.Now()
	if d := ntpToTime(ntpTime(now)).Sub(now); d < -time.Microsecond || d > time.Microsecond {
		t.Errorf("round trip off by %v", d)
	}
}

// fakeInterceptor records what lazyRemote hands it.
type fakeInterceptor struct {
	interceptor.NoOp
	mu      sync.Mutex
	writers []interceptor.RTCPWriter
	remotes int
	closed  bool
}

func (f *fakeInterceptor) BindRTCPWriter(w interceptor.RTCPWriter) interceptor.RTCPWriter {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writers = append(f.writers, w)
	return w
}

func (f *fakeInterceptor) BindRemoteStream(_ *interceptor.StreamInfo, r interceptor.RTPReader) interceptor.RTPReader {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.remotes++
	return r
}

func (f *fakeInterceptor) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

// lazyRemote gives the wrapped interceptor the connection's RTCP writer at
// the first received stream, once, and not before.
func TestLazyRemote(t *testing.T) {
	f := &fakeInterceptor{}
	l := &lazyRemote{inner: f}
	var wrote int
	w := interceptor.RTCPWriterFunc(func([]rtcp.Packet, interceptor.Attributes) (int, error) {
		wrote++
		return 0, nil
	})
	if got := l.BindRTCPWriter(w); got == nil {
		t.Fatal("BindRTCPWriter returned nil")
	}
	l.BindLocalStream(&interceptor.StreamInfo{SSRC: 1}, nil)
	if len(f.writers) != 0 {
		t.Fatal("the writer was handed over before any received stream")
	}
	l.BindRemoteStream(&interceptor.StreamInfo{SSRC: 2}, nil)
	l.BindRemoteStream(&interceptor.StreamInfo{SSRC: 3}, nil)
	if len(f.writers) != 1 || f.remotes != 2 {
		t.Fatalf("after two received streams: %d writers, %d streams bound; want 1, 2", len(f.writers), f.remotes)
	}
	if _, err := f.writers[0].Write(nil, nil); err != nil || wrote != 1 {
		t.Errorf("the handed-over writer is not the connection's (wrote %d, err %v)", wrote, err)
	}
	if err := l.Close(); err != nil || !f.closed {
		t.Errorf("Close: %v, closed %v", err, f.closed)
	}
}

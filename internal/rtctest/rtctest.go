// Package rtctest holds what Parley's WebRTC tests share: Pion settings
// that keep a test's media on loopback (tests may send packets nowhere
// else), and counters of received packets by key.
package rtctest

import (
	"errors"
	"io"
	"net"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// LoopbackSettingEngine gathers candidates only on lo and loopback
// addresses, of the given network types (default UDP4), never resolves or
// announces mDNS names, and refuses remote candidates that are not
// loopback (peer-reflexive ones included).
func LoopbackSettingEngine(types ...webrtc.NetworkType) webrtc.SettingEngine {
	if len(types) == 0 {
		types = []webrtc.NetworkType{webrtc.NetworkTypeUDP4}
	}
	se := webrtc.SettingEngine{}
	se.SetInterfaceFilter(func(n string) bool { return n == "lo" })
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetNetworkTypes(types)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetIncludeLoopbackCandidate(true)
	se.SetRemoteIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	return se
}

// Counters counts packets by key (a track id, a publisher). The zero
// value is ready to use.
type Counters struct {
	mu sync.Mutex
	m  map[string]*atomic.Int64
}

// Counter returns key's counter, made on first use.
func (c *Counters) Counter(key string) *atomic.Int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]*atomic.Int64{}
	}
	n := c.m[key]
	if n == nil {
		n = &atomic.Int64{}
		c.m[key] = n
	}
	return n
}

// Get is key's count (0 when nothing was counted).
func (c *Counters) Get(key string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := c.m[key]; n != nil {
		return n.Load()
	}
	return 0
}

// Snapshot returns every count, keys sorted.
func (c *Counters) Snapshot() (keys []string, counts []int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		counts = append(counts, c.m[k].Load())
	}
	return keys, counts
}

// Answer applies a remote offer to pc and returns its answer (with the
// candidates gathered so far). It is the impolite side of perfect
// negotiation: while pc's own offer is outstanding it ignores the offer
// (ignored true, no error).
func Answer(pc *webrtc.PeerConnection, offer string) (answer string, ignored bool, err error) {
	if pc.SignalingState() != webrtc.SignalingStateStable {
		return "", true, nil
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", false, err
	}
	a, err := pc.CreateAnswer(nil)
	if err == nil {
		err = pc.SetLocalDescription(a)
	}
	if err != nil {
		return "", false, err
	}
	return pc.LocalDescription().SDP, false, nil
}

// ReadRTCP hands every RTCP packet that read returns (an RTPSender's or
// RTPReceiver's ReadRTCP) to handle, until the stream is closed or, after
// a read error, stop is closed.
func ReadRTCP(read func() ([]rtcp.Packet, interceptor.Attributes, error), stop <-chan struct{}, handle func(rtcp.Packet)) {
	for {
		pkts, _, err := read()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe) {
				return
			}
			select {
			case <-stop:
				return
			default:
				continue
			}
		}
		for _, p := range pkts {
			handle(p)
		}
	}
}

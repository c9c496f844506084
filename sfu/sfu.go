package sfu

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"sync"

	"github.com/pion/dtls/v3"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/logging"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/parley-meet/parley/internal/pionlog"
)

// ErrBadSDP is returned when an offer or answer is refused before Pion sees
// it (too big, too many m-lines or candidates, no fingerprint, SDES, wrong
// protocol) or when Pion cannot apply it.
var ErrBadSDP = errors.New("sfu: SDP refused")

// ErrClosed is returned by operations on a closed SFU, room or participant.
var ErrClosed = errors.New("sfu: closed")

// Config of the media plane.
type Config struct {
	// UDPPort is the one UDP port for all media (ICE UDP mux). 0 picks a free port (tests).
	UDPPort int
	// TCPPort is the ICE-TCP port; 0 picks a free one; -1 disables ICE-TCP.
	TCPPort int
	// ListenIP is the address the media sockets bind, e.g. "0.0.0.0" or "127.0.0.1".
	// Empty means "0.0.0.0".
	ListenIP string
	// PublicIPs are announced instead of the local addresses (1:1 NAT), may be empty.
	PublicIPs []string
	// Interfaces limits the interfaces gathered from (empty: all but those filtered by IPFilter).
	Interfaces []string
	// AllowedRemote lists prefixes of remote candidate addresses that are allowed although
	// they are loopback, private (RFC 1918/ULA), link-local, CGNAT or unspecified; everything
	// else of those kinds is refused (never contacted). Tests pass 127.0.0.0/8.
	AllowedRemote []netip.Prefix
	// Logger receives the SFU's logs; nil discards them.
	Logger *slog.Logger
}

// SFU is the media plane: the shared ICE sockets, the Pion API built for
// them, and the rooms.
type SFU struct {
	log    *slog.Logger
	api    *webrtc.API
	policy remotePolicy

	pool    *fanPool // fan-out workers for large rooms (fanout.go); nil on one core
	udpMux  ice.UDPMux
	tcpMux  ice.TCPMux
	udpAddr *net.UDPAddr

	// dispatchers counts the participants' running event goroutines
	// (events.go); Close waits for them.
	dispatchers sync.WaitGroup

	mu     sync.Mutex
	closed bool
	rooms  map[string]*Room
}

// New binds the media sockets and builds the Pion API. Close releases them.
func New(cfg Config) (*SFU, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	log = log.With("component", "sfu")
	listen := cfg.ListenIP
	if listen == "" {
		listen = "0.0.0.0"
	}
	ip, err := netip.ParseAddr(listen)
	if err != nil {
		return nil, fmt.Errorf("sfu: listen IP %q: %w", cfg.ListenIP, err)
	}
	ip = ip.Unmap()
	if cfg.UDPPort < 0 || cfg.UDPPort > 65535 || cfg.TCPPort < -1 || cfg.TCPPort > 65535 {
		return nil, fmt.Errorf("sfu: invalid ports udp=%d tcp=%d", cfg.UDPPort, cfg.TCPPort)
	}
	for _, p := range cfg.PublicIPs {
		if _, err := netip.ParseAddr(p); err != nil {
			return nil, fmt.Errorf("sfu: public IP %q: %w", p, err)
		}
	}

	s := &SFU{
		log:    log,
		policy: remotePolicy{allowed: append([]netip.Prefix(nil), cfg.AllowedRemote...)},
		rooms:  map[string]*Room{},
	}
	// Pion's warnings and info often quote candidates or react to what
	// remote peers send: debug. Its errors: warn.
	pionLogs := pionlog.New(log, pionlog.Levels{Info: slog.LevelDebug, Warn: slog.LevelDebug, Error: slog.LevelWarn})

	// Which addresses we gather from: with a specific listen IP, that IP
	// only (the TCP mux is bound to it too); otherwise every address of the
	// allowed interfaces.
	ifaceOK := func(name string) bool {
		if len(cfg.Interfaces) == 0 {
			return true
		}
		for _, n := range cfg.Interfaces {
			if n == name {
				return true
			}
		}
		return false
	}
	ipOK := func(a net.IP) bool {
		addr, ok := netip.AddrFromSlice(a)
		if !ok {
			return false
		}
		addr = addr.Unmap()
		if !ip.IsUnspecified() {
			return addr == ip
		}
		if ip.Is4() && !addr.Is4() {
			return false // "0.0.0.0": IPv4 only
		}
		return !addr.IsLinkLocalUnicast()
	}
	// "0.0.0.0" and IPv4 addresses: IPv4 only; "::" both families; an IPv6
	// address: IPv6 only.
	wantV6 := ip.Is6()
	wantV4 := ip.Is4() || ip.IsUnspecified()
	var udpNets []ice.NetworkType
	var netTypes []webrtc.NetworkType
	if wantV4 {
		udpNets = append(udpNets, ice.NetworkTypeUDP4)
		netTypes = append(netTypes, webrtc.NetworkTypeUDP4)
	}
	if wantV6 {
		udpNets = append(udpNets, ice.NetworkTypeUDP6)
		netTypes = append(netTypes, webrtc.NetworkTypeUDP6)
	}

	// One UDP port for all media.
	if ip.IsUnspecified() {
		opts := []ice.UDPMuxFromPortOption{
			ice.UDPMuxFromPortWithInterfaceFilter(ifaceOK),
			ice.UDPMuxFromPortWithIPFilter(ipOK),
			ice.UDPMuxFromPortWithNetworks(udpNets...),
			ice.UDPMuxFromPortWithLogger(pionLogs.NewLogger("udpmux")),
		}
		mux, err := ice.NewMultiUDPMuxFromPort(cfg.UDPPort, opts...)
		if err != nil {
			return nil, fmt.Errorf("sfu: UDP port %d: %w", cfg.UDPPort, err)
		}
		s.udpMux = mux
		for _, a := range mux.GetListenAddresses() {
			if ua, ok := a.(*net.UDPAddr); ok {
				s.udpAddr = ua
				break
			}
		}
	} else {
		conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(cfg.UDPPort))))
		if err != nil {
			return nil, fmt.Errorf("sfu: UDP port %d: %w", cfg.UDPPort, err)
		}
		s.udpAddr = conn.LocalAddr().(*net.UDPAddr)
		s.udpMux = webrtc.NewICEUDPMux(pionLogs.NewLogger("udpmux"), conn)
	}

	// ICE-TCP on one port.
	if cfg.TCPPort >= 0 {
		ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(cfg.TCPPort))))
		if err != nil {
			_ = s.udpMux.Close()
			return nil, fmt.Errorf("sfu: TCP port %d: %w", cfg.TCPPort, err)
		}
		s.tcpMux = webrtc.NewICETCPMux(pionLogs.NewLogger("tcpmux"), ln, 32)
		if wantV4 {
			netTypes = append(netTypes, webrtc.NetworkTypeTCP4)
		}
		if wantV6 {
			netTypes = append(netTypes, webrtc.NetworkTypeTCP6)
		}
	}

	api, err := s.buildAPI(cfg, ip, ifaceOK, ipOK, netTypes, pionLogs)
	if err != nil {
		s.closeSockets()
		return nil, err
	}
	s.api = api
	s.pool = newFanPool(runtime.GOMAXPROCS(0) - 1)
	log.Info("media plane listening", "udp", s.udpAddr.String(), "tcp", cfg.TCPPort >= 0, "public_ips", len(cfg.PublicIPs))
	return s, nil
}

// buildAPI registers codecs, header extensions and interceptors explicitly
// and applies the network policy to a SettingEngine.
func (s *SFU) buildAPI(cfg Config, ip netip.Addr, ifaceOK func(string) bool, ipOK func(net.IP) bool,
	netTypes []webrtc.NetworkType, pionLogs logging.LoggerFactory,
) (*webrtc.API, error) {
	m := &webrtc.MediaEngine{}
	if err := registerCodecs(m); err != nil {
		return nil, fmt.Errorf("sfu: codecs: %w", err)
	}

	// Interceptors, built explicitly, only those that earn their cost
	// (reports.go). Publishing side: receiver reports, TWCC feedback and
	// NACKs toward the publisher, each started only when its connection
	// receives a stream (lazyRemote). Subscribing side: none in the write
	// path. Sender reports come from the forwarding path's own counters;
	// there is no NACK responder: forwarded tracks are repaired from the one
	// packet cache per incoming track (downtrack.go); no TWCC
	// header-extension or GCC interceptor: transport-wide numbering and the
	// estimate toward subscribers are done in the forwarding path (twcc.go),
	// at a fraction of their cost. Every interceptor logs through pionLogs
	// (slog), never Pion's default logger on stderr.
	ir := &interceptor.Registry{}
	gen, err := nack.NewGeneratorInterceptor(nack.WithGeneratorLoggerFactory(pionLogs))
	if err != nil {
		return nil, err
	}
	rr, err := report.NewReceiverInterceptor(report.WithReceiverLoggerFactory(pionLogs))
	if err != nil {
		return nil, err
	}
	fb, err := twcc.NewSenderInterceptor(twcc.WithLoggerFactory(pionLogs))
	if err != nil {
		return nil, err
	}
	ir.Add(lazyRemoteFactory{gen})
	ir.Add(lazyRemoteFactory{rr})
	ir.Add(lazyRemoteFactory{fb})
	// The transport-cc header extension and feedback, for audio and video:
	// publishers number their packets for fb, subscribers are numbered by
	// twcc.go.
	for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		m.RegisterFeedback(webrtc.RTCPFeedback{Type: webrtc.TypeRTCPFBTransportCC}, kind)
		if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: sdp.TransportCCURI}, kind); err != nil {
			return nil, err
		}
	}

	se := webrtc.SettingEngine{LoggerFactory: pionLogs}
	se.SetICEUDPMux(s.udpMux)
	if s.tcpMux != nil {
		se.SetICETCPMux(s.tcpMux)
	}
	se.DisableActiveTCP(true) // the server only accepts ICE-TCP, never dials
	se.SetNetworkTypes(netTypes)
	se.SetInterfaceFilter(ifaceOK)
	se.SetIPFilter(ipOK)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetIncludeLoopbackCandidate(ip.IsLoopback())
	// The remote-address policy: Pion applies it to signaled and to
	// peer-reflexive candidates, so nothing outside it is ever contacted.
	se.SetRemoteIPFilter(func(a net.IP) bool {
		addr, ok := netip.AddrFromSlice(a)
		return ok && s.policy.allow(addr)
	})
	if len(cfg.PublicIPs) > 0 {
		if err := se.SetICEAddressRewriteRules(webrtc.ICEAddressRewriteRule{
			External:        append([]string(nil), cfg.PublicIPs...),
			AsCandidateType: webrtc.ICECandidateTypeHost,
			Mode:            webrtc.ICEAddressRewriteReplace,
		}); err != nil {
			return nil, fmt.Errorf("sfu: public IPs: %w", err)
		}
	}
	// DTLS-SRTP only (SDES is refused in sdpcheck.go); AEAD GCM first.
	se.SetSRTPProtectionProfiles(
		dtls.SRTP_AEAD_AES_128_GCM,
		dtls.SRTP_AEAD_AES_256_GCM,
		dtls.SRTP_AES128_CM_HMAC_SHA1_80,
	)

	return webrtc.NewAPI(
		webrtc.WithMediaEngine(m),
		webrtc.WithInterceptorRegistry(ir),
		webrtc.WithSettingEngine(se),
	), nil
}

// registerCodecs registers what Parley forwards: Opus, VP8, VP9 and H.264,
// the video codecs with RTX, and the header extensions for simulcast.
func registerCodecs(m *webrtc.MediaEngine) error {
	videoFB := []webrtc.RTCPFeedback{
		{Type: "nack"}, {Type: "nack", Parameter: "pli"}, {Type: "ccm", Parameter: "fir"},
	}
	type codec struct {
		mime, fmtp string
		pt         webrtc.PayloadType
	}
	video := []codec{
		{webrtc.MimeTypeVP8, "", 96},
		{webrtc.MimeTypeVP9, "profile-id=0", 98},
		{webrtc.MimeTypeH264, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f", 102},
		{webrtc.MimeTypeH264, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f", 104},
	}
	for _, c := range video {
		if err := m.RegisterCodec(webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: c.mime, ClockRate: 90000, SDPFmtpLine: c.fmtp, RTCPFeedback: videoFB},
			PayloadType:        c.pt,
		}, webrtc.RTPCodecTypeVideo); err != nil {
			return err
		}
		if err := m.RegisterCodec(webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeRTX, ClockRate: 90000, SDPFmtpLine: "apt=" + strconv.Itoa(int(c.pt))},
			PayloadType:        c.pt + 1,
		}, webrtc.RTPCodecTypeVideo); err != nil {
			return err
		}
	}
	if err := m.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"},
		PayloadType:        111,
	}, webrtc.RTPCodecTypeAudio); err != nil {
		return err
	}
	// mid, rid and repaired-rid: needed to demultiplex simulcast layers.
	return webrtc.ConfigureSimulcastExtensionHeaders(m)
}

// UDPAddr is the bound media port (tests).
func (s *SFU) UDPAddr() *net.UDPAddr {
	a := *s.udpAddr
	return &a
}

// NewRoom returns the open room with this id, creating it if needed. A room
// is a forwarding domain: participants in it receive each other's tracks.
// After Close, it returns a closed room (Join fails with ErrClosed).
// Rooms lists the open rooms (metrics, the console).
func (s *SFU) Rooms() []*Room {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Room, 0, len(s.rooms))
	for _, r := range s.rooms {
		out = append(out, r)
	}
	return out
}

func (s *SFU) NewRoom(id string) *Room {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return &Room{sfu: s, id: id, closed: true, log: s.log}
	}
	if r, ok := s.rooms[id]; ok {
		return r
	}
	r := &Room{sfu: s, id: id, log: s.log.With("room", id), participants: map[string]*Participant{}}
	s.rooms[id] = r
	return r
}

func (s *SFU) forgetRoom(r *Room) {
	s.mu.Lock()
	if s.rooms[r.id] == r {
		delete(s.rooms, r.id)
	}
	s.mu.Unlock()
}

// Close closes every room and the sockets, and waits until every goroutine
// the SFU started has ended. It must not be called from an Events callback.
func (s *SFU) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	rooms := make([]*Room, 0, len(s.rooms))
	for _, r := range s.rooms {
		rooms = append(rooms, r)
	}
	s.mu.Unlock()
	for _, r := range rooms {
		r.Close()
	}
	s.pool.stop()
	err := s.closeSockets()
	s.dispatchers.Wait()
	return err
}

func (s *SFU) closeSockets() error {
	var errs []error
	if s.tcpMux != nil {
		errs = append(errs, s.tcpMux.Close())
	}
	if s.udpMux != nil {
		errs = append(errs, s.udpMux.Close())
	}
	return errors.Join(errs...)
}

package turn

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/stun/v4"
	pionturn "github.com/pion/turn/v5"

	"github.com/parley-meet/parley/internal/pionlog"
)

// Defaults, as DefaultConfig sets them.
const (
	DefaultUDPPort                      = 3478
	DefaultTCPPort                      = 3478
	DefaultTLSPort                      = 5349
	DefaultRelayPortMin                 = 49152
	DefaultRelayPortMax                 = 65535
	DefaultRealm                        = "parley"
	DefaultMaxAllocationsPerParticipant = 5
	DefaultMaxAllocations               = 1000
	DefaultMaxConnections               = 2000
	DefaultMaxLifetime                  = 24 * time.Hour
)

// defaultGrant is the lifetime given to an allocation whose request names
// none (RFC 8656's 10 minutes), unless MaxLifetime is shorter.
const defaultGrant = 10 * time.Minute

// closeWait bounds how long Close waits for Pion's goroutines.
const closeWait = 5 * time.Second

// Config configures Start. Port fields: a port number, 0 for an ephemeral
// port (tests), or -1 for that listener off. The other zero values take the
// defaults above; DefaultConfig returns the production settings.
type Config struct {
	// ListenIP is the address the TURN listeners bind. The zero value is
	// 0.0.0.0 (all IPv4 interfaces); :: listens on IPv6 and IPv4.
	ListenIP netip.Addr
	UDPPort  int
	TCPPort  int
	TLSPort  int
	// TLSConfig enables the TLS listener (TURN over TLS on TLSPort); nil
	// turns it off. Use the HTTPS certificate. It is cloned, without
	// NextProtos.
	TLSConfig *tls.Config

	// RelayIP is the address relay sockets bind; the zero value is
	// ListenIP. AnnouncedRelayIP is the address put in XOR-RELAYED-ADDRESS
	// (the public address behind a 1:1 NAT); the zero value is RelayIP. It
	// must be a specific address, and its family is the only family of
	// allocation served (others get 508 Insufficient Capacity).
	RelayIP          netip.Addr
	AnnouncedRelayIP netip.Addr
	// RelayPortMin and RelayPortMax bound the relay ports, inclusive; both
	// 0 means ephemeral ports chosen by the system (tests).
	RelayPortMin int
	RelayPortMax int

	// Realm is the STUN realm; default "parley".
	Realm string
	// Secret is the shared secret credentials are minted with (Mint); at
	// least 16 bytes. See LoadOrCreateSecret.
	Secret []byte
	// Policy decides which peers are relayed to; nil means NewPeerPolicy(nil).
	Policy *PeerPolicy

	// MaxAllocationsPerParticipant: an Allocate beyond it gets 486
	// (Allocation Quota Reached). Default 5.
	MaxAllocationsPerParticipant int
	// MaxAllocations bounds the allocations of the whole server: an
	// Allocate beyond it gets 508 (Insufficient Capacity). Default 1000.
	MaxAllocations int
	// MaxConnections bounds the open TURN TCP and TLS connections together;
	// more are closed as soon as accepted. Default 2000.
	MaxConnections int
	// MaxLifetime caps an allocation's total age, however often it is
	// refreshed; at MaxLifetime its relay socket is closed and the
	// allocation deleted. Default 24 h. Each single grant (Allocate or
	// Refresh LIFETIME) is capped by Pion below one hour; requests without
	// LIFETIME get 10 minutes, or MaxLifetime if that is shorter.
	MaxLifetime time.Duration

	// Now is the clock credentials are checked against; default time.Now.
	Now func() time.Time
	// Logger receives the server's and Pion's logs; default discards.
	// Credentials and the secret are never logged.
	Logger *slog.Logger
	// OnEvent, if set, receives security events (see EventKind). It is
	// called synchronously from the server's packet loops, so it must not
	// block nor call Close; it is not called after Close returns.
	OnEvent func(Event)

	// idleTimeout replaces unallocatedIdleTimeout in tests.
	idleTimeout time.Duration
}

// DefaultConfig returns the production settings; set Secret (and usually
// TLSConfig and AnnouncedRelayIP) before Start.
func DefaultConfig() Config {
	return Config{
		ListenIP:                     netip.IPv4Unspecified(),
		UDPPort:                      DefaultUDPPort,
		TCPPort:                      DefaultTCPPort,
		TLSPort:                      DefaultTLSPort,
		RelayPortMin:                 DefaultRelayPortMin,
		RelayPortMax:                 DefaultRelayPortMax,
		Realm:                        DefaultRealm,
		MaxAllocationsPerParticipant: DefaultMaxAllocationsPerParticipant,
		MaxAllocations:               DefaultMaxAllocations,
		MaxConnections:               DefaultMaxConnections,
		MaxLifetime:                  DefaultMaxLifetime,
	}
}

// EventKind names a security event.
type EventKind string

const (
	// EventAuthFailed: a request's credential was refused (401). Reason is
	// one of the Auth* constants.
	EventAuthFailed EventKind = "auth-failed"
	// EventPermissionRefused: CreatePermission or ChannelBind named a peer
	// the policy refuses. Peer is the address as the client sent it, Reason
	// the policy's reason.
	EventPermissionRefused EventKind = "permission-refused"
	// EventQuotaRefused: an Allocate was refused for a quota. Reason is
	// QuotaParticipant (486) or QuotaServer (508).
	EventQuotaRefused EventKind = "quota-refused"
	// EventAllocationCreated and EventAllocationDeleted follow allocations;
	// Relay is the announced relayed address.
	EventAllocationCreated EventKind = "allocation-created"
	EventAllocationDeleted EventKind = "allocation-deleted"
)

// Reasons of EventAuthFailed and EventQuotaRefused.
const (
	AuthMalformed    = "malformed"     // username not "<expiry>:<participant>"
	AuthExpired      = "expired"       // credential past its expiry
	AuthRealm        = "realm"         // REALM is not the server's
	AuthBadIntegrity = "bad-integrity" // MESSAGE-INTEGRITY wrong: bad password or tampered request
	QuotaParticipant = "participant-quota"
	QuotaServer      = "server-capacity"
)

// Event is a security event for the audit log. Fields that do not apply
// are zero.
type Event struct {
	Kind        EventKind
	Time        time.Time      // Config.Now at the event
	Transport   string         // client transport: "udp", "tcp" or "tls"
	Client      netip.AddrPort // client address as the server sees it
	Participant string         // from the credential; empty if unknown
	Method      string         // STUN method, for EventAuthFailed
	Peer        netip.Addr     // EventPermissionRefused
	Relay       netip.AddrPort // allocation events
	Reason      string
}

// Addrs are the bound listener addresses; a listener that is off has the
// zero AddrPort.
type Addrs struct {
	UDP netip.AddrPort
	TCP netip.AddrPort
	TLS netip.AddrPort
}

// Stats are counters since Start.
type Stats struct {
	AllocationsActive  int
	AllocationsTotal   uint64
	AuthFailures       uint64
	PermissionRefusals uint64
	QuotaRefusals      uint64 // participant quota and server capacity
	ConnectionsRefused uint64 // TCP/TLS connections over MaxConnections
	PeerDrops          uint64 // relay datagrams to/from refused peers dropped (defence in depth)
	RelayedBytesIn     uint64 // payload bytes received from peers on relay sockets
	RelayedBytesOut    uint64 // payload bytes sent to peers from relay sockets
}

// Server is a running TURN server. Start it with Start, stop it with Close.
type Server struct {
	cfg   Config
	log   *slog.Logger
	pion  *pionturn.Server
	addrs Addrs

	udp       *listenerPacketConn
	listeners []*connListener
	wg        sync.WaitGroup // the server's own goroutines
	inflight  atomic.Int64   // blocking calls in progress on wrapped sockets

	mu             sync.Mutex
	closing        bool
	perParticipant map[string]int
	allocations    int
	relays         map[*relayConn]struct{}
	conns          map[*trackedConn]struct{}
	connByRemote   map[string]*trackedConn
	owners         map[string]string // client address key -> participant

	eventMu   sync.RWMutex
	eventsOff bool

	closeOnce sync.Once
	closeErr  error

	stats struct {
		allocTotal, authFail, permRefused, quotaRefused atomic.Uint64
		connRefused, peerDrops, bytesIn, bytesOut       atomic.Uint64
	}
}

// Start validates cfg, binds the listeners and starts serving.
func Start(cfg Config) (*Server, error) {
	if err := normalize(&cfg); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:            cfg,
		log:            cfg.Logger,
		perParticipant: make(map[string]int),
		relays:         make(map[*relayConn]struct{}),
		conns:          make(map[*trackedConn]struct{}),
		connByRemote:   make(map[string]*trackedConn),
		owners:         make(map[string]string),
	}
	if err := s.listen(); err != nil {
		s.abort()
		return nil, err
	}
	gen := &relayGenerator{s: s}
	pcfg := pionturn.ServerConfig{
		LoggerFactory:      pionlog.New(s.log, pionlog.Levels{Info: slog.LevelDebug, Warn: slog.LevelWarn, Error: slog.LevelError}),
		Realm:              cfg.Realm,
		AuthHandler:        s.authenticate,
		QuotaHandler:       s.quota,
		EventHandler:       s.eventHandler(),
		AllocationLifetime: min(defaultGrant, cfg.MaxLifetime),
	}
	if s.udp != nil {
		pcfg.PacketConnConfigs = append(pcfg.PacketConnConfigs, pionturn.PacketConnConfig{
			PacketConn:            s.udp,
			RelayAddressGenerator: gen,
			PermissionHandler:     s.permissionHandler("udp"),
		})
	}
	for _, l := range s.listeners {
		pcfg.ListenerConfigs = append(pcfg.ListenerConfigs, pionturn.ListenerConfig{
			Listener:              l,
			RelayAddressGenerator: gen,
			PermissionHandler:     s.permissionHandler(l.transport),
		})
	}
	for _, l := range s.listeners {
		s.wg.Add(1)
		go l.run()
	}
	p, err := pionturn.NewServer(pcfg)
	if err != nil {
		s.abort()
		return nil, fmt.Errorf("turn: %w", err)
	}
	s.pion = p
	s.log.Debug("turn: listening", "udp", s.addrs.UDP.String(), "tcp", s.addrs.TCP.String(),
		"tls", s.addrs.TLS.String(), "relay", cfg.AnnouncedRelayIP.String())
	return s, nil
}

func normalize(cfg *Config) error {
	if len(cfg.Secret) < 16 {
		return errors.New("turn: Secret must be at least 16 bytes")
	}
	cfg.Secret = append([]byte(nil), cfg.Secret...)
	if !cfg.ListenIP.IsValid() {
		cfg.ListenIP = netip.IPv4Unspecified()
	}
	cfg.ListenIP = cfg.ListenIP.Unmap()
	for _, p := range []struct {
		name string
		v    int
	}{{"UDPPort", cfg.UDPPort}, {"TCPPort", cfg.TCPPort}, {"TLSPort", cfg.TLSPort}} {
		if p.v < -1 || p.v > 65535 {
			return fmt.Errorf("turn: %s %d out of range", p.name, p.v)
		}
	}
	if cfg.TLSConfig == nil {
		cfg.TLSPort = -1
	} else {
		cfg.TLSConfig = cfg.TLSConfig.Clone()
		// The HTTPS config offers h2 and http/1.1; a TURN client offering
		// ALPN "stun.turn" (RFC 7443) would be refused for no overlap.
		// Without NextProtos the server ignores ALPN.
		cfg.TLSConfig.NextProtos = nil
	}
	if cfg.UDPPort < 0 && cfg.TCPPort < 0 && cfg.TLSPort < 0 {
		return errors.New("turn: every listener is off")
	}
	if !cfg.RelayIP.IsValid() {
		cfg.RelayIP = cfg.ListenIP
	}
	cfg.RelayIP = cfg.RelayIP.Unmap()
	if !cfg.AnnouncedRelayIP.IsValid() {
		cfg.AnnouncedRelayIP = cfg.RelayIP
	}
	cfg.AnnouncedRelayIP = cfg.AnnouncedRelayIP.Unmap()
	if cfg.AnnouncedRelayIP.IsUnspecified() {
		return errors.New("turn: AnnouncedRelayIP must be set when RelayIP is unspecified")
	}
	if !cfg.RelayIP.IsUnspecified() && cfg.RelayIP.Is4() != cfg.AnnouncedRelayIP.Is4() {
		return errors.New("turn: RelayIP and AnnouncedRelayIP are of different address families")
	}
	switch {
	case cfg.RelayPortMin == 0 && cfg.RelayPortMax == 0:
	case cfg.RelayPortMin < 1 || cfg.RelayPortMax > 65535 || cfg.RelayPortMin > cfg.RelayPortMax:
		return fmt.Errorf("turn: relay port range %d-%d invalid", cfg.RelayPortMin, cfg.RelayPortMax)
	}
	if cfg.Realm == "" {
		cfg.Realm = DefaultRealm
	}
	if cfg.Policy == nil {
		cfg.Policy = NewPeerPolicy(nil)
	}
	if cfg.MaxAllocationsPerParticipant < 0 || cfg.MaxAllocations < 0 || cfg.MaxConnections < 0 || cfg.MaxLifetime < 0 {
		return errors.New("turn: negative limit")
	}
	if cfg.MaxAllocationsPerParticipant == 0 {
		cfg.MaxAllocationsPerParticipant = DefaultMaxAllocationsPerParticipant
	}
	if cfg.MaxAllocations == 0 {
		cfg.MaxAllocations = DefaultMaxAllocations
	}
	if cfg.MaxConnections == 0 {
		cfg.MaxConnections = DefaultMaxConnections
	}
	if cfg.MaxLifetime == 0 {
		cfg.MaxLifetime = DefaultMaxLifetime
	}
	if cfg.idleTimeout == 0 {
		cfg.idleTimeout = unallocatedIdleTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// listen binds the enabled listeners.
func (s *Server) listen() error {
	ip := s.cfg.ListenIP
	network := func(base string) string {
		switch {
		case ip.Is4():
			return base + "4"
		case ip.IsUnspecified():
			return base // dual stack
		default:
			return base + "6"
		}
	}
	hostPort := func(port int) string { return net.JoinHostPort(ip.String(), strconv.Itoa(port)) }
	var lc net.ListenConfig
	ctx := context.Background()

	if s.cfg.UDPPort >= 0 {
		pc, err := lc.ListenPacket(ctx, network("udp"), hostPort(s.cfg.UDPPort))
		if err != nil {
			return fmt.Errorf("turn: UDP listener: %w", err)
		}
		s.udp = &listenerPacketConn{PacketConn: pc, s: s}
		s.addrs.UDP = addrPort(pc.LocalAddr())
	}
	for _, l := range []struct {
		port      int
		tls       *tls.Config
		transport string
		addr      *netip.AddrPort
	}{
		{s.cfg.TCPPort, nil, "tcp", &s.addrs.TCP},
		{s.cfg.TLSPort, s.cfg.TLSConfig, "tls", &s.addrs.TLS},
	} {
		if l.port < 0 {
			continue
		}
		ln, err := lc.Listen(ctx, network("tcp"), hostPort(l.port))
		if err != nil {
			return fmt.Errorf("turn: %s listener: %w", l.transport, err)
		}
		s.listeners = append(s.listeners, newConnListener(s, ln, l.tls, l.transport))
		*l.addr = addrPort(ln.Addr())
	}
	return nil
}

// abort undoes a failed Start: no Pion server runs yet.
func (s *Server) abort() {
	s.mu.Lock()
	s.closing = true
	conns := make([]*trackedConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	s.closeSockets()
	for _, c := range conns {
		_ = c.Close()
	}
	s.wg.Wait()
}

// closeSockets closes the listening sockets.
func (s *Server) closeSockets() {
	if s.udp != nil {
		_ = s.udp.Close()
	}
	for _, l := range s.listeners {
		_ = l.Close()
	}
}

// Addrs returns the addresses the listeners are bound to.
func (s *Server) Addrs() Addrs { return s.addrs }

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	active := s.allocations
	s.mu.Unlock()
	return Stats{
		AllocationsActive:  active,
		AllocationsTotal:   s.stats.allocTotal.Load(),
		AuthFailures:       s.stats.authFail.Load(),
		PermissionRefusals: s.stats.permRefused.Load(),
		QuotaRefusals:      s.stats.quotaRefused.Load(),
		ConnectionsRefused: s.stats.connRefused.Load(),
		PeerDrops:          s.stats.peerDrops.Load(),
		RelayedBytesIn:     s.stats.bytesIn.Load(),
		RelayedBytesOut:    s.stats.bytesOut.Load(),
	}
}

// Close stops the server: it closes the listeners, every client
// connection and every allocation, and returns once the server's
// goroutines and Pion's have left them. It is safe to call more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.close() })
	return s.closeErr
}

func (s *Server) close() error {
	s.mu.Lock()
	s.closing = true
	relays := make([]*relayConn, 0, len(s.relays))
	for r := range s.relays {
		relays = append(relays, r)
	}
	conns := make([]*trackedConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()

	// Pion closes the listening sockets; its loops then close every
	// allocation. Closing the connections and relay sockets here too wakes
	// every goroutine blocked on them without waiting for Pion's order.
	err := s.pion.Close()
	s.closeSockets()
	for _, c := range conns {
		_ = c.Close()
	}
	for _, r := range relays {
		_ = r.Close()
	}
	s.wg.Wait()

	// Pion's goroutines cannot be joined; wait until none is blocked on a
	// socket of ours and Pion has dropped every allocation (each
	// allocation's goroutine deletes it on the way out).
	deadline := time.Now().Add(closeWait)
	for s.inflight.Load() != 0 || s.pion.AllocationCount() != 0 {
		if time.Now().After(deadline) {
			err = errors.Join(err, errCloseUnsettled)
			break
		}
		time.Sleep(time.Millisecond)
	}

	s.eventMu.Lock()
	s.eventsOff = true
	s.eventMu.Unlock()
	s.log.Info("turn: closed")
	if err != nil {
		return fmt.Errorf("turn: close: %w", err)
	}
	return nil
}

// emit delivers an event to OnEvent, unless Close has finished.
func (s *Server) emit(e Event) {
	if s.cfg.OnEvent == nil {
		return
	}
	e.Time = s.cfg.Now()
	s.eventMu.RLock()
	defer s.eventMu.RUnlock()
	if !s.eventsOff {
		s.cfg.OnEvent(e)
	}
}

// authenticate is Pion's AuthHandler: it returns the participant id as
// Pion's user id and the long-term key Pion checks MESSAGE-INTEGRITY with.
func (s *Server) authenticate(ra *pionturn.RequestAttributes) (string, []byte, bool) {
	fail := func(reason, participant string) (string, []byte, bool) {
		s.stats.authFail.Add(1)
		transport := s.transportOf(ra.SrcAddr)
		if ra.TLS != nil {
			transport = "tls"
		}
		s.log.Debug("turn: credential refused", "client", addrString(ra.SrcAddr), "reason", reason)
		s.emit(Event{Kind: EventAuthFailed, Transport: transport, Client: addrPort(ra.SrcAddr),
			Participant: participant, Method: ra.Method.String(), Reason: reason})
		return "", nil, false
	}
	if ra.Realm != s.cfg.Realm {
		return fail(AuthRealm, "")
	}
	participant, key, err := LongTermKey(s.cfg.Secret, ra.Username, s.cfg.Realm, s.cfg.Now())
	if errors.Is(err, ErrExpiredCredential) && ra.Method != stun.MethodAllocate {
		// A credential must be valid when an allocation is made; the
		// allocation may then be refreshed and used (Refresh,
		// CreatePermission, ChannelBind) with it after it expires, as
		// browsers never re-authenticate an allocation with the fresh
		// credentials signaling sends them. Without an allocation those
		// requests fail anyway (437); MaxLifetime bounds its age.
		if exp, _, perr := ParseUsername(ra.Username); perr == nil {
			participant, key, err = LongTermKey(s.cfg.Secret, ra.Username, s.cfg.Realm, exp.Add(-time.Second))
		}
	}
	switch {
	case errors.Is(err, ErrExpiredCredential):
		_, p, _ := ParseUsername(ra.Username)
		return fail(AuthExpired, p)
	case err != nil:
		return fail(AuthMalformed, "")
	}
	return participant, key, true
}

// quota is Pion's QuotaHandler (false means 486 Allocation Quota Reached).
// The count itself is kept by the relay sockets (relayGenerator), which
// also refuse the rare Allocate that races past this check.
func (s *Server) quota(participant, _ string, src net.Addr) bool {
	s.mu.Lock()
	n := s.perParticipant[participant]
	s.mu.Unlock()
	if n < s.cfg.MaxAllocationsPerParticipant {
		return true
	}
	s.stats.quotaRefused.Add(1)
	s.log.Debug("turn: allocation quota reached", "participant", participant)
	s.emit(Event{Kind: EventQuotaRefused, Transport: s.transportOf(src), Client: addrPort(src),
		Participant: participant, Reason: QuotaParticipant})
	return false
}

// permissionHandler is Pion's PermissionHandler for one listener. Pion
// calls it for CreatePermission (refusal: 403 Forbidden), ChannelBind
// (refusal: Pion answers 401 with MESSAGE-INTEGRITY) and Connect.
func (s *Server) permissionHandler(transport string) pionturn.PermissionHandler {
	return func(client net.Addr, peerIP net.IP) bool {
		peer, ok := netip.AddrFromSlice(peerIP)
		reason := ReasonInvalid
		if ok {
			reason = s.cfg.Policy.Reason(peer)
		}
		if reason == reasonAllowed {
			return true
		}
		s.stats.permRefused.Add(1)
		participant := s.owner(client)
		s.log.Debug("turn: peer refused", "participant", participant, "peer", peer.String(), "reason", reason)
		s.emit(Event{Kind: EventPermissionRefused, Transport: transport, Client: addrPort(client),
			Participant: participant, Peer: peer, Reason: reason})
		return false
	}
}

func (s *Server) eventHandler() pionturn.EventHandler {
	return pionturn.EventHandler{
		OnAuth: func(src, _ net.Addr, _, username, _, method string, verdict bool) {
			if verdict {
				return
			}
			// Pion calls this with verdict false only when the key from
			// authenticate did not verify the MESSAGE-INTEGRITY.
			s.stats.authFail.Add(1)
			_, participant, _ := ParseUsername(username)
			s.log.Debug("turn: credential refused", "client", addrString(src), "reason", AuthBadIntegrity)
			s.emit(Event{Kind: EventAuthFailed, Transport: s.transportOf(src), Client: addrPort(src),
				Participant: participant, Method: method, Reason: AuthBadIntegrity})
		},
		OnAllocationCreated: func(src, _ net.Addr, _, participant, _ string, relay net.Addr, _ int) {
			s.stats.allocTotal.Add(1)
			key := clientKey(src)
			s.mu.Lock()
			s.owners[key] = participant
			tc := s.connByRemote[key]
			s.mu.Unlock()
			if tc != nil {
				tc.allocationAdded()
			}
			s.log.Debug("turn: allocation created", "participant", participant, "relay", addrString(relay))
			s.emit(Event{Kind: EventAllocationCreated, Transport: s.transportOf(src), Client: addrPort(src),
				Participant: participant, Relay: addrPort(relay)})
		},
		OnAllocationDeleted: func(src, _ net.Addr, _, participant, _ string) {
			key := clientKey(src)
			s.mu.Lock()
			delete(s.owners, key)
			tc := s.connByRemote[key]
			s.mu.Unlock()
			if tc != nil {
				tc.allocationRemoved()
			}
			s.log.Debug("turn: allocation deleted", "participant", participant)
			s.emit(Event{Kind: EventAllocationDeleted, Transport: s.transportOf(src), Client: addrPort(src),
				Participant: participant})
		},
	}
}

// trackConn registers an accepted connection, or closes it and returns nil
// when the server is closing or at MaxConnections.
func (s *Server) trackConn(c net.Conn, transport string) *trackedConn {
	tc := &trackedConn{Conn: c, s: s, transport: transport, remote: clientKey(c.RemoteAddr())}
	s.mu.Lock()
	if s.closing || len(s.conns) >= s.cfg.MaxConnections {
		closing := s.closing
		s.mu.Unlock()
		if !closing {
			s.stats.connRefused.Add(1)
		}
		_ = c.Close()
		return nil
	}
	s.conns[tc] = struct{}{}
	s.connByRemote[tc.remote] = tc
	s.mu.Unlock()
	_ = c.SetReadDeadline(time.Now().Add(s.cfg.idleTimeout))
	return tc
}

func (s *Server) untrackConn(tc *trackedConn) {
	s.mu.Lock()
	delete(s.conns, tc)
	if s.connByRemote[tc.remote] == tc {
		delete(s.connByRemote, tc.remote)
	}
	s.mu.Unlock()
}

// transportOf names the client transport of a client address.
func (s *Server) transportOf(a net.Addr) string {
	if _, ok := a.(*net.UDPAddr); ok {
		return "udp"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if tc := s.connByRemote[clientKey(a)]; tc != nil {
		return tc.transport
	}
	return "tcp"
}

// owner is the participant with an allocation from a client address.
func (s *Server) owner(a net.Addr) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.owners[clientKey(a)]
}

// releaseRelay drops a closed relay socket from the counts.
func (s *Server) releaseRelay(c *relayConn) {
	s.mu.Lock()
	_, ok := s.relays[c]
	delete(s.relays, c)
	s.mu.Unlock()
	if ok {
		s.uncount(c.participant)
	}
}

// uncount takes one allocation of participant off the counts.
func (s *Server) uncount(participant string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.allocations--
	if n := s.perParticipant[participant] - 1; n > 0 {
		s.perParticipant[participant] = n
	} else {
		delete(s.perParticipant, participant)
	}
}

// relayGenerator is Pion's RelayAddressGenerator: it makes the relay
// socket of every UDP allocation and refuses TCP allocations.
type relayGenerator struct{ s *Server }

func (g *relayGenerator) Validate() error { return nil }

// AllocatePacketConn reserves the allocation in the quotas, then binds a
// relay port. Pion answers an error with 508 Insufficient Capacity.
func (g *relayGenerator) AllocatePacketConn(conf pionturn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	s := g.s
	if conf.UserID == "" {
		// Pion probes for an even port (EVEN-PORT) with anonymous calls.
		// Browsers never ask for one; refusing keeps relay ports behind
		// the quota.
		return nil, nil, errEvenPort
	}
	announced := s.cfg.AnnouncedRelayIP
	if (conf.Network == "udp4") != announced.Is4() {
		return nil, nil, errFamily
	}

	s.mu.Lock()
	switch {
	case s.closing:
		s.mu.Unlock()
		return nil, nil, errClosing
	case s.allocations >= s.cfg.MaxAllocations:
		s.mu.Unlock()
		s.stats.quotaRefused.Add(1)
		s.log.Warn("turn: server allocation capacity reached", "max", s.cfg.MaxAllocations)
		s.emit(Event{Kind: EventQuotaRefused, Participant: conf.UserID, Reason: QuotaServer})
		return nil, nil, errCapacity
	case s.perParticipant[conf.UserID] >= s.cfg.MaxAllocationsPerParticipant:
		s.mu.Unlock()
		return nil, nil, errQuota
	}
	// Count it now, so that concurrent Allocates see it; releaseRelay
	// uncounts it when the socket closes.
	s.allocations++
	s.perParticipant[conf.UserID]++
	s.mu.Unlock()

	pc, err := g.bind(conf.Network, conf.RequestedPort)
	if err != nil {
		s.uncount(conf.UserID)
		s.log.Warn("turn: cannot bind a relay port", "err", err)
		return nil, nil, err
	}
	rc := &relayConn{PacketConn: pc, s: s, participant: conf.UserID,
		relay: netip.AddrPortFrom(announced, addrPort(pc.LocalAddr()).Port())}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		_ = pc.Close()
		s.uncount(conf.UserID)
		return nil, nil, errClosing
	}
	s.relays[rc] = struct{}{}
	rc.timer.Store(time.AfterFunc(s.cfg.MaxLifetime, func() {
		s.log.Debug("turn: allocation reached MaxLifetime", "participant", rc.participant)
		_ = rc.Close()
	}))
	s.mu.Unlock()
	return rc, net.UDPAddrFromAddrPort(rc.relay), nil
}

// bind opens a relay socket on RelayIP, on a random port of the range.
func (g *relayGenerator) bind(network string, requested int) (net.PacketConn, error) {
	cfg := &g.s.cfg
	host := ""
	if !cfg.RelayIP.IsUnspecified() {
		if cfg.RelayIP.Is4() != (network == "udp4") {
			return nil, errFamily
		}
		host = cfg.RelayIP.String()
	}
	listen := func(port int) (net.PacketConn, error) {
		var lc net.ListenConfig
		return lc.ListenPacket(context.Background(), network, net.JoinHostPort(host, strconv.Itoa(port)))
	}
	lo, hi := cfg.RelayPortMin, cfg.RelayPortMax
	if requested != 0 {
		if lo != 0 && (requested < lo || requested > hi) {
			return nil, errRequestedPort
		}
		return listen(requested)
	}
	if lo == 0 {
		return listen(0)
	}
	var lastErr error
	for range 64 {
		pc, err := listen(lo + rand.IntN(hi-lo+1)) //nolint:gosec // port choice, not a secret
		if err == nil {
			return pc, nil
		}
		lastErr = err
	}
	return nil, fmt.Errorf("%w: %w", errNoRelayPort, lastErr)
}

// AllocateListener refuses TCP allocations (RFC 6062): WebRTC never uses
// them, and a relay that opens TCP connections to any host is the most
// useful relay to an attacker. Pion answers 508 Insufficient Capacity.
func (g *relayGenerator) AllocateListener(pionturn.AllocateListenerConfig) (net.Listener, net.Addr, error) {
	return nil, nil, errTCPRelay
}

// AllocateConn is only reached from a TCP allocation's Connect; there are none.
func (g *relayGenerator) AllocateConn(pionturn.AllocateConnConfig) (net.Conn, error) {
	return nil, errTCPRelay
}

// addrPort converts a UDP or TCP address; anything else gives the zero value.
func addrPort(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.UDPAddr:
		ap := a.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	case *net.TCPAddr:
		ap := a.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// clientKey identifies a client transport address across UDP and TCP.
func clientKey(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.Network() + " " + addrPort(a).String()
}

package turn

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"os"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pionturn "github.com/pion/turn/v5"

	"github.com/parley-meet/parley/internal/pionlog"
)

// All traffic in these tests stays on 127.0.0.1: the server listens and
// relays there, and every peer socket is bound there.

var (
	loopback     = netip.MustParseAddr("127.0.0.1")
	allowLoop    = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	noPacketWait = 500 * time.Millisecond
)

func testLogger() *slog.Logger {
	if os.Getenv("TURN_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: pionlog.LevelTrace}))
	}
	return slog.New(slog.DiscardHandler)
}

// recorder collects the server's events.
type recorder struct {
	mu     sync.Mutex
	events []Event
}

func (r *recorder) on(e Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *recorder) find(pred func(Event) bool) (Event, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.events {
		if pred(e) {
			return e, true
		}
	}
	return Event{}, false
}

func (r *recorder) count(kind EventKind) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.events {
		if e.Kind == kind {
			n++
		}
	}
	return n
}

// wait returns the first event matching pred, waiting up to 5 s for it.
func (r *recorder) wait(t *testing.T, what string, pred func(Event) bool) Event {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if e, ok := r.find(pred); ok {
			return e
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s event", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// eventually polls cond for up to 5 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type testServer struct {
	*Server
	rec *recorder
}

func startServer(t *testing.T, mod func(*Config)) *testServer {
	t.Helper()
	rec := &recorder{}
	cfg := Config{
		ListenIP: loopback,
		UDPPort:  0,
		TCPPort:  0,
		TLSPort:  -1,
		Secret:   testSecret,
		Logger:   testLogger(),
		OnEvent:  rec.on,
	}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return &testServer{srv, rec}
}

func (s *testServer) mint(participant string) Credential {
	return Mint(testSecret, participant, time.Hour, time.Now())
}

// newClient returns a Pion TURN client over transport "udp", "tcp" or
// "tls" (clientTLS set).
func newClient(t *testing.T, s *testServer, transport string, cred Credential, clientTLS *tls.Config) *pionturn.Client {
	t.Helper()
	var (
		conn net.PacketConn
		addr string
	)
	switch transport {
	case "udp":
		addr = s.Addrs().UDP.String()
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		conn = pc
	case "tcp", "tls":
		var (
			c   net.Conn
			err error
		)
		if transport == "tcp" {
			addr = s.Addrs().TCP.String()
			c, err = net.Dial("tcp4", addr)
		} else {
			addr = s.Addrs().TLS.String()
			c, err = tls.Dial("tcp4", addr, clientTLS)
		}
		if err != nil {
			t.Fatal(err)
		}
		conn = pionturn.NewSTUNConn(c)
	default:
		t.Fatalf("transport %q", transport)
	}
	client, err := pionturn.NewClient(&pionturn.ClientConfig{
		TURNServerAddr: addr,
		Username:       cred.Username,
		Password:       cred.Password,
		Realm:          DefaultRealm,
		Conn:           conn,
		LoggerFactory:  pionlog.New(testLogger(), pionlog.Plain),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		client.Close()
		_ = conn.Close()
	})
	return client
}

// allocate allocates and registers the relay's Close (which runs before
// the client's, cleanups being last in, first out).
func allocate(t *testing.T, c *pionturn.Client) (net.PacketConn, error) {
	t.Helper()
	relay, err := c.Allocate()
	if err == nil {
		t.Cleanup(func() { _ = relay.Close() })
	}
	return relay, err
}

// turnCode returns the error code of a TURN error response returned by
// Pion's client (a *stun.TurnError, read by reflection to keep pion/stun
// an indirect dependency), or 0.
func turnCode(err error) int {
	for e := err; e != nil; e = errors.Unwrap(e) {
		v := reflect.ValueOf(e)
		if v.Kind() == reflect.Pointer {
			v = v.Elem()
		}
		if v.Kind() != reflect.Struct {
			continue
		}
		if f := v.FieldByName("ErrorCodeAttr"); f.IsValid() {
			code := f.FieldByName("Code")
			if code.CanInt() {
				return int(code.Int())
			}
			if code.CanUint() {
				return int(code.Uint())
			}
		}
	}
	return 0
}

func listenPeer(t *testing.T) net.PacketConn {
	t.Helper()
	peer, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = peer.Close() })
	return peer
}

// expectNothing asserts that no datagram reaches peer for noPacketWait.
func expectNothing(t *testing.T, peer net.PacketConn) {
	t.Helper()
	_ = peer.SetReadDeadline(time.Now().Add(noPacketWait))
	buf := make([]byte, 1500)
	if n, from, err := peer.ReadFrom(buf); err == nil {
		t.Fatalf("peer received %q from %v; the relay must not reach it", buf[:n], from)
	}
}

// readFrom reads one datagram with a 5 s deadline.
func readFrom(t *testing.T, c net.PacketConn) (string, net.Addr) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	n, from, err := c.ReadFrom(buf)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(buf[:n]), from
}

func testTLSConfigs(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "parley turn test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12},
		&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// (a), (f): a valid credential allocates and relays both ways, over UDP,
// TCP and TLS.
func TestRelayRoundTrip(t *testing.T) {
	serverTLS, clientTLS := testTLSConfigs(t)
	serverTLS.NextProtos = []string{"h2", "http/1.1"} // as the HTTPS config has
	clientTLS.NextProtos = []string{"stun.turn"}      // RFC 7443
	s := startServer(t, func(c *Config) {
		c.Policy = NewPeerPolicy(allowLoop)
		c.TLSPort = 0
		c.TLSConfig = serverTLS
	})
	addrs := s.Addrs()
	if !addrs.UDP.IsValid() || !addrs.TCP.IsValid() || !addrs.TLS.IsValid() || addrs.UDP.Addr() != loopback {
		t.Fatalf("Addrs = %+v", addrs)
	}

	for i, transport := range []string{"udp", "tcp", "tls"} {
		t.Run(transport, func(t *testing.T) {
			participant := "p-" + transport
			client := newClient(t, s, transport, s.mint(participant), clientTLS)
			relay, err := allocate(t, client)
			if err != nil {
				t.Fatalf("Allocate: %v", err)
			}
			relayAddr := relay.LocalAddr().(*net.UDPAddr).AddrPort()
			if relayAddr.Addr() != loopback || relayAddr.Port() == 0 {
				t.Fatalf("relayed address %v", relayAddr)
			}

			peer := listenPeer(t)
			if _, err := relay.WriteTo([]byte("ping-"+transport), peer.LocalAddr()); err != nil {
				t.Fatalf("relay write: %v", err)
			}
			got, from := readFrom(t, peer)
			if got != "ping-"+transport || from.String() != relayAddr.String() {
				t.Fatalf("peer got %q from %v, want %q from %v", got, from, "ping-"+transport, relayAddr)
			}
			if _, err := peer.WriteTo([]byte("pong-"+transport), from); err != nil {
				t.Fatal(err)
			}
			got, from = readFrom(t, relay)
			if got != "pong-"+transport || from.String() != peer.LocalAddr().String() {
				t.Fatalf("client got %q from %v, want %q from %v", got, from, "pong-"+transport, peer.LocalAddr())
			}

			e := s.rec.wait(t, "allocation-created", func(e Event) bool {
				return e.Kind == EventAllocationCreated && e.Participant == participant
			})
			if e.Transport != transport || e.Relay != relayAddr || e.Client.Addr() != loopback || e.Time.IsZero() {
				t.Errorf("allocation event %+v", e)
			}
			st := s.Stats()
			if st.AllocationsActive != 1 || st.AllocationsTotal != uint64(i+1) {
				t.Errorf("stats %+v", st)
			}
			if st.RelayedBytesIn < uint64(len("pong-"+transport)) || st.RelayedBytesOut < uint64(len("ping-"+transport)) {
				t.Errorf("relayed bytes not counted: %+v", st)
			}

			if err := relay.Close(); err != nil {
				t.Fatal(err)
			}
			s.rec.wait(t, "allocation-deleted", func(e Event) bool {
				return e.Kind == EventAllocationDeleted && e.Participant == participant
			})
			eventually(t, "no active allocation", func() bool { return s.Stats().AllocationsActive == 0 })
		})
	}
}

// (b): tampered, expired and malformed credentials get 401.
func TestAuthRejected(t *testing.T) {
	s := startServer(t, nil)
	good := s.mint("bob")
	tampered := good
	tampered.Password = Mint([]byte("a different secret!"), "bob", time.Hour, time.Now()).Password
	expired := Mint(testSecret, "carol", time.Hour, time.Now().Add(-2*time.Hour))
	malformed := Credential{Username: "dave", Password: password(testSecret, "dave")}

	for _, tc := range []struct {
		name        string
		cred        Credential
		reason      string
		participant string
	}{
		{"tampered", tampered, AuthBadIntegrity, "bob"},
		{"expired", expired, AuthExpired, "carol"},
		{"malformed", malformed, AuthMalformed, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := allocate(t, newClient(t, s, "udp", tc.cred, nil))
			if code := turnCode(err); code != 401 {
				t.Fatalf("Allocate: %v (code %d), want 401", err, code)
			}
			e := s.rec.wait(t, "auth-failed "+tc.reason, func(e Event) bool {
				return e.Kind == EventAuthFailed && e.Reason == tc.reason
			})
			if e.Participant != tc.participant || e.Transport != "udp" || e.Method != "Allocate" || e.Client.Addr() != loopback {
				t.Errorf("event %+v", e)
			}
		})
	}
	if st := s.Stats(); st.AuthFailures < 3 || st.AllocationsTotal != 0 {
		t.Errorf("stats %+v", st)
	}

	// The same server still serves a good credential.
	if _, err := allocate(t, newClient(t, s, "udp", good, nil)); err != nil {
		t.Fatalf("good credential: %v", err)
	}
}

// (c): the sixth allocation of a participant gets 486; closing one frees
// a slot; other participants are not affected.
func TestParticipantQuota(t *testing.T) {
	s := startServer(t, nil)
	cred := s.mint("eve")
	var relays []net.PacketConn
	for i := range 5 {
		relay, err := allocate(t, newClient(t, s, "udp", cred, nil))
		if err != nil {
			t.Fatalf("allocation %d: %v", i+1, err)
		}
		relays = append(relays, relay)
	}
	_, err := allocate(t, newClient(t, s, "udp", cred, nil))
	if code := turnCode(err); code != 486 {
		t.Fatalf("sixth allocation: %v (code %d), want 486", err, code)
	}
	e := s.rec.wait(t, "quota-refused", func(e Event) bool { return e.Kind == EventQuotaRefused })
	if e.Participant != "eve" || e.Reason != QuotaParticipant || e.Transport != "udp" {
		t.Errorf("event %+v", e)
	}
	// A fresh credential of the same participant counts the same.
	_, err = allocate(t, newClient(t, s, "udp", Mint(testSecret, "eve", 2*time.Hour, time.Now()), nil))
	if code := turnCode(err); code != 486 {
		t.Fatalf("new credential, same participant: %v (code %d), want 486", err, code)
	}
	if _, err := allocate(t, newClient(t, s, "udp", s.mint("frank"), nil)); err != nil {
		t.Fatalf("another participant: %v", err)
	}

	if err := relays[0].Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the closed allocation to be released", func() bool { return s.Stats().AllocationsActive == 5 })
	if _, err := allocate(t, newClient(t, s, "udp", cred, nil)); err != nil {
		t.Fatalf("allocation after closing one: %v", err)
	}
	if st := s.Stats(); st.QuotaRefusals != 2 || st.AllocationsActive != 6 {
		t.Errorf("stats %+v", st)
	}
}

// MaxAllocations bounds the server: 508 Insufficient Capacity.
func TestServerCapacity(t *testing.T) {
	s := startServer(t, func(c *Config) { c.MaxAllocations = 2 })
	for _, p := range []string{"a", "b"} {
		if _, err := allocate(t, newClient(t, s, "udp", s.mint(p), nil)); err != nil {
			t.Fatal(err)
		}
	}
	_, err := allocate(t, newClient(t, s, "udp", s.mint("c"), nil))
	if code := turnCode(err); code != 508 {
		t.Fatalf("third allocation: %v (code %d), want 508", err, code)
	}
	s.rec.wait(t, "quota-refused server", func(e Event) bool {
		return e.Kind == EventQuotaRefused && e.Reason == QuotaServer && e.Participant == "c"
	})
}

// (d), (e), (g): with the default policy, loopback peers are refused in
// every form and no datagram reaches them.
func TestDefaultPolicyRefusesLoopback(t *testing.T) {
	s := startServer(t, nil)
	peer := listenPeer(t)
	peerAddr := peer.LocalAddr().(*net.UDPAddr).AddrPort()

	// Pion's client: CreatePermission is refused with 403.
	client := newClient(t, s, "udp", s.mint("mallory"), nil)
	relay, err := allocate(t, client)
	if err != nil {
		t.Fatal(err)
	}
	_, err = relay.WriteTo([]byte("client"), peer.LocalAddr())
	if code := turnCode(err); code != 403 {
		t.Fatalf("write to 127.0.0.1: %v (code %d), want 403", err, code)
	}
	e := s.rec.wait(t, "permission-refused", func(e Event) bool { return e.Kind == EventPermissionRefused })
	if e.Peer != loopback || e.Reason != ReasonLoopback || e.Participant != "mallory" || e.Transport != "udp" {
		t.Errorf("event %+v", e)
	}

	// A hand-made client sends what Pion's client would not.
	raw := newRawClient(t, s.Addrs().UDP, s.mint("mallory"))
	raw.allocate()
	mapped := netip.AddrPortFrom(netip.AddrFrom16(loopback.As16()), peerAddr.Port()) // ::ffff:127.0.0.1

	for _, tc := range []struct {
		name    string
		mapped6 bool
	}{{"v4", false}, {"v4-mapped-v6", true}} {
		m := raw.createPermission(peerAddr, tc.mapped6)
		if m.typ != methodCreatePermission|classError || m.errorCode() != 403 {
			t.Errorf("CreatePermission %s: type %#x code %d, want 403", tc.name, m.typ, m.errorCode())
		}
		// Pion answers a refused ChannelBind with 401 carrying
		// MESSAGE-INTEGRITY (an authenticated refusal, not a challenge).
		m = raw.channelBind(0x4000, peerAddr, tc.mapped6)
		if m.typ != methodChannelBind|classError || m.errorCode() != 401 || !m.checkIntegrity(raw.key) {
			t.Errorf("ChannelBind %s: type %#x code %d integrity %v, want an authenticated error",
				tc.name, m.typ, m.errorCode(), m.checkIntegrity(raw.key))
		}
		if _, ok := m.get(attrNonce); ok {
			t.Errorf("ChannelBind %s: refusal carries a NONCE, as an auth challenge would", tc.name)
		}
	}
	s.rec.wait(t, "v4-mapped refusal", func(e Event) bool {
		return e.Kind == EventPermissionRefused && e.Peer == mapped.Addr() && e.Reason == ReasonLoopback
	})

	// Data sent anyway, by Send indication and on the refused channel.
	raw.send(peerAddr, []byte("send-v4"), false)
	raw.send(mapped, []byte("send-mapped"), true)
	raw.channelData(0x4000, []byte("channel"))
	expectNothing(t, peer)

	// Other refused classes, as the audit sees them.
	for _, tc := range []struct {
		peer   string
		reason string
	}{
		{"169.254.169.254", ReasonMetadata},
		{"10.0.0.1", ReasonPrivate},
		{"0.0.0.0", ReasonUnspecified},
	} {
		p := netip.AddrPortFrom(netip.MustParseAddr(tc.peer), 80)
		if m := raw.createPermission(p, false); m.errorCode() != 403 {
			t.Errorf("CreatePermission %s: code %d, want 403", tc.peer, m.errorCode())
		}
		s.rec.wait(t, "refusal of "+tc.peer, func(e Event) bool {
			return e.Kind == EventPermissionRefused && e.Peer == p.Addr() && e.Reason == tc.reason
		})
	}
	if st := s.Stats(); st.PermissionRefusals < 8 || st.RelayedBytesOut != 0 {
		t.Errorf("stats %+v", st)
	}
	if m := raw.refreshZero(); m.typ != methodRefresh|classSuccess {
		t.Errorf("Refresh 0: type %#x code %d", m.typ, m.errorCode())
	}
}

// The hand-made client relays when the policy allows: the refusals above
// are the policy's doing, not the client's.
func TestRawClientAllowed(t *testing.T) {
	s := startServer(t, func(c *Config) { c.Policy = NewPeerPolicy(allowLoop) })
	peer := listenPeer(t)
	peerAddr := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	raw := newRawClient(t, s.Addrs().UDP, s.mint("trent"))
	relayAddr := raw.allocate()

	if m := raw.createPermission(peerAddr, true); m.typ != methodCreatePermission|classSuccess {
		t.Fatalf("CreatePermission: type %#x code %d", m.typ, m.errorCode())
	}
	raw.send(peerAddr, []byte("send"), false)
	if got, from := readFrom(t, peer); got != "send" || from.String() != relayAddr.String() {
		t.Fatalf("peer got %q from %v", got, from)
	}
	if m := raw.channelBind(0x4000, peerAddr, false); m.typ != methodChannelBind|classSuccess {
		t.Fatalf("ChannelBind: type %#x code %d", m.typ, m.errorCode())
	}
	raw.channelData(0x4000, []byte("channel"))
	if got, _ := readFrom(t, peer); got != "channel" {
		t.Fatalf("peer got %q", got)
	}
	if m := raw.refreshZero(); m.typ != methodRefresh|classSuccess {
		t.Errorf("Refresh 0: type %#x code %d", m.typ, m.errorCode())
	}
	eventually(t, "deletion", func() bool { return s.Stats().AllocationsActive == 0 })
}

// TCP allocations (RFC 6062) are refused: Pion answers 508.
func TestTCPAllocationRefused(t *testing.T) {
	s := startServer(t, func(c *Config) { c.Policy = NewPeerPolicy(allowLoop) })
	client := newClient(t, s, "tcp", s.mint("tcp-relay"), nil)
	alloc, err := client.AllocateTCP()
	if err == nil {
		_ = alloc.Close()
		t.Fatal("a TCP allocation was granted")
	}
	if code := turnCode(err); code != 508 {
		t.Fatalf("AllocateTCP: %v (code %d), want 508", err, code)
	}
	if st := s.Stats(); st.AllocationsActive != 0 || st.AllocationsTotal != 0 {
		t.Errorf("stats %+v", st)
	}
}

// MaxLifetime ends an allocation before the lifetime Pion granted.
func TestMaxLifetime(t *testing.T) {
	const maxLifetime = time.Second
	s := startServer(t, func(c *Config) { c.MaxLifetime = maxLifetime })
	raw := newRawClient(t, s.Addrs().UDP, s.mint("long"))
	start := time.Now()
	raw.allocate(stunAttr{attrLifetime, []byte{0, 0, 0x0b, 0xb8}}) // asks for 3000 s, which Pion grants
	s.rec.wait(t, "allocation-deleted", func(e Event) bool {
		return e.Kind == EventAllocationDeleted && e.Participant == "long"
	})
	if d := time.Since(start); d < maxLifetime-50*time.Millisecond {
		t.Fatalf("allocation deleted after %v, before MaxLifetime", d)
	}
	if st := s.Stats(); st.AllocationsActive != 0 {
		t.Errorf("stats %+v", st)
	}
	eventually(t, "Pion to drop the allocation", func() bool { return s.pion.AllocationCount() == 0 })
}

// MaxConnections and the idle timeout of connections without an allocation.
func TestConnectionLimits(t *testing.T) {
	s := startServer(t, func(c *Config) {
		c.MaxConnections = 1
		c.idleTimeout = 300 * time.Millisecond
		c.Policy = NewPeerPolicy(allowLoop)
	})
	first, err := net.Dial("tcp4", s.Addrs().TCP.String())
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	eventually(t, "the first connection to be tracked", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.conns) == 1
	})
	second, err := net.Dial("tcp4", s.Addrs().TCP.String())
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	_ = second.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := second.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !isReset(err) {
		t.Fatalf("second connection: %v, want closed by the server", err)
	}
	if st := s.Stats(); st.ConnectionsRefused != 1 {
		t.Errorf("stats %+v", st)
	}
	// The first sends nothing and holds no allocation: it is closed.
	_ = first.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := first.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !isReset(err) {
		t.Fatalf("idle connection: %v, want closed by the server", err)
	}

	eventually(t, "the idle connection to be released", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.conns) == 0
	})

	// A connection with an allocation may be idle.
	// A connection with an allocation may be idle: after three idle
	// timeouts without a byte it still relays.
	client := newClient(t, s, "tcp", s.mint("idle"), nil)
	relay, err := allocate(t, client)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * 300 * time.Millisecond)
	peer := listenPeer(t)
	if _, err := relay.WriteTo([]byte("still here"), peer.LocalAddr()); err != nil {
		t.Fatalf("relay write after idling: %v", err)
	}
	if got, _ := readFrom(t, peer); got != "still here" {
		t.Fatalf("peer got %q", got)
	}
	if st := s.Stats(); st.AllocationsActive != 1 || st.ConnectionsRefused != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && !op.Timeout()
}

// (h): Close ends connections in every state and returns promptly;
// TestMain's leak check verifies no goroutine is left.
func TestCloseStopsEverything(t *testing.T) {
	serverTLS, _ := testTLSConfigs(t)
	rec := &recorder{}
	srv, err := Start(Config{
		ListenIP:  loopback,
		TLSPort:   0,
		TLSConfig: serverTLS,
		Secret:    testSecret,
		Logger:    testLogger(),
		OnEvent:   rec.on,
		Policy:    NewPeerPolicy(allowLoop),
	})
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{srv, rec}

	// An allocation over UDP, one over TCP, an idle TCP connection and a
	// TLS connection stuck before its handshake.
	for _, transport := range []string{"udp", "tcp"} {
		relay, err := allocate(t, newClient(t, s, transport, s.mint("close-"+transport), nil))
		if err != nil {
			t.Fatal(err)
		}
		peer := listenPeer(t)
		if _, err := relay.WriteTo([]byte("x"), peer.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		readFrom(t, peer)
	}
	idle, err := net.Dial("tcp4", srv.Addrs().TCP.String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	stuck, err := net.Dial("tcp4", srv.Addrs().TLS.String())
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()
	eventually(t, "four connections", func() bool {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		return len(srv.conns) == 3 // tcp client, idle, stuck
	})

	start := time.Now()
	if err := srv.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %v", d)
	}
	if err := srv.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	for _, c := range []net.Conn{idle, stuck} {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !isReset(err) {
			t.Errorf("connection after Close: %v, want closed", err)
		}
	}
	if n := rec.count(EventAllocationDeleted); n != 2 {
		t.Errorf("%d allocation-deleted events, want 2", n)
	}
	st := srv.Stats()
	if st.AllocationsActive != 0 {
		t.Errorf("stats after Close %+v", st)
	}
	srv.mu.Lock()
	left := len(srv.conns) + len(srv.relays)
	srv.mu.Unlock()
	if left != 0 {
		t.Errorf("%d connections or relays still tracked", left)
	}
	// Events stop with Close.
	before := rec.count(EventAuthFailed)
	srv.emit(Event{Kind: EventAuthFailed})
	if rec.count(EventAuthFailed) != before {
		t.Error("an event was delivered after Close")
	}
}

func TestStartValidation(t *testing.T) {
	base := func() Config {
		return Config{ListenIP: loopback, UDPPort: 0, TCPPort: -1, TLSPort: -1, Secret: testSecret}
	}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
	}{
		{"short secret", func(c *Config) { c.Secret = []byte("short") }},
		{"no listener", func(c *Config) { c.UDPPort = -1 }},
		{"bad port", func(c *Config) { c.UDPPort = 70000 }},
		{"unspecified relay, nothing announced", func(c *Config) { c.ListenIP = netip.IPv4Unspecified() }},
		{"mixed families", func(c *Config) { c.AnnouncedRelayIP = netip.MustParseAddr("2001:db8::1") }},
		{"relay range", func(c *Config) { c.RelayPortMin, c.RelayPortMax = 50000, 40000 }},
		{"half relay range", func(c *Config) { c.RelayPortMin = 50000 }},
		{"negative quota", func(c *Config) { c.MaxAllocations = -1 }},
	} {
		cfg := base()
		tc.mod(&cfg)
		if srv, err := Start(cfg); err == nil {
			_ = srv.Close()
			t.Errorf("%s: Start succeeded", tc.name)
		}
	}

	// A relay port range is honoured.
	s := startServer(t, func(c *Config) {
		c.RelayPortMin, c.RelayPortMax = 40000, 40100
		c.AnnouncedRelayIP = netip.MustParseAddr("127.0.0.9") // behind a "NAT": announced only
	})
	relay, err := allocate(t, newClient(t, s, "udp", s.mint("range"), nil))
	if err != nil {
		t.Fatal(err)
	}
	ap := relay.LocalAddr().(*net.UDPAddr).AddrPort()
	if ap.Addr() != netip.MustParseAddr("127.0.0.9") || ap.Port() < 40000 || ap.Port() > 40100 {
		t.Errorf("relayed address %v", ap)
	}

	d := DefaultConfig()
	if d.UDPPort != 3478 || d.TCPPort != 3478 || d.TLSPort != 5349 || d.RelayPortMin != 49152 ||
		d.RelayPortMax != 65535 || d.Realm != "parley" || d.MaxAllocationsPerParticipant != 5 {
		t.Errorf("DefaultConfig %+v", d)
	}
}

// An allocation made while its credential was valid outlives it: after
// the credential expired, CreatePermission still works, packets are
// relayed, and Refresh (the lifetime-0 one Close sends) frees the
// allocation; a new Allocate with the same credential gets 401.
func TestAllocationOutlivesCredential(t *testing.T) {
	var offset atomic.Int64
	s := startServer(t, func(c *Config) {
		c.Policy = NewPeerPolicy(allowLoop)
		c.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	})
	cred := Mint(testSecret, "gina", time.Minute, time.Now())
	c := newClient(t, s, "udp", cred, nil)
	relay, err := c.Allocate()
	if err != nil {
		t.Fatalf("Allocate: %v", err)
	}
	offset.Store(int64(2 * time.Minute)) // the credential has expired

	peer := listenPeer(t)
	if err := c.CreatePermission(peer.LocalAddr()); err != nil {
		t.Fatalf("CreatePermission after the credential expired: %v", err)
	}
	if _, err := relay.WriteTo([]byte("still here"), peer.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	if got, _ := readFrom(t, peer); got != "still here" {
		t.Fatalf("peer got %q", got)
	}
	_, err = allocate(t, newClient(t, s, "udp", cred, nil))
	if code := turnCode(err); code != 401 {
		t.Fatalf("a new Allocate with the expired credential: %v (code %d), want 401", err, code)
	}
	if err := relay.Close(); err != nil {
		t.Fatalf("Close (Refresh 0): %v", err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for s.Stats().AllocationsActive != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the allocation is still active after its Refresh 0: %+v", s.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

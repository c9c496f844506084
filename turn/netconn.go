package turn

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// The wrappers in this file sit between Pion and the sockets. They count
// every blocking call in progress (so Close can wait for Pion's goroutines
// to leave them), keep the per-participant allocation count tied to the
// life of the relay socket, and check the peer policy once more on every
// relayed datagram.

const (
	// tlsHandshakeTimeout bounds a TLS handshake on the TURN TLS port.
	tlsHandshakeTimeout = 10 * time.Second
	// unallocatedIdleTimeout closes a TCP or TLS connection that carries no
	// allocation and sends nothing for this long: connections cost a
	// goroutine each and must not be held open for free.
	unallocatedIdleTimeout = 30 * time.Second
)

var (
	errPeerRefused    = errors.New("turn: peer address refused by policy")
	errTCPRelay       = errors.New("turn: TCP allocations (RFC 6062) are not offered")
	errEvenPort       = errors.New("turn: EVEN-PORT and RESERVATION-TOKEN are not offered")
	errClosing        = errors.New("turn: server closing")
	errCapacity       = errors.New("turn: server allocation capacity reached")
	errQuota          = errors.New("turn: participant allocation quota reached")
	errFamily         = errors.New("turn: no relay address of the requested address family")
	errRequestedPort  = errors.New("turn: requested relay port outside the relay range")
	errNoRelayPort    = errors.New("turn: no free relay port")
	errCloseUnsettled = errors.New("turn: Pion goroutines still running after Close's wait")
)

// listenerPacketConn is the UDP listening socket handed to Pion.
type listenerPacketConn struct {
	net.PacketConn
	s *Server
}

func (c *listenerPacketConn) ReadFrom(p []byte) (int, net.Addr, error) {
	c.s.inflight.Add(1)
	defer c.s.inflight.Add(-1)
	return c.PacketConn.ReadFrom(p)
}

// relayConn is one UDP allocation's relay socket. Its life is the
// allocation's: Pion closes it when the allocation ends, and closing it
// (at MaxLifetime, or in Server.Close) makes Pion delete the allocation.
type relayConn struct {
	net.PacketConn
	s           *Server
	participant string
	relay       netip.AddrPort             // announced relayed address
	timer       atomic.Pointer[time.Timer] // MaxLifetime; its callback may run before the store
	once        sync.Once
}

func (c *relayConn) ReadFrom(p []byte) (int, net.Addr, error) {
	c.s.inflight.Add(1)
	defer c.s.inflight.Add(-1)
	for {
		n, addr, err := c.PacketConn.ReadFrom(p)
		if err != nil {
			return n, addr, err
		}
		// Pion only forwards datagrams from peers with a permission, and
		// permissions pass the policy; this drop is defence in depth.
		if ua, ok := addr.(*net.UDPAddr); ok && c.s.cfg.Policy.Allowed(ua.AddrPort().Addr()) {
			c.s.stats.bytesIn.Add(uint64(n))
			return n, addr, nil
		}
		c.s.stats.peerDrops.Add(1)
	}
}

func (c *relayConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok || !c.s.cfg.Policy.Allowed(ua.AddrPort().Addr()) {
		// Unreachable unless Pion relays without a permission: say so.
		c.s.stats.peerDrops.Add(1)
		c.s.log.Warn("turn: relay write to a refused peer dropped", "relay", c.relay.String())
		return 0, errPeerRefused
	}
	// Counted before the datagram leaves, so that whoever sees it arrive
	// sees it counted; a short write is uncounted after.
	c.s.stats.bytesOut.Add(uint64(len(p)))
	n, err := c.PacketConn.WriteTo(p, addr)
	if unsent := len(p) - max(n, 0); unsent > 0 {
		c.s.stats.bytesOut.Add(^uint64(unsent - 1))
	}
	return n, err
}

func (c *relayConn) Close() error {
	err := net.ErrClosed
	c.once.Do(func() {
		if t := c.timer.Load(); t != nil {
			t.Stop()
		}
		err = c.PacketConn.Close()
		c.s.releaseRelay(c)
	})
	return err
}

// connListener is a TCP or TLS listening socket handed to Pion. Its own
// goroutine accepts, enforces MaxConnections, completes TLS handshakes
// (with a timeout, closing the connection on failure, which Pion does not)
// and only then hands connections to Pion's Accept.
type connListener struct {
	s         *Server
	ln        net.Listener
	tls       *tls.Config // nil for plain TCP
	transport string
	ch        chan net.Conn
	done      chan struct{}
	once      sync.Once
}

func newConnListener(s *Server, ln net.Listener, tlsConfig *tls.Config, transport string) *connListener {
	return &connListener{s: s, ln: ln, tls: tlsConfig, transport: transport,
		ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *connListener) Accept() (net.Conn, error) {
	l.s.inflight.Add(1)
	defer l.s.inflight.Add(-1)
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	err := net.ErrClosed
	l.once.Do(func() {
		close(l.done)
		err = l.ln.Close()
	})
	return err
}

func (l *connListener) Addr() net.Addr { return l.ln.Addr() }

// run accepts until the listener closes. It is one of the server's own
// goroutines (s.wg).
func (l *connListener) run() {
	defer l.s.wg.Done()
	backoff := 5 * time.Millisecond
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE and friends: wait and retry rather than give up the port.
			l.s.log.Warn("turn: accept failed", "transport", l.transport, "err", err)
			select {
			case <-l.done:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		tc := l.s.trackConn(c, l.transport)
		if tc == nil {
			continue // over MaxConnections or closing; already closed
		}
		if l.tls == nil {
			l.deliver(tc)
			continue
		}
		l.s.wg.Add(1)
		go l.handshake(tc)
	}
}

// handshake completes TLS on one connection, then hands it to Pion.
func (l *connListener) handshake(tc *trackedConn) {
	defer l.s.wg.Done()
	conn := tls.Server(tc, l.tls)
	ctx, cancel := context.WithTimeout(context.Background(), tlsHandshakeTimeout)
	defer cancel()
	if err := conn.HandshakeContext(ctx); err != nil {
		l.s.log.Debug("turn: TLS handshake failed", "client", tc.RemoteAddr().String(), "err", err)
		_ = tc.Close()
		return
	}
	l.deliver(conn)
}

func (l *connListener) deliver(c net.Conn) {
	select {
	case l.ch <- c:
	case <-l.done:
		_ = c.Close()
	}
}

// trackedConn is an accepted TCP connection (under TLS, the raw one).
type trackedConn struct {
	net.Conn
	s         *Server
	transport string
	remote    string
	allocs    atomic.Int32 // allocations on this connection
	once      sync.Once
}

func (c *trackedConn) Read(p []byte) (int, error) {
	c.s.inflight.Add(1)
	defer c.s.inflight.Add(-1)
	if c.allocs.Load() == 0 {
		_ = c.SetReadDeadline(time.Now().Add(c.s.cfg.idleTimeout))
	}
	return c.Conn.Read(p)
}

func (c *trackedConn) Close() error {
	err := net.ErrClosed
	c.once.Do(func() {
		c.s.untrackConn(c)
		err = c.Conn.Close()
	})
	return err
}

// allocationAdded and allocationRemoved follow the allocations Pion makes
// on this connection: while it has one, it may be idle.
func (c *trackedConn) allocationAdded() {
	if c.allocs.Add(1) == 1 {
		_ = c.SetReadDeadline(time.Time{})
	}
}

func (c *trackedConn) allocationRemoved() {
	if c.allocs.Add(-1) == 0 {
		_ = c.SetReadDeadline(time.Now().Add(c.s.cfg.idleTimeout))
	}
}

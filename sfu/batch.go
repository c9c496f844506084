package sfu

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/stdnet"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// Batched sends.
//
// Forwarding one packet to N subscribers is N sendto calls, each a syscall
// with Go's scheduler hand-off around it. Instead, while a fan-out is in
// progress (sendBatcher.begin ... end), the media sockets queue what Pion
// writes to them and end sends the queue with sendmmsg, up to batchMax
// datagrams per syscall. Outside a fan-out (ICE, DTLS, RTCP from other
// goroutines) writes go straight out; during one, they join the queue and
// leave at its end, at most one fan-out later.
//
// The sockets are wrapped under Pion's ICE UDP mux (which writes through
// ice.AddrPortReaderWriter when the socket offers it), so SRTP, ICE and
// DTLS are all Pion's: only the last step, the syscall, changes.
const (
	batchMax = 64 // datagrams per sendmmsg
	// batchSlot is the largest datagram queued; a bigger one (none of
	// ours: media is ≤ 1,300 bytes) flushes the queue and goes alone.
	batchSlot = 1500
)

// sendBatcher opens and closes batches over every media socket.
type sendBatcher struct {
	open  atomic.Int32 // fan-outs in progress
	mu    sync.Mutex
	conns []*batchConn

	sent    atomic.Uint64 // datagrams sent by sendmmsg
	calls   atomic.Uint64 // sendmmsg calls
	dropped atomic.Uint64 // datagrams the kernel refused
}

// begin starts a fan-out: writes queue until end.
func (b *sendBatcher) begin() {
	if b != nil {
		b.open.Add(1)
	}
}

// end finishes a fan-out and sends what is queued on every socket.
func (b *sendBatcher) end() {
	if b == nil {
		return
	}
	b.open.Add(-1)
	b.mu.Lock()
	conns := b.conns
	b.mu.Unlock()
	for _, c := range conns {
		c.flush()
	}
}

// wrap makes conn a batching socket of b.
func (b *sendBatcher) wrap(conn *net.UDPConn) *batchConn {
	c := &batchConn{UDPConn: conn, b: b}
	if a, ok := conn.LocalAddr().(*net.UDPAddr); ok && a.IP.To4() == nil {
		c.batch, c.v6 = ipv6.NewPacketConn(conn), true
	} else {
		c.batch = ipv4.NewPacketConn(conn)
	}
	for i := range c.slots {
		s := &c.slots[i]
		c.msgs[i].Buffers = s.bufs[:]
		c.msgs[i].Addr = &s.addr
	}
	b.mu.Lock()
	b.conns = append(b.conns, c)
	b.mu.Unlock()
	return c
}

// batchNet is the transport.Net Pion's multi-address UDP mux listens
// with: its sockets are batching ones.
type batchNet struct {
	*stdnet.Net
	b *sendBatcher
}

func newBatchNet(b *sendBatcher) (*batchNet, error) {
	n, err := stdnet.NewNet()
	if err != nil {
		return nil, err
	}
	return &batchNet{Net: n, b: b}, nil
}

// ListenUDP opens a batching socket.
func (n *batchNet) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	conn, err := net.ListenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	return n.b.wrap(conn), nil
}

// batchWriter is ipv4.PacketConn or ipv6.PacketConn (sendmmsg on Linux).
type batchWriter interface {
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// batchConn is one media socket that queues writes during fan-outs.
type batchConn struct {
	*net.UDPConn
	b     *sendBatcher
	batch batchWriter
	v6    bool // an IPv6 socket

	mu    sync.Mutex
	n     int
	msgs  [batchMax]ipv4.Message
	slots [batchMax]queued
}

// queued is one datagram waiting in a batch.
type queued struct {
	data [batchSlot]byte
	bufs [1][]byte
	addr net.UDPAddr
	ip   [16]byte
}

// ReadFromAddrPort is ice.AddrPortReaderWriter's read: the socket's own.
func (c *batchConn) ReadFromAddrPort(p []byte) (int, netip.AddrPort, error) {
	return c.UDPConn.ReadFromUDPAddrPort(p)
}

// WriteToAddrPort sends p to addr, or queues it during a fan-out.
func (c *batchConn) WriteToAddrPort(p []byte, addr netip.AddrPort) (int, error) {
	if c.b.open.Load() == 0 {
		return c.UDPConn.WriteToUDPAddrPort(p, addr)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(p) > batchSlot {
		c.flushLocked() // keep the order
		return c.UDPConn.WriteToUDPAddrPort(p, addr)
	}
	s := &c.slots[c.n]
	k := copy(s.data[:], p)
	s.bufs[0] = s.data[:k]
	a := addr.Addr()
	if c.v6 && a.Is4() {
		c.flushLocked() // an IPv4 peer of a dual-stack socket: not batched
		return c.UDPConn.WriteToUDPAddrPort(p, addr)
	}
	if a.Is4() {
		v := a.As4()
		copy(s.ip[:], v[:])
		s.addr.IP = s.ip[:4]
	} else {
		v := a.As16()
		s.ip = v
		s.addr.IP = s.ip[:16]
	}
	s.addr.Port = int(addr.Port())
	c.n++
	if c.n == batchMax {
		c.flushLocked()
	}
	return len(p), nil
}

// WriteTo is net.PacketConn's write, through WriteToAddrPort for UDP
// addresses (so that nothing overtakes the queue).
func (c *batchConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if ua, ok := addr.(*net.UDPAddr); ok {
		return c.WriteToAddrPort(p, ua.AddrPort())
	}
	c.flush()
	return c.UDPConn.WriteTo(p, addr)
}

// flush sends what is queued.
func (c *batchConn) flush() {
	c.mu.Lock()
	c.flushLocked()
	c.mu.Unlock()
}

func (c *batchConn) flushLocked() {
	for sent := 0; sent < c.n; {
		k, err := c.batch.WriteBatch(c.msgs[sent:c.n], 0)
		c.b.calls.Add(1)
		if k > 0 {
			c.b.sent.Add(uint64(k))
			sent += k
		}
		if err != nil {
			// The datagram at the head was refused (as a sendto would
			// have been): drop it and go on with the rest.
			c.b.dropped.Add(1)
			sent++
		} else if k <= 0 {
			break // nothing sent and no error: give up on this batch
		}
	}
	for i := 0; i < c.n; i++ {
		c.slots[i].bufs[0] = nil
	}
	c.n = 0
}

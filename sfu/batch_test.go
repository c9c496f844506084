package sfu

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"
)

// batchPair is a batching socket and a plain receiver, on loopback.
func batchPair(t *testing.T) (*sendBatcher, *batchConn, *net.UDPConn, netip.AddrPort) {
	t.Helper()
	b := &sendBatcher{}
	sc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	_ = rc.SetReadBuffer(1 << 20)
	c := b.wrap(sc)
	t.Cleanup(func() { sc.Close(); rc.Close() })
	return b, c, rc, rc.LocalAddr().(*net.UDPAddr).AddrPort()
}

// readN reads n datagrams and checks they carry the numbers 0..n-1 in
// order, each of size bytes.
func readN(t *testing.T, rc *net.UDPConn, n, size int) {
	t.Helper()
	buf := make([]byte, 2048)
	_ = rc.SetReadDeadline(time.Now().Add(10 * time.Second))
	for i := 0; i < n; i++ {
		k, err := rc.Read(buf)
		if err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
		if k != size || binary.BigEndian.Uint32(buf) != uint32(i) {
			t.Fatalf("datagram %d: %d bytes numbered %d, want %d bytes numbered %d", i, k, binary.BigEndian.Uint32(buf), size, i)
		}
	}
}

// During a fan-out writes are queued and leave by sendmmsg, in order, at
// its end or when the queue is full; outside one they go straight out.
func TestBatchedSends(t *testing.T) {
	b, c, rc, to := batchPair(t)
	p := make([]byte, 1200)

	b.begin()
	for i := 0; i < 100; i++ {
		binary.BigEndian.PutUint32(p, uint32(i))
		if n, err := c.WriteToAddrPort(p, to); n != len(p) || err != nil {
			t.Fatalf("write %d: %d %v", i, n, err)
		}
	}
	// The first 64 filled a batch and left; 36 wait for the end.
	if got := b.sent.Load(); got != batchMax {
		t.Fatalf("%d datagrams sent before the fan-out ended, want %d (one full batch)", got, batchMax)
	}
	b.end()
	if got, calls := b.sent.Load(), b.calls.Load(); got != 100 || calls != 2 {
		t.Fatalf("%d datagrams in %d sendmmsg calls, want 100 in 2", got, calls)
	}
	readN(t, rc, 100, len(p))

	// Outside a fan-out: a direct send, no batch.
	binary.BigEndian.PutUint32(p, 0)
	if _, err := c.WriteTo(p, net.UDPAddrFromAddrPort(to)); err != nil {
		t.Fatal(err)
	}
	if b.calls.Load() != 2 {
		t.Error("a write outside a fan-out was batched")
	}
	readN(t, rc, 1, len(p))

	// A datagram too big for a slot flushes the queue and goes after it.
	b.begin()
	binary.BigEndian.PutUint32(p, 0)
	_, _ = c.WriteToAddrPort(p, to)
	big := make([]byte, batchSlot+100)
	binary.BigEndian.PutUint32(big, 1)
	_, _ = c.WriteToAddrPort(big, to)
	b.end()
	buf := make([]byte, 4096)
	_ = rc.SetReadDeadline(time.Now().Add(10 * time.Second))
	for i, want := range []int{len(p), len(big)} {
		k, err := rc.Read(buf)
		if err != nil || k != want || binary.BigEndian.Uint32(buf) != uint32(i) {
			t.Fatalf("datagram %d: %d bytes, %v; want %d bytes numbered %d", i, k, err, want, i)
		}
	}
}

// A refused datagram (here: to port 0) is dropped; the rest of its batch
// still leaves.
func TestBatchedSendsSkipRefused(t *testing.T) {
	b, c, rc, to := batchPair(t)
	p := make([]byte, 100)
	b.begin()
	for i := 0; i < 5; i++ {
		binary.BigEndian.PutUint32(p, uint32(i))
		if i == 2 {
			_, _ = c.WriteToAddrPort(p, netip.AddrPortFrom(to.Addr(), 0))
			continue
		}
		_, _ = c.WriteToAddrPort(p, to)
	}
	b.end()
	if d := b.dropped.Load(); d != 1 {
		t.Errorf("%d datagrams dropped, want 1", d)
	}
	buf := make([]byte, 2048)
	_ = rc.SetReadDeadline(time.Now().Add(10 * time.Second))
	for _, want := range []uint32{0, 1, 3, 4} {
		if k, err := rc.Read(buf); err != nil || k != len(p) || binary.BigEndian.Uint32(buf) != want {
			t.Fatalf("got %d bytes numbered %d (%v), want %d", k, binary.BigEndian.Uint32(buf), err, want)
		}
	}
}

// Queuing a datagram allocates nothing.
func TestBatchedWriteDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under -race")
	}
	b, c, _, to := batchPair(t)
	p := make([]byte, 1200)
	b.begin()
	defer b.end()
	allocs := testing.AllocsPerRun(batchMax-2, func() { _, _ = c.WriteToAddrPort(p, to) })
	if allocs != 0 {
		t.Errorf("%.1f allocations per queued datagram, want 0", allocs)
	}
}

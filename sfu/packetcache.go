package sfu

import "sync"

// maxPacketSize bounds an RTP packet we forward or cache (Pion's receive MTU
// is 1460).
const maxPacketSize = 1500

// Cache sizes, in packets (powers of two). One cache per incoming RTP stream,
// shared by all its subscribers: 256 video packets are about a second at
// 2.5 Mbit/s, longer than a NACK's round trip.
const (
	videoCacheSize = 256
	audioCacheSize = 32
)

// packetCache keeps the most recent packets of one incoming RTP stream so
// that NACKs from any subscriber are served from one copy. Its memory is
// allocated once; store and get copy under a mutex and never allocate.
type packetCache struct {
	mu      sync.Mutex
	mask    uint16
	entries []cacheEntry
}

type cacheEntry struct {
	seq    uint16
	length uint16 // 0: empty
	buf    [maxPacketSize]byte
}

// newPacketCache returns a cache of size entries; size must be a power of
// two no larger than 32768.
func newPacketCache(size int) *packetCache {
	if size <= 0 || size > 1<<15 || size&(size-1) != 0 {
		panic("sfu: packet cache size must be a power of two ≤ 32768")
	}
	return &packetCache{mask: uint16(size - 1), entries: make([]cacheEntry, size)}
}

// store keeps a copy of pkt, the RTP packet with sequence number seq.
func (c *packetCache) store(seq uint16, pkt []byte) {
	if len(pkt) == 0 || len(pkt) > maxPacketSize {
		return
	}
	c.mu.Lock()
	e := &c.entries[seq&c.mask]
	e.seq = seq
	e.length = uint16(len(pkt))
	copy(e.buf[:], pkt)
	c.mu.Unlock()
}

// get copies the packet with sequence number seq into dst and returns its
// length, or 0 when the packet is no longer (or was never) cached.
func (c *packetCache) get(seq uint16, dst []byte) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := &c.entries[seq&c.mask]
	if e.length == 0 || e.seq != seq {
		return 0
	}
	return copy(dst, e.buf[:e.length])
}

package server

import (
	"net/netip"
	"strings"

	"github.com/gofiber/fiber/v2"
)

// ClientIP returns the address of the client that made the request. The
// X-Forwarded-For header is believed only when the connection comes from a
// configured trusted proxy, and then read from the right: the first address
// that is not itself a trusted proxy is the client (entries to its left were
// written by the client and may be forged).
func (s *Server) ClientIP(c *fiber.Ctx) string {
	return clientIP(c.Context().RemoteIP().String(), c.Get(fiber.HeaderXForwardedFor), s.proxies).String()
}

func clientIP(peer, xff string, trusted []netip.Prefix) netip.Addr {
	addr, err := netip.ParseAddr(peer)
	if err != nil {
		return netip.IPv4Unspecified()
	}
	addr = addr.Unmap()
	if !isTrusted(addr, trusted) || xff == "" {
		return addr
	}
	hops := strings.Split(xff, ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			// A hop we cannot read: the nearest trustworthy answer is the
			// proxy that handed it to us.
			return addr
		}
		hop = hop.Unmap()
		if !isTrusted(hop, trusted) {
			return hop
		}
		addr = hop
	}
	return addr
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

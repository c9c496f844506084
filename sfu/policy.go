package sfu

import (
	"net/netip"
	"strings"
)

// remotePolicy decides which remote candidate addresses the SFU may send
// to. Loopback, private (RFC 1918, ULA), link-local (with the cloud
// metadata address), CGNAT, unspecified, multicast, broadcast and reserved
// addresses are refused unless a configured prefix allows them: a browser
// must not be able to make the server probe its own network.
type remotePolicy struct {
	allowed []netip.Prefix
}

var (
	cgnat       = netip.MustParsePrefix("100.64.0.0/10")
	thisNetwork = netip.MustParsePrefix("0.0.0.0/8")
	reserved4   = netip.MustParsePrefix("240.0.0.0/4") // includes 255.255.255.255
	nat64       = netip.MustParsePrefix("64:ff9b::/96")
)

// allow reports whether packets may be sent to addr.
func (p remotePolicy) allow(addr netip.Addr) bool {
	addr = addr.Unmap().WithZone("")
	if !addr.IsValid() {
		return false
	}
	for _, pr := range p.allowed {
		if pr.Contains(addr) {
			return true
		}
	}
	if nat64.Contains(addr) {
		// The well-known NAT64 prefix embeds an IPv4 address: judge that one.
		b := addr.As16()
		return p.allow(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}))
	}
	switch {
	case addr.IsLoopback(), addr.IsPrivate(), addr.IsUnspecified(),
		addr.IsLinkLocalUnicast(), // 169.254/16 (metadata 169.254.169.254), fe80::/10
		addr.IsMulticast(), addr.IsLinkLocalMulticast(), addr.IsInterfaceLocalMulticast(),
		cgnat.Contains(addr), thisNetwork.Contains(addr), reserved4.Contains(addr):
		return false
	}
	return true
}

// candidateAllowed reports whether the connection address of an ICE
// candidate ("candidate:..." or "a=candidate:...") is an IP address the
// policy allows. Host names (mDNS ".local" or anything else) are never
// resolved and so never allowed.
func (p remotePolicy) candidateAllowed(cand string) bool {
	cand = strings.TrimPrefix(strings.TrimSpace(cand), "a=")
	if !strings.HasPrefix(cand, "candidate:") {
		return false
	}
	// candidate:<foundation> <component> <transport> <priority> <address> <port> typ <type> ...
	fields := strings.Fields(cand)
	if len(fields) < 8 {
		return false
	}
	addr, err := netip.ParseAddr(fields[4])
	if err != nil {
		return false
	}
	return p.allow(addr)
}

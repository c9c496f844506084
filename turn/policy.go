package turn

import "net/netip"

// Reasons a peer address is refused. They are short, stable words meant for
// audit records and metrics labels.
const (
	ReasonInvalid        = "invalid"                  // not an IP address
	ReasonMetadata       = "metadata"                 // a cloud instance-metadata service
	ReasonUnspecified    = "unspecified"              // 0.0.0.0/8, :: ("this host / this network")
	ReasonLoopback       = "loopback"                 // 127/8, ::1
	ReasonPrivate        = "private"                  // RFC 1918
	ReasonCGNAT          = "cgnat"                    // 100.64/10 shared address space
	ReasonLinkLocal      = "link-local"               // 169.254/16, fe80::/10
	ReasonMulticast      = "multicast"                // 224/4, ff00::/8
	ReasonBroadcast      = "broadcast"                // 255.255.255.255
	ReasonReserved       = "reserved"                 // 240/4, IPv6 outside 2000::/3, ...
	ReasonDocumentation  = "documentation"            // TEST-NETs, 2001:db8::/32, 3fff::/20
	ReasonBenchmarking   = "benchmarking"             // 198.18/15, 2001:2::/48
	ReasonProtocolAssign = "ietf-protocol-assignment" // 192.0.0/24, 2001::/23
	ReasonRelay6to4      = "6to4-relay-anycast"       // 192.88.99/24 (deprecated)
	ReasonUniqueLocal    = "unique-local"             // fc00::/7
	ReasonSiteLocal      = "site-local"               // fec0::/10 (deprecated)
	ReasonIPv4Compatible = "ipv4-compatible"          // ::/96 (deprecated)
	ReasonDiscard        = "discard-only"             // 100::/64, 100:0:0:1::/64
	ReasonNAT64Local     = "nat64-local-use"          // 64:ff9b:1::/48
	ReasonSRv6           = "srv6-sid"                 // 5f00::/16
	ReasonTeredo         = "teredo"                   // 2001::/32
	ReasonEmbeddedPrefix = "embedded-"                // prefix of "embedded-<reason>" for 6to4/NAT64
	reasonAllowed        = ""                         // Reason's answer for an allowed address
)

// PeerPolicy decides which peer addresses the TURN server relays to. The
// zero value is not usable; build one with NewPeerPolicy.
//
// The default refuses every address that is not ordinary public unicast:
// a TURN relay that reaches loopback, private or metadata addresses turns
// every holder of a credential into an attacker inside the server's own
// network (coturn CVE-2020-26262, CVE-2026-27624).
//
// Order of the checks, first match wins:
//  1. invalid addresses are refused; zones are stripped and IPv4-mapped
//     IPv6 (::ffff:a.b.c.d) is judged as the IPv4 address it maps;
//  2. cloud metadata services and the unspecified ranges (0.0.0.0/8, ::)
//     are refused always, even when the allow-list covers them: Linux
//     delivers 0.0.0.0 to the local host, and no deployment needs its
//     relay to reach a metadata service;
//  3. an address inside an allow-list prefix is allowed;
//  4. the special-purpose ranges listed below are refused; 6to4
//     (2002::/16) and NAT64 (64:ff9b::/96) addresses are judged by the
//     IPv4 address they embed;
//  5. IPv6 outside global unicast 2000::/3 is refused; everything else is
//     allowed.
//
// The tables are explicit netip prefixes from the IANA special-purpose
// registries, not net.IP.IsGlobalUnicast, which allows RFC 1918, CGNAT and
// the documentation ranges.
type PeerPolicy struct {
	allow []netip.Prefix
}

// namedPrefix is one special-purpose range with the reason it is refused.
type namedPrefix struct {
	prefix netip.Prefix
	reason string
}

func np(s, reason string) namedPrefix {
	return namedPrefix{netip.MustParsePrefix(s), reason}
}

// metadataAddrs are instance-metadata and platform-agent endpoints of the
// big clouds. Most sit in ranges refused anyway, but they get their own
// reason, and 168.63.129.16 (Azure WireServer) is a public address that no
// other rule catches.
var metadataAddrs = []netip.Addr{
	netip.MustParseAddr("169.254.169.254"), // AWS, GCP, Azure, OCI, DigitalOcean, Hetzner, ... IMDS
	netip.MustParseAddr("169.254.170.2"),   // AWS ECS task metadata
	netip.MustParseAddr("169.254.0.23"),    // Tencent Cloud metadata
	netip.MustParseAddr("100.100.100.200"), // Alibaba Cloud metadata (inside CGNAT)
	netip.MustParseAddr("168.63.129.16"),   // Azure WireServer / host agent
	netip.MustParseAddr("fd00:ec2::254"),   // AWS IMDS over IPv6 (inside ULA)
}

// unspecified4 is "this network" (RFC 791, RFC 1122); 0.0.0.0 reaches the
// local host on Linux.
var unspecified4 = netip.MustParsePrefix("0.0.0.0/8")

// special4 is the IPv4 special-purpose registry, minus the few blocks IANA
// marks globally reachable (AS112, AMT), plus multicast and class E.
var special4 = []namedPrefix{
	np("127.0.0.0/8", ReasonLoopback),
	np("10.0.0.0/8", ReasonPrivate),
	np("172.16.0.0/12", ReasonPrivate),
	np("192.168.0.0/16", ReasonPrivate),
	np("100.64.0.0/10", ReasonCGNAT),
	np("169.254.0.0/16", ReasonLinkLocal),
	// All of 192.0.0.0/24, though IANA marks 192.0.0.9 and .10 (PCP and
	// TURN anycast) globally reachable: no WebRTC peer lives there.
	np("192.0.0.0/24", ReasonProtocolAssign),
	np("192.0.2.0/24", ReasonDocumentation),
	np("198.51.100.0/24", ReasonDocumentation),
	np("203.0.113.0/24", ReasonDocumentation),
	np("192.88.99.0/24", ReasonRelay6to4),
	np("198.18.0.0/15", ReasonBenchmarking),
	np("224.0.0.0/4", ReasonMulticast),
	np("255.255.255.255/32", ReasonBroadcast),
	np("240.0.0.0/4", ReasonReserved),
}

var (
	ipv6Loopback   = netip.IPv6Loopback()
	ipv6Compatible = netip.MustParsePrefix("::/96")
	nat64WellKnown = netip.MustParsePrefix("64:ff9b::/96")
	prefix6to4     = netip.MustParsePrefix("2002::/16")
	globalUnicast6 = netip.MustParsePrefix("2000::/3")
)

// special6 is the IPv6 special-purpose registry as far as it lies in or
// next to global unicast. Order matters: narrower blocks before the
// 2001::/23 that contains them, so the reason is the precise one.
var special6 = []namedPrefix{
	np("64:ff9b:1::/48", ReasonNAT64Local),
	np("100::/64", ReasonDiscard),
	np("100:0:0:1::/64", ReasonDiscard),
	// Teredo embeds its server and an obfuscated client IPv4 address; the
	// protocol is obsolete, so the whole prefix is refused rather than
	// trusting either embedded address.
	np("2001::/32", ReasonTeredo),
	np("2001:2::/48", ReasonBenchmarking),
	// 2001::/23 is refused whole, though IANA marks a few blocks in it
	// globally reachable (PCP/TURN anycast 2001:1::1-3, AMT 2001:3::/32,
	// AS112 2001:4:112::/48, ORCHIDv2 2001:20::/28, DRIP 2001:30::/28):
	// none of them is a WebRTC peer.
	np("2001::/23", ReasonProtocolAssign),
	np("2001:db8::/32", ReasonDocumentation),
	np("3fff::/20", ReasonDocumentation),
	np("5f00::/16", ReasonSRv6),
	np("fc00::/7", ReasonUniqueLocal),
	np("fe80::/10", ReasonLinkLocal),
	np("fec0::/10", ReasonSiteLocal),
	np("ff00::/8", ReasonMulticast),
}

// NewPeerPolicy returns the default policy, extended by allow: peers inside
// one of these prefixes are relayed to even when a special-purpose range
// would refuse them (metadata and unspecified addresses excepted). Prefixes
// are masked; IPv4-mapped IPv6 prefixes (::ffff:a.b.c.d/n, n >= 96) are
// turned into the IPv4 prefix they map; invalid prefixes are ignored.
func NewPeerPolicy(allow []netip.Prefix) *PeerPolicy {
	p := &PeerPolicy{}
	for _, pr := range allow {
		if !pr.IsValid() {
			continue
		}
		pr = pr.Masked()
		if a := pr.Addr(); a.Is4In6() {
			if pr.Bits() < 96 {
				continue // mixes v4-mapped and other IPv6 space: meaningless
			}
			pr = netip.PrefixFrom(a.Unmap(), pr.Bits()-96)
		}
		p.allow = append(p.allow, netip.PrefixFrom(pr.Addr().WithZone(""), pr.Bits()))
	}
	return p
}

// Allowed reports whether the server may relay to ip.
func (p *PeerPolicy) Allowed(ip netip.Addr) bool {
	return p.Reason(ip) == reasonAllowed
}

// Reason returns why ip is refused (a nil policy is the default one), one of the Reason* constants (for 6to4
// and NAT64 addresses "embedded-" followed by the embedded address's
// reason), or "" when ip is allowed.
func (p *PeerPolicy) Reason(ip netip.Addr) string {
	if !ip.IsValid() {
		return ReasonInvalid
	}
	ip = ip.WithZone("").Unmap()
	for _, m := range metadataAddrs {
		if ip == m {
			return ReasonMetadata
		}
	}
	if ip.IsUnspecified() || (ip.Is4() && unspecified4.Contains(ip)) {
		return ReasonUnspecified
	}
	if p != nil {
		for _, pr := range p.allow {
			if pr.Contains(ip) {
				return reasonAllowed
			}
		}
	}
	if ip.Is4() {
		for _, n := range special4 {
			if n.prefix.Contains(ip) {
				return n.reason
			}
		}
		return reasonAllowed
	}
	switch {
	case ip == ipv6Loopback:
		return ReasonLoopback
	case ipv6Compatible.Contains(ip):
		return ReasonIPv4Compatible
	case nat64WellKnown.Contains(ip):
		b := ip.As16()
		return p.embedded(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}))
	case prefix6to4.Contains(ip):
		b := ip.As16()
		return p.embedded(netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}))
	}
	for _, n := range special6 {
		if n.prefix.Contains(ip) {
			return n.reason
		}
	}
	if !globalUnicast6.Contains(ip) {
		return ReasonReserved
	}
	return reasonAllowed
}

// embedded judges the IPv4 address inside a translation address.
func (p *PeerPolicy) embedded(v4 netip.Addr) string {
	if r := p.Reason(v4); r != reasonAllowed {
		return ReasonEmbeddedPrefix + r
	}
	return reasonAllowed
}

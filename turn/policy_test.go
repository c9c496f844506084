package turn

import (
	"net/netip"
	"strings"
	"testing"
)

func TestPeerPolicyDefault(t *testing.T) {
	p := NewPeerPolicy(nil)
	tests := []struct {
		addr   string
		reason string // "" = allowed
	}{
		// Public unicast.
		{"8.8.8.8", ""},
		{"1.1.1.1", ""},
		{"9.9.9.9", ""},
		{"93.184.215.14", ""},
		{"100.63.255.255", ""},  // just below CGNAT
		{"100.128.0.0", ""},     // just above CGNAT
		{"172.15.255.255", ""},  // just below 172.16/12
		{"172.32.0.0", ""},      // just above 172.16/12
		{"192.31.196.1", ""},    // AS112, globally reachable
		{"223.255.255.255", ""}, // last below multicast
		{"2606:4700::1111", ""},
		{"2a00:1450::", ""},
		{"2001:4860:4860::8888", ""},
		{"2620:4f:8000::1", ""},           // AS112 direct delegation
		{"2001:200::1", ""},               // just above 2001::/23
		{"64:ff9b::808:808", ""},          // NAT64 of 8.8.8.8
		{"2002:808:808::1", ""},           // 6to4 of 8.8.8.8
		{"::ffff:8.8.8.8", ""},            // v4-mapped public
		{"2606:4700::1111%eth0", ""},      // zone stripped
		{"fe80::1%eth0", ReasonLinkLocal}, // zone stripped, still link-local

		// IPv4 special purpose.
		{"0.0.0.0", ReasonUnspecified},
		{"0.1.2.3", ReasonUnspecified},
		{"127.0.0.1", ReasonLoopback},
		{"127.255.255.254", ReasonLoopback},
		{"10.0.0.1", ReasonPrivate},
		{"10.255.255.255", ReasonPrivate},
		{"172.16.0.1", ReasonPrivate},
		{"172.31.255.255", ReasonPrivate},
		{"192.168.1.1", ReasonPrivate},
		{"100.64.0.1", ReasonCGNAT},
		{"100.127.255.255", ReasonCGNAT},
		{"100.100.100.200", ReasonMetadata},
		{"169.254.169.254", ReasonMetadata},
		{"169.254.170.2", ReasonMetadata},
		{"168.63.129.16", ReasonMetadata},
		{"169.254.1.1", ReasonLinkLocal},
		{"192.0.0.1", ReasonProtocolAssign},
		{"192.0.0.170", ReasonProtocolAssign},
		{"192.0.2.1", ReasonDocumentation},
		{"198.51.100.7", ReasonDocumentation},
		{"203.0.113.9", ReasonDocumentation},
		{"192.88.99.1", ReasonRelay6to4},
		{"198.18.0.1", ReasonBenchmarking},
		{"198.19.255.255", ReasonBenchmarking},
		{"224.0.0.1", ReasonMulticast},
		{"239.255.255.250", ReasonMulticast},
		{"240.0.0.1", ReasonReserved},
		{"255.255.255.254", ReasonReserved},
		{"255.255.255.255", ReasonBroadcast},

		// IPv4-mapped IPv6 is judged as IPv4 (coturn CVE-2026-27624).
		{"::ffff:127.0.0.1", ReasonLoopback},
		{"::ffff:10.1.2.3", ReasonPrivate},
		{"::ffff:169.254.169.254", ReasonMetadata},
		{"::ffff:0.0.0.0", ReasonUnspecified},

		// IPv6 special purpose.
		{"::", ReasonUnspecified},
		{"::1", ReasonLoopback},
		{"::127.0.0.1", ReasonIPv4Compatible},
		{"::8.8.8.8", ReasonIPv4Compatible},
		{"::ffff:0:7f00:1", ReasonReserved}, // SIIT IPv4-translated, outside 2000::/3
		{"64:ff9b::7f00:1", ReasonEmbeddedPrefix + ReasonLoopback},
		{"64:ff9b::a9fe:a9fe", ReasonEmbeddedPrefix + ReasonMetadata},
		{"64:ff9b::c0a8:101", ReasonEmbeddedPrefix + ReasonPrivate},
		{"64:ff9b:1::8.8.8.8", ReasonNAT64Local},
		{"2002:7f00:1::", ReasonEmbeddedPrefix + ReasonLoopback},
		{"2002:a00:1::1", ReasonEmbeddedPrefix + ReasonPrivate},
		{"2002:a9fe:a9fe::", ReasonEmbeddedPrefix + ReasonMetadata},
		{"2001::1", ReasonTeredo},
		{"2001:0:4136:e378:8000:63bf:3fff:fdd2", ReasonTeredo},
		{"2001:2::1", ReasonBenchmarking},
		{"2001:1::2", ReasonProtocolAssign}, // TURN anycast: refused conservatively
		{"2001:10::1", ReasonProtocolAssign},
		{"2001:db8::1", ReasonDocumentation},
		{"3fff::1", ReasonDocumentation},
		{"3fff:fff::1", ReasonDocumentation},
		{"100::1", ReasonDiscard},
		{"100:0:0:1::1", ReasonDiscard},
		{"5f00::1", ReasonSRv6},
		{"fc00::1", ReasonUniqueLocal},
		{"fd12:3456::1", ReasonUniqueLocal},
		{"fd00:ec2::254", ReasonMetadata},
		{"fe80::1", ReasonLinkLocal},
		{"febf::1", ReasonLinkLocal},
		{"fec0::1", ReasonSiteLocal},
		{"ff02::1", ReasonMulticast},
		{"ff0e::1", ReasonMulticast},
		{"4000::1", ReasonReserved},
		{"1::1", ReasonReserved},
	}
	if len(tests) < 60 {
		t.Fatalf("table has %d addresses, want at least 60", len(tests))
	}
	for _, tc := range tests {
		a := netip.MustParseAddr(tc.addr)
		if got := p.Reason(a); got != tc.reason {
			t.Errorf("Reason(%s) = %q, want %q", tc.addr, got, tc.reason)
		}
		if got := p.Allowed(a); got != (tc.reason == "") {
			t.Errorf("Allowed(%s) = %v, want %v", tc.addr, got, tc.reason == "")
		}
	}
}

func TestPeerPolicyAllowList(t *testing.T) {
	p := NewPeerPolicy([]netip.Prefix{
		netip.MustParsePrefix("127.0.0.0/8"),
		netip.MustParsePrefix("::ffff:10.1.0.0/112"), // becomes 10.1.0.0/16
		netip.MustParsePrefix("fd00:1234::/32"),
		netip.MustParsePrefix("100.64.0.0/10"),
		netip.MustParsePrefix("169.254.0.0/16"),
		netip.MustParsePrefix("0.0.0.0/0"), // "everything": still not metadata nor unspecified
		{},                                 // invalid: ignored
	})
	tests := []struct {
		addr   string
		reason string
	}{
		{"127.0.0.1", ""},
		{"::ffff:127.0.0.1", ""},
		{"64:ff9b::7f00:1", ""}, // embedded address allow-listed
		{"2002:7f00:1::", ""},
		{"10.1.2.3", ""},
		{"10.2.0.1", ""}, // 0.0.0.0/0
		{"fd00:1234::5", ""},
		{"100.64.0.1", ""},
		{"169.254.1.1", ""},
		{"::1", ReasonLoopback}, // IPv6 loopback not allow-listed
		{"fd00:1235::5", ReasonUniqueLocal},
		{"100.100.100.200", ReasonMetadata},
		{"169.254.169.254", ReasonMetadata},
		{"::ffff:169.254.169.254", ReasonMetadata},
		{"64:ff9b::a9fe:a9fe", ReasonEmbeddedPrefix + ReasonMetadata},
		{"0.0.0.0", ReasonUnspecified},
		{"::", ReasonUnspecified},
	}
	for _, tc := range tests {
		if got := p.Reason(netip.MustParseAddr(tc.addr)); got != tc.reason {
			t.Errorf("Reason(%s) = %q, want %q", tc.addr, got, tc.reason)
		}
	}

	narrow := NewPeerPolicy([]netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")})
	if !narrow.Allowed(netip.MustParseAddr("127.0.0.1")) || narrow.Allowed(netip.MustParseAddr("127.0.0.2")) {
		t.Error("127.0.0.1/32 must allow exactly 127.0.0.1")
	}
}

func TestPeerPolicyEdgeCases(t *testing.T) {
	var nilPolicy *PeerPolicy
	if nilPolicy.Allowed(netip.MustParseAddr("127.0.0.1")) || !nilPolicy.Allowed(netip.MustParseAddr("8.8.8.8")) {
		t.Error("a nil policy must be the default policy")
	}
	p := NewPeerPolicy(nil)
	if got := p.Reason(netip.Addr{}); got != ReasonInvalid {
		t.Errorf("Reason(zero Addr) = %q", got)
	}
	for _, r := range []string{p.Reason(netip.MustParseAddr("64:ff9b::a00:1")), p.Reason(netip.MustParseAddr("2002:c0a8:1::"))} {
		if !strings.HasPrefix(r, ReasonEmbeddedPrefix) {
			t.Errorf("embedded reason %q lacks the prefix", r)
		}
	}
}

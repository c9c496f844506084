package server

import (
	"net/netip"
	"testing"
)

func mustPrefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func TestClientIP(t *testing.T) {
	proxies := mustPrefixes("10.0.0.0/8", "2001:db8::/32")
	cases := []struct {
		peer, xff string
		trusted   []netip.Prefix
		want      string
	}{
		{"192.0.2.1", "", nil, "192.0.2.1"},
		{"192.0.2.1", "203.0.113.5", nil, "192.0.2.1"},                // no trusted proxies: header ignored
		{"192.0.2.1", "203.0.113.5", proxies, "192.0.2.1"},            // peer is not a trusted proxy
		{"10.1.1.1", "203.0.113.5", proxies, "203.0.113.5"},           // one trusted hop
		{"10.1.1.1", "6.6.6.6, 203.0.113.5", proxies, "203.0.113.5"},  // forged left entry ignored
		{"10.1.1.1", "203.0.113.5, 10.2.2.2", proxies, "203.0.113.5"}, // two trusted hops
		{"10.1.1.1", "10.3.3.3, 10.2.2.2", proxies, "10.3.3.3"},       // all trusted: the farthest
		{"10.1.1.1", "garbage, 203.0.113.5", proxies, "203.0.113.5"},
		{"10.1.1.1", "203.0.113.5, garbage", proxies, "10.1.1.1"}, // unreadable hop: stop at the proxy
		{"10.1.1.1", "", proxies, "10.1.1.1"},
		{"::ffff:10.1.1.1", "::ffff:203.0.113.5", proxies, "203.0.113.5"}, // mapped forms unmapped
		{"2001:db8::1", "2001:db8::2, 2a00::1", proxies, "2a00::1"},
		{"not-an-ip", "203.0.113.5", proxies, "0.0.0.0"},
	}
	for _, c := range cases {
		if got := clientIP(c.peer, c.xff, c.trusted).String(); got != c.want {
			t.Errorf("clientIP(%q, %q) = %s, want %s", c.peer, c.xff, got, c.want)
		}
	}
}

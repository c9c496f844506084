package config

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func loadTURN(t *testing.T, env map[string]string, args ...string) (*Config, error) {
	t.Helper()
	return Load("serve", args, envOf(env), &bytes.Buffer{})
}

func TestTURNDefaults(t *testing.T) {
	c, err := loadTURN(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !c.TURN || c.TURNUDPPort != 3478 || c.TURNTCPPort != 3478 || c.TURNTLSPort != 5349 ||
		c.TURNRelayPortMin != 49152 || c.TURNRelayPortMax != 65535 ||
		c.TURNMaxAllocationsPerParticipant != 5 || c.TURNMaxAllocations != 1000 ||
		c.TURNCredentialTTL != 10*time.Minute || c.TURNURLs != nil || c.TURNSecret != "" ||
		c.TURNAllowedPeers != nil || c.TURNListenIP != "" || c.TURNRelayIP != "" || c.TURNAnnouncedIP.IsValid() {
		t.Errorf("TURN defaults: %+v", c)
	}
	lo := netip.MustParseAddr("127.0.0.1")
	if c.TURNListenAddr() != lo || c.TURNRelayAddr() != lo {
		t.Errorf("listen %s relay %s, want the media listen address 127.0.0.1", c.TURNListenAddr(), c.TURNRelayAddr())
	}
	if a, err := c.TURNAnnouncedAddr(); err != nil || a != lo {
		t.Errorf("announced %s %v", a, err)
	}
	if c.TURNExternal() {
		t.Error("external TURN by default")
	}
}

func TestTURNPrecedence(t *testing.T) {
	f := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(f, []byte("turn: false\nturn-udp-port: 1111\nturn-tcp-port: 2222\nturn-tls-port: 3333\n"+
		"turn-allowed-peers: [10.0.0.0/8, 192.0.2.1]\nturn-credential-ttl: 5m\n"), 0o600)
	env := map[string]string{"PARLEY_CONFIG": f, "PARLEY_TURN": "true", "PARLEY_TURN_UDP_PORT": "4444", "PARLEY_TURN_TCP_PORT": "5555"}
	c, err := loadTURN(t, env, "--turn-udp-port", "6666")
	if err != nil {
		t.Fatal(err)
	}
	if !c.TURN || c.TURNUDPPort != 6666 || c.TURNTCPPort != 5555 || c.TURNTLSPort != 3333 || c.TURNCredentialTTL != 5*time.Minute {
		t.Errorf("flag > env > file: turn %v udp %d tcp %d tls %d ttl %v", c.TURN, c.TURNUDPPort, c.TURNTCPPort, c.TURNTLSPort, c.TURNCredentialTTL)
	}
	if !slices.Equal(c.TURNAllowedPeers, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.1/32")}) {
		t.Errorf("allowed peers from a YAML list: %v", c.TURNAllowedPeers)
	}
	c, err = loadTURN(t, map[string]string{"PARLEY_CONFIG": f})
	if err != nil || c.TURN {
		t.Errorf("turn: false in the file: %v %v", c.TURN, err)
	}
	for _, args := range [][]string{{"--turn=false"}, {"--turn=0"}} {
		if c, err := loadTURN(t, nil, args...); err != nil || c.TURN {
			t.Errorf("%v: turn %v, %v", args, c.TURN, err)
		}
	}
	if c, err := loadTURN(t, map[string]string{"PARLEY_TURN": "false"}, "--turn"); err != nil || !c.TURN {
		t.Errorf("--turn should beat PARLEY_TURN=false: %v", err)
	}
}

func TestTURNParsedValues(t *testing.T) {
	c, err := loadTURN(t, nil,
		"--turn-udp-port", "0", "--turn-tcp-port", "-1", "--turn-tls-port", "0",
		"--turn-listen-ip", "::ffff:192.0.2.20", "--turn-relay-ports", " 50000 - 50010 ",
		"--turn-allowed-peers", "127.0.0.0/8, ::1, ::ffff:10.1.2.3, 10.1.2.3/8",
		"--turn-max-allocations-per-participant", "100", "--turn-max-allocations", "1000000",
		"--turn-credential-ttl", "24h",
		"--turn-urls", "turn:meet.example.org:3478?transport=udp, turns:[2001:db8::1]:5349?transport=tcp,turn:192.0.2.1,turn:meet.example.org:3478?transport=udp")
	if err != nil {
		t.Fatal(err)
	}
	if c.TURNUDPPort != 0 || c.TURNTCPPort != -1 || c.TURNTLSPort != 0 || c.TURNListenIP != "192.0.2.20" ||
		c.TURNRelayPortMin != 50000 || c.TURNRelayPortMax != 50010 || c.TURNMaxAllocationsPerParticipant != 100 ||
		c.TURNMaxAllocations != 1000000 || c.TURNCredentialTTL != 24*time.Hour {
		t.Errorf("parsed: %+v", c)
	}
	wantPeers := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128"),
		netip.MustParsePrefix("10.1.2.3/32"), netip.MustParsePrefix("10.0.0.0/8")}
	if !slices.Equal(c.TURNAllowedPeers, wantPeers) {
		t.Errorf("allowed peers %v, want %v", c.TURNAllowedPeers, wantPeers)
	}
	wantURLs := []string{"turn:meet.example.org:3478?transport=udp", "turns:[2001:db8::1]:5349?transport=tcp", "turn:192.0.2.1"}
	if !slices.Equal(c.TURNURLs, wantURLs) {
		t.Errorf("URLs %q, want %q", c.TURNURLs, wantURLs)
	}
	// The relay binds the TURN listen address unless told otherwise.
	if c.TURNRelayAddr() != netip.MustParseAddr("192.0.2.20") {
		t.Errorf("relay %s", c.TURNRelayAddr())
	}
	if c, err := loadTURN(t, nil, "--turn-relay-ports", "0"); err != nil || c.TURNRelayPortMin != 0 || c.TURNRelayPortMax != 0 {
		t.Errorf("--turn-relay-ports 0: %v", err)
	}
	if c, err := loadTURN(t, nil, "--turn-relay-ports", "40000-40000"); err != nil || c.TURNRelayPortMin != 40000 || c.TURNRelayPortMax != 40000 {
		t.Errorf("one-port range: %v", err)
	}
	if c, err := loadTURN(t, nil, "--turn-credential-ttl", "1m"); err != nil || c.TURNCredentialTTL != time.Minute {
		t.Errorf("1m TTL: %v", err)
	}
}

func TestTURNAnnouncedAddress(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want string // "" means ErrTURNAnnounced
	}{
		{"loopback listen", nil, "127.0.0.1"},
		{"specific listen", []string{"--listen", "192.0.2.10:8443", "--public-url", "https://meet.example.org"}, "192.0.2.10"},
		{"media listen IP", []string{"--listen", ":8443", "--media-listen-ip", "192.0.2.11", "--public-url", "https://meet.example.org"}, "192.0.2.11"},
		{"TURN listen IP", []string{"--listen", ":8443", "--turn-listen-ip", "192.0.2.12", "--public-url", "https://meet.example.org"}, "192.0.2.12"},
		{"relay IP", []string{"--listen", ":8443", "--turn-relay-ip", "192.0.2.13", "--public-url", "https://meet.example.org"}, "192.0.2.13"},
		{"unspecified, host name", []string{"--listen", ":8443", "--public-url", "https://meet.example.org"}, ""},
		{"unspecified IPv6, host name", []string{"--listen", "[::]:8443", "--public-url", "https://meet.example.org"}, ""},
		{"explicit relay 0.0.0.0", []string{"--turn-relay-ip", "0.0.0.0", "--public-url", "https://meet.example.org"}, ""},
		{"unspecified, localhost", []string{"--listen", "0.0.0.0:8443"}, "127.0.0.1"},
		{"unspecified, IPv4 literal", []string{"--listen", ":8443", "--public-url", "https://203.0.113.9:8443"}, "203.0.113.9"},
		{"unspecified IPv6, IPv6 literal", []string{"--listen", "[::]:8443", "--public-url", "https://[2001:db8::5]"}, "2001:db8::5"},
		{"unspecified IPv4, IPv6 literal", []string{"--listen", ":8443", "--public-url", "https://[2001:db8::5]"}, ""},
		{"announced wins", []string{"--listen", ":8443", "--public-url", "https://meet.example.org",
			"--media-public-ips", "203.0.113.1", "--turn-announced-ip", "203.0.113.2"}, "203.0.113.2"},
		{"media public IPs first", []string{"--listen", ":8443", "--public-url", "https://meet.example.org",
			"--media-public-ips", "2001:db8::1,203.0.113.1,203.0.113.3"}, "203.0.113.1"},
		{"media public IPs beat a specific relay", []string{"--listen", "10.0.0.5:8443", "--public-url", "https://meet.example.org",
			"--media-public-ips", "203.0.113.4"}, "203.0.113.4"},
		{"media public IPs of another family", []string{"--listen", "10.0.0.5:8443", "--public-url", "https://meet.example.org",
			"--media-public-ips", "2001:db8::1"}, "10.0.0.5"},
		{"dual-stack relay takes the first", []string{"--listen", "[::]:8443", "--public-url", "https://meet.example.org",
			"--media-public-ips", "2001:db8::1,203.0.113.1"}, "2001:db8::1"},
		{"mapped announced", []string{"--turn-announced-ip", "::ffff:203.0.113.5"}, "203.0.113.5"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := loadTURN(t, nil, tc.args...)
			if tc.want == "" {
				var ce *Error
				if !errors.As(err, &ce) || !strings.Contains(ce.Msg, "--turn-announced-ip") || !strings.Contains(ce.Msg, "--turn-relay-ip") {
					t.Fatalf("err = %v, want a config error naming --turn-announced-ip and --turn-relay-ip", err)
				}
				// TURN off: nothing to announce, and no error.
				if _, err := loadTURN(t, nil, append(tc.args, "--turn=false")...); err != nil {
					t.Errorf("with --turn=false: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			a, err := c.TURNAnnouncedAddr()
			if err != nil || a != netip.MustParseAddr(tc.want) {
				t.Errorf("announced %s %v, want %s", a, err, tc.want)
			}
		})
	}
}

func TestTURNInvalidValuesNameTheOption(t *testing.T) {
	cases := []struct {
		args   []string
		env    map[string]string
		yaml   string
		option string
	}{
		{args: []string{"--turn=maybe"}, option: "-turn"},
		{env: map[string]string{"PARLEY_TURN": "maybe"}, option: "--turn "},
		{yaml: "turn: sometimes\n", option: "--turn "},
		{args: []string{"--turn-udp-port", "-2"}, option: "--turn-udp-port"},
		{args: []string{"--turn-udp-port", "65536"}, option: "--turn-udp-port"},
		{args: []string{"--turn-tcp-port", "x"}, option: "--turn-tcp-port"},
		{env: map[string]string{"PARLEY_TURN_TLS_PORT": "70000"}, option: "--turn-tls-port"},
		{args: []string{"--turn-listen-ip", "example.org"}, option: "--turn-listen-ip"},
		{args: []string{"--turn-listen-ip", "fe80::1%eth0"}, option: "--turn-listen-ip"},
		{args: []string{"--turn-relay-ip", "10.0.0.0/8"}, option: "--turn-relay-ip"},
		{args: []string{"--turn-announced-ip", "0.0.0.0"}, option: "--turn-announced-ip"},
		{args: []string{"--turn-announced-ip", "::"}, option: "--turn-announced-ip"},
		{args: []string{"--turn-announced-ip", "224.0.0.1"}, option: "--turn-announced-ip"},
		{args: []string{"--turn-announced-ip", "meet.example.org"}, option: "--turn-announced-ip"},
		{args: []string{"--turn-relay-ip", "192.0.2.1", "--turn-announced-ip", "2001:db8::1"}, option: "--turn-announced-ip"},
		{args: []string{"--turn-relay-ports", "49152"}, option: "--turn-relay-ports"},
		{args: []string{"--turn-relay-ports", "0-10"}, option: "--turn-relay-ports"},
		{args: []string{"--turn-relay-ports", "60000-50000"}, option: "--turn-relay-ports"},
		{args: []string{"--turn-relay-ports", "1-65536"}, option: "--turn-relay-ports"},
		{args: []string{"--turn-relay-ports", "a-b"}, option: "--turn-relay-ports"},
		{args: []string{"--turn-relay-ports", "1-2-3"}, option: "--turn-relay-ports"},
		{args: []string{"--turn-allowed-peers", "10.0.0.0/33"}, option: "--turn-allowed-peers"},
		{args: []string{"--turn-allowed-peers", "10.0.0.0/8,lan"}, option: "--turn-allowed-peers"},
		{args: []string{"--turn-allowed-peers", "fe80::1%eth0"}, option: "--turn-allowed-peers"},
		{args: []string{"--turn-max-allocations-per-participant", "0"}, option: "--turn-max-allocations-per-participant"},
		{args: []string{"--turn-max-allocations-per-participant", "101"}, option: "--turn-max-allocations-per-participant"},
		{args: []string{"--turn-max-allocations", "0"}, option: "--turn-max-allocations"},
		{args: []string{"--turn-max-allocations", "1000001"}, option: "--turn-max-allocations"},
		{args: []string{"--turn-credential-ttl", "59s"}, option: "--turn-credential-ttl"},
		{args: []string{"--turn-credential-ttl", "25h"}, option: "--turn-credential-ttl"},
		{args: []string{"--turn-credential-ttl", "soon"}, option: "--turn-credential-ttl"},
		{args: []string{"--turn-urls", "stun:meet.example.org"}, option: "--turn-urls"},
		{args: []string{"--turn-urls", "turn://meet.example.org"}, option: "--turn-urls"},
		{args: []string{"--turn-urls", "turn:meet.example.org/path"}, option: "--turn-urls"},
		{args: []string{"--turn-urls", "turn:user@meet.example.org"}, option: "--turn-urls"},
		{args: []string{"--turn-urls", "turn:"}, option: "--turn-urls"},
		{args: []string{"--turn-urls", "turn:meet.example.org:"}, option: "--turn-urls"},
		{args: []string{"--turn-urls", "turn:meet.example.org:0"}, option: "--turn-urls"},
		{args: []string{"--turn-urls", "turn:meet.example.org:03478"}, option: "--turn-urls"},
		{args: []string{"--turn-urls", "turns:meet.example.org?transport=udp"}, option: "--turn-urls"},
		{args: []string{"--turn-urls", "turn:meet.example.org?transport=sctp"}, option: "--turn-urls"},
		{args: []string{"--turn-urls", "turn:meet.example.org?transport=udp&x=1"}, option: "--turn-urls"},
		{args: []string{"--turn-urls", "turn:[::1"}, option: "--turn-urls"},
		{args: []string{"--turn-urls", "turn:[192.0.2.1]:3478"}, option: "--turn-urls"},
		{args: []string{"--turn-urls", "turn:[fe80::1%25eth0]"}, option: "--turn-urls"},
		{args: []string{"--turn-urls", "turn:2001:db8::1"}, option: "--turn-urls"},
		{args: []string{"--turn-urls", "turn:-bad-.example.org"}, option: "--turn-urls"},
		{args: []string{"--turn-urls", "TURN:meet.example.org"}, option: "--turn-urls"},
		// Listener combinations.
		{args: []string{"--turn-udp-port", "-1", "--turn-tcp-port", "-1", "--turn-tls-port", "-1"}, option: "--turn-udp-port"},
		{args: []string{"--turn-udp-port", "-1", "--turn-tcp-port", "-1", "--insecure-http"}, option: "--turn-tls-port"},
		{args: []string{"--turn-tcp-port", "5000", "--turn-tls-port", "5000"}, option: "--turn-tls-port"},
		// External TURN needs the shared secret.
		{args: []string{"--turn=false", "--turn-urls", "turn:turn.example.org"}, option: "PARLEY_TURN_SECRET"},
	}
	for _, c := range cases {
		args := c.args
		if c.yaml != "" {
			f := filepath.Join(t.TempDir(), "c.yaml")
			os.WriteFile(f, []byte(c.yaml), 0o600)
			args = append(args, "--config", f)
		}
		_, err := loadTURN(t, c.env, args...)
		var ce *Error
		if !errors.As(err, &ce) {
			t.Errorf("%v %v %q: err = %v, want a config error", c.args, c.env, c.yaml, err)
			continue
		}
		if !strings.Contains(ce.Msg, c.option) {
			t.Errorf("%v %v %q: message %q does not name %s", c.args, c.env, c.yaml, ce.Msg, c.option)
		}
	}
}

func TestTURNListenerCombinations(t *testing.T) {
	for _, args := range [][]string{
		{"--turn-udp-port", "-1", "--turn-tcp-port", "-1"},                        // TLS alone
		{"--turn-tcp-port", "-1", "--turn-tls-port", "-1"},                        // UDP alone
		{"--turn-udp-port", "-1", "--turn-tls-port", "-1"},                        // TCP alone
		{"--turn-tcp-port", "0", "--turn-tls-port", "0"},                          // two free ports
		{"--turn-tcp-port", "5000", "--turn-tls-port", "5000", "--insecure-http"}, // TLS off anyway
		{"--turn=false", "--turn-udp-port", "-1", "--turn-tcp-port", "-1", "--turn-tls-port", "-1"},
	} {
		if _, err := loadTURN(t, nil, args...); err != nil {
			t.Errorf("%v: %v", args, err)
		}
	}
}

func TestTURNSecretIsEnvironmentOnly(t *testing.T) {
	secret := strings.Repeat("0123456789abcdef", 4)
	c, err := loadTURN(t, map[string]string{"PARLEY_TURN_SECRET": secret})
	if err != nil || c.TURNSecret != secret {
		t.Fatalf("PARLEY_TURN_SECRET: %v %v", c, err)
	}
	if _, err := loadTURN(t, nil, "--turn-secret", secret); err == nil {
		t.Error("--turn-secret accepted as a flag: it would show in the process list")
	}
	f := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(f, []byte("turn-secret: "+secret+"\n"), 0o600)
	if _, err := loadTURN(t, nil, "--config", f); err == nil {
		t.Error("turn-secret accepted from the YAML file")
	}
	for _, bad := range []string{"short-secret-value", strings.Repeat("g", 64), secret + "00"} {
		_, err := loadTURN(t, map[string]string{"PARLEY_TURN_SECRET": bad})
		var ce *Error
		if !errors.As(err, &ce) || !strings.Contains(ce.Msg, "PARLEY_TURN_SECRET") || strings.Contains(ce.Msg, bad) {
			t.Errorf("PARLEY_TURN_SECRET=%q: err = %v (must fail naming the variable, without echoing the value)", bad, err)
		}
	}
	// External TURN: the URLs and the secret.
	c, err = loadTURN(t, map[string]string{"PARLEY_TURN_SECRET": secret}, "--turn=false", "--turn-urls", "turns:turn.example.org:443?transport=tcp")
	if err != nil || !c.TURNExternal() || c.TURNSecret != secret {
		t.Errorf("external TURN: %v %v", c, err)
	}
	// TURN off without URLs: no secret needed, nothing announced.
	if c, err := loadTURN(t, nil, "--turn=false"); err != nil || c.TURNExternal() {
		t.Errorf("TURN off: %v", err)
	}
}

// The three address-list options share one parser.
func TestPrefixListOptionsAgree(t *testing.T) {
	in := "10.0.0.0/8, 192.168.1.7/24,::ffff:127.0.0.1, 2001:db8::1"
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.0/24"),
		netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("2001:db8::1/128")}
	c, err := loadTURN(t, nil, "--trusted-proxies", in, "--media-allowed-remote", in, "--turn-allowed-peers", in)
	if err != nil {
		t.Fatal(err)
	}
	for name, got := range map[string][]netip.Prefix{"trusted-proxies": c.TrustedProxies,
		"media-allowed-remote": c.MediaAllowedRemote, "turn-allowed-peers": c.TURNAllowedPeers} {
		if !slices.Equal(got, want) {
			t.Errorf("--%s: %v, want %v", name, got, want)
		}
	}
	for _, name := range []string{"trusted-proxies", "media-allowed-remote", "turn-allowed-peers"} {
		if _, err := loadTURN(t, nil, "--"+name, "fe80::1%eth0"); err == nil || !strings.Contains(err.Error(), "--"+name) {
			t.Errorf("--%s with a zone: %v", name, err)
		}
	}
}

package config

import (
	"io"
	"slices"
	"testing"
)

func TestNormalizeOrigin(t *testing.T) {
	for in, want := range map[string]string{
		"https://meet.example.org":       "https://meet.example.org",
		"HTTPS://Meet.Example.ORG:443":   "https://meet.example.org",
		"http://localhost:80":            "http://localhost",
		"https://localhost:8443":         "https://localhost:8443",
		"https://[::1]:8443":             "https://[::1]:8443",
		"null":                           "",
		"*":                              "",
		"https://meet.example.org/":      "",
		"https://meet.example.org/path":  "",
		"https://a@meet.example.org":     "",
		"wss://meet.example.org":         "",
		"https://meet.example.org:0":     "",
		"https://meet.example.org:08443": "",
		"https://meet.example.org?":      "",
		"https://":                       "",
	} {
		got, ok := NormalizeOrigin(in)
		if got != want || ok != (want != "") {
			t.Errorf("NormalizeOrigin(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

func TestMediaAndSocketOptions(t *testing.T) {
	load := func(args ...string) (*Config, error) {
		return Load("serve", args, func(string) string { return "" }, io.Discard)
	}
	c, err := load()
	if err != nil {
		t.Fatal(err)
	}
	if c.MediaUDPPort != 8443 || c.MediaTCPPort != 8444 || c.MediaListenAddr() != "127.0.0.1" ||
		c.WSMaxPerUser != 8 || c.WSMaxPerIP != 32 || !slices.Equal(c.WSOrigins(), []string{"https://localhost:8443"}) {
		t.Errorf("defaults: %+v origins %v", c, c.WSOrigins())
	}
	c, err = load("--listen", ":8443", "--media-tcp-port", "-1", "--media-public-ips", "203.0.113.7, 2001:db8::1",
		"--media-allowed-remote", "10.0.0.0/8,192.168.1.10", "--media-interfaces", "eth0,lo",
		"--ws-allowed-origins", "https://Meet.Example.org:443,https://meet.example.org")
	if err != nil {
		t.Fatal(err)
	}
	if c.MediaListenAddr() != "0.0.0.0" || c.MediaTCPPort != -1 || len(c.MediaPublicIPs) != 2 ||
		len(c.MediaAllowedRemote) != 2 || c.MediaAllowedRemote[1].String() != "192.168.1.10/32" ||
		!slices.Equal(c.MediaInterfaces, []string{"eth0", "lo"}) ||
		!slices.Equal(c.WSOrigins(), []string{"https://localhost:8443", "https://meet.example.org"}) {
		t.Errorf("parsed: %+v origins %v", c, c.WSOrigins())
	}
	if c, _ := load("--media-listen-ip", "::ffff:192.0.2.1"); c.MediaListenAddr() != "192.0.2.1" {
		t.Errorf("mapped listen IP: %s", c.MediaListenAddr())
	}
	for _, bad := range [][]string{
		{"--media-udp-port", "70000"}, {"--media-tcp-port", "-2"}, {"--media-listen-ip", "example.org"},
		{"--media-public-ips", "0.0.0.0"}, {"--media-public-ips", "host"}, {"--media-interfaces", "eth0;rm"},
		{"--media-allowed-remote", "10.0.0.0/33"}, {"--ws-allowed-origins", "null"},
		{"--ws-allowed-origins", "https://x.example/path"}, {"--ws-max-per-user", "0"}, {"--ws-max-per-ip", "-1"},
	} {
		if _, err := load(bad...); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

package sfu

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

func TestRemotePolicy(t *testing.T) {
	strict := remotePolicy{}
	tests := loopbackOnly
	for _, c := range []struct {
		addr         string
		strict, test bool
	}{
		{"8.8.8.8", true, true},
		{"203.0.113.9", true, true},
		{"2001:4860:4860::8888", true, true},
		{"64:ff9b::808:808", true, true}, // NAT64 of 8.8.8.8
		{"127.0.0.1", false, true},
		{"127.9.9.9", false, true},
		{"::1", false, false},
		{"10.0.0.1", false, false},
		{"172.16.5.4", false, false},
		{"192.168.1.1", false, false},
		{"169.254.169.254", false, false}, // cloud metadata
		{"169.254.1.1", false, false},
		{"100.64.1.1", false, false}, // CGNAT
		{"0.0.0.0", false, false},
		{"0.1.2.3", false, false},
		{"::", false, false},
		{"224.0.0.251", false, false},
		{"255.255.255.255", false, false},
		{"240.0.0.1", false, false},
		{"fe80::1", false, false},
		{"fd00:ec2::254", false, false},
		{"ff02::1", false, false},
		{"::ffff:10.0.0.1", false, false},
		{"::ffff:127.0.0.1", false, true},
		{"64:ff9b::a00:1", false, false}, // NAT64 of 10.0.0.1
	} {
		a := netip.MustParseAddr(c.addr)
		if got := strict.allow(a); got != c.strict {
			t.Errorf("%s: allowed %v with no exceptions, want %v", c.addr, got, c.strict)
		}
		if got := (remotePolicy{allowed: tests}).allow(a); got != c.test {
			t.Errorf("%s: allowed %v with 127.0.0.0/8, want %v", c.addr, got, c.test)
		}
	}
	for cand, want := range map[string]bool{
		"candidate:1 1 udp 2130706431 8.8.8.8 5000 typ host":                                 true,
		"a=candidate:1 1 udp 2130706431 8.8.8.8 5000 typ host":                               true,
		"candidate:1 1 udp 2130706431 10.0.0.1 5000 typ host":                                false,
		"candidate:1 1 udp 1 8.8.8.8 5000 typ srflx raddr 10.0.0.1 rport 1":                  true,
		"candidate:1 1 tcp 1 192.168.1.1 9 typ host tcptype active":                          false,
		"candidate:1 1 udp 2130706431 2b3c1f6e-1d2a-4a7e-9d1e-3f1d2c3b4a5e.local 5 typ host": false,
		"candidate:1 1 udp 2130706431 example.com 5000 typ host":                             false,
		"candidate:garbage": false,
		"":                  false,
	} {
		if got := strict.candidateAllowed(cand); got != want {
			t.Errorf("%q: %v, want %v", cand, got, want)
		}
	}
}

// Trickled candidates at refused addresses are dropped silently and
// counted; loopback is allowed in tests.
func TestAddCandidatePolicy(t *testing.T) {
	s := newTestSFU(t)
	room := s.NewRoom("policy")
	c := newClient(t, room, "c", publishAll)
	defer c.close()
	c.publishAudio("mic", 20*time.Millisecond)
	c.connect()
	for _, a := range []string{"10.0.0.1", "169.254.169.254", "192.168.1.1"} {
		err := c.p.AddCandidate(webrtc.ICECandidateInit{Candidate: "candidate:1 1 udp 2130706431 " + a + " 5000 typ host"})
		if err != nil {
			t.Errorf("%s: %v, want a silent drop", a, err)
		}
	}
	if err := c.p.AddCandidate(webrtc.ICECandidateInit{Candidate: "candidate:7 1 udp 2130706431 127.0.0.1 5999 typ host"}); err != nil {
		t.Errorf("loopback candidate: %v", err)
	}
	if err := c.p.AddCandidate(webrtc.ICECandidateInit{Candidate: "candidate:" + strings.Repeat("x", 600)}); err == nil {
		t.Errorf("an oversized candidate was accepted")
	}
	if err := c.p.AddCandidate(webrtc.ICECandidateInit{}); err != nil {
		t.Errorf("end of candidates: %v", err)
	}
	var refused uint64
	for _, ps := range room.Stats() {
		refused = ps.RefusedCandidates
	}
	if refused != 3 {
		t.Errorf("refused %d candidates, want 3", refused)
	}
}

// The announced address is the public one (1:1 NAT), and ICE-TCP works on
// its own port.
func TestPublicIPsAndICETCP(t *testing.T) {
	s, err := New(Config{ListenIP: "127.0.0.1", TCPPort: 0, PublicIPs: []string{"203.0.113.7"}, AllowedRemote: loopbackOnly, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := newClient(t, s.NewRoom("nat"), "c", publishAll)
	defer c.close()
	c.publishAudio("mic", 20*time.Millisecond)
	c.connect()
	cands := lines(c.pc.RemoteDescription().SDP, "a=candidate:")
	if len(cands) == 0 {
		t.Fatal("no candidates in the answer")
	}
	var udp, tcp bool
	for _, l := range cands {
		if !strings.Contains(l, " 203.0.113.7 ") {
			t.Errorf("candidate does not announce the public IP: %s", l)
		}
		udp = udp || strings.Contains(strings.ToLower(l), " udp ")
		tcp = tcp || strings.Contains(strings.ToLower(l), " tcp ")
	}
	if !udp || !tcp {
		t.Errorf("want UDP and TCP candidates: %v", cands)
	}

	// Without the rewrite, a client that only speaks ICE-TCP connects.
	s2, err := New(Config{ListenIP: "127.0.0.1", TCPPort: 0, AllowedRemote: loopbackOnly, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	room := s2.NewRoom("tcp")
	a := newClientAPI(t, room, "a", publishAll, clientAPI(t, true))
	defer a.close()
	b := newClient(t, room, "b", publishAll)
	defer b.close()
	a.publishAudio("a-mic", 20*time.Millisecond)
	a.connect()
	b.connect()
	eventually(t, 10*time.Second, func() bool { return b.packetsOf("a-mic") > 5 }, "media over ICE-TCP")
	for _, ps := range room.Stats() {
		if ps.ID == "a" && ps.Transport != "tcp" {
			t.Errorf("a's transport %q, want tcp", ps.Transport)
		}
	}
}

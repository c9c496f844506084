package sfu

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// validOffer returns a real client offer: one audio and one video track.
func validOffer(t *testing.T) string {
	t.Helper()
	pc, err := clientAPI(t, false).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendrecv}); err != nil {
			t.Fatal(err)
		}
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	return offer.SDP
}

func withoutLines(sdp, prefix string) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(sdp, "\n") {
		if !strings.HasPrefix(l, prefix) {
			b.WriteString(l)
		}
	}
	return b.String()
}

func repeatSection(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:x%d\r\na=ice-ufrag:u\r\na=ice-pwd:p\r\na=rtpmap:111 opus/48000/2\r\n", i)
	}
	return b.String()
}

func candidates(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "a=candidate:%d 1 udp 2130706431 127.0.0.1 %d typ host\r\n", i, 10000+i)
	}
	return b.String()
}

// Refused SDP never reaches Pion: ErrBadSDP, no goroutine started, the
// session unchanged.
func TestBadSDPRefused(t *testing.T) {
	s := newTestSFU(t)
	room := s.NewRoom("sdp")
	c := newClient(t, room, "c", publishAll)
	defer c.close()
	good := validOffer(t)
	if _, _, err := checkSDP(good, limitsFor(0), s.policy); err != nil {
		t.Fatalf("a real offer is refused: %v", err)
	}
	cases := map[string]string{
		"over 64 KiB":             good + strings.Repeat("a=x-filler:"+strings.Repeat("z", 200)+"\r\n", 400),
		"17 m-lines":              good + repeatSection(15),
		"thousands of m-lines":    good + repeatSection(3000),
		"65 candidates":           strings.Replace(good, "a=mid:0\r\n", "a=mid:0\r\n"+candidates(65), 1),
		"thousands of candidates": strings.Replace(good, "a=mid:0\r\n", "a=mid:0\r\n"+candidates(3000), 1),
		"no fingerprint":          withoutLines(good, "a=fingerprint:"),
		"SDES a=crypto":           strings.Replace(good, "a=mid:0\r\n", "a=mid:0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n", 1),
		"RTP/AVP":                 strings.Replace(good, "UDP/TLS/RTP/SAVPF", "RTP/AVP", 1),
		"TCP/DTLS/SCTP":           good + "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:9\r\n",
		"no m-line":               good[:strings.Index(good, "m=")],
		"no mid":                  withoutLines(good, "a=mid:"),
		"no ICE credentials":      withoutLines(good, "a=ice-pwd:"),
		"NUL byte":                strings.Replace(good, "s=-", "s=\x00", 1),
		"not SDP":                 "GET / HTTP/1.1\r\n\r\n",
		"empty":                   "",
	}
	before := runtime.NumGoroutine()
	for name, sdp := range cases {
		if _, err := c.p.HandleOffer(sdp, nil); !errors.Is(err, ErrBadSDP) {
			t.Errorf("%s: HandleOffer error %v, want ErrBadSDP", name, err)
		}
		if err := c.p.HandleAnswer(sdp); !errors.Is(err, ErrBadSDP) {
			t.Errorf("%s: HandleAnswer error %v, want ErrBadSDP", name, err)
		}
	}
	time.Sleep(50 * time.Millisecond)
	if after := runtime.NumGoroutine(); after > before {
		t.Errorf("refusing SDP started goroutines: %d → %d", before, after)
	}
	if st := c.p.pc.SignalingState(); st != webrtc.SignalingStateStable || c.p.pc.RemoteDescription() != nil {
		t.Errorf("refused SDP changed the session: %s", st)
	}
	// The participant still works.
	c.publishAudio("mic", 20*time.Millisecond)
	c.connect()
}

// Candidates the policy refuses are removed from the SDP and counted.
func TestSDPCandidatesFiltered(t *testing.T) {
	good := validOffer(t)
	var add strings.Builder
	for i, a := range []string{"10.0.0.1", "169.254.169.254", "192.168.1.1", "abcd-1234.local", "127.0.0.1", "8.8.8.8"} {
		fmt.Fprintf(&add, "a=candidate:%d 1 udp 2130706431 %s 5000 typ host\r\n", i, a)
	}
	add.WriteString("a=candidate:9 1 udp garbage\r\n")
	sdp := strings.Replace(good, "a=mid:0\r\n", "a=mid:0\r\n"+add.String(), 1)
	out, refused, err := checkSDP(sdp, limitsFor(0), remotePolicy{allowed: loopbackOnly})
	if err != nil {
		t.Fatal(err)
	}
	if refused != 5 {
		t.Errorf("refused %d candidates, want 5", refused)
	}
	got := lines(out, "a=candidate:")
	if len(got) != 2 || !strings.Contains(got[0], "127.0.0.1") || !strings.Contains(got[1], "8.8.8.8") {
		t.Errorf("kept %v", got)
	}
	if len(out) != len(sdp)-len(add.String())+len(got[0])+len(got[1])+4 {
		t.Errorf("other lines changed")
	}
}

// The m-line limit follows the m-lines the server owns: a valid answer
// repeats them.
func TestSDPLimitsGrowWithServerMLines(t *testing.T) {
	good := validOffer(t)
	sdp := good + repeatSection(20) // 22 m-lines
	if _, _, err := checkSDP(sdp, limitsFor(0), remotePolicy{}); !errors.Is(err, ErrBadSDP) {
		t.Errorf("22 m-lines accepted without server m-lines")
	}
	if _, _, err := checkSDP(sdp, limitsFor(18), remotePolicy{}); err != nil {
		t.Errorf("22 m-lines refused with 18 server m-lines: %v", err)
	}
}

func FuzzCheckSDP(f *testing.F) {
	f.Add("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=fingerprint:sha-256 AA\r\na=ice-ufrag:x\r\na=ice-pwd:y\r\na=candidate:1 1 udp 1 10.0.0.1 1 typ host\r\n")
	f.Fuzz(func(t *testing.T, sdp string) {
		out, _, err := checkSDP(sdp, limitsFor(0), remotePolicy{})
		if err == nil && len(out) > len(sdp) {
			t.Errorf("output grew")
		}
	})
}

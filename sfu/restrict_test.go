package sfu

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

var e2eeTestCodecs = []string{webrtc.MimeTypeVP8, webrtc.MimeTypeVP9, webrtc.MimeTypeOpus}

// chromeLikeOffer has the codec lines a Chromium offer carries.
const chromeLikeOffer = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1 2\r\n" +
	"m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 13 126\r\na=mid:0\r\na=sendrecv\r\n" +
	"a=rtpmap:111 opus/48000/2\r\na=rtcp-fb:111 transport-cc\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n" +
	"a=rtpmap:63 red/48000/2\r\na=fmtp:63 111/111\r\na=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU/8000\r\n" +
	"a=rtpmap:13 CN/8000\r\na=rtpmap:126 telephone-event/8000\r\n" +
	"m=video 9 UDP/TLS/RTP/SAVPF 96 97 98 99 102 103 45 46\r\na=mid:1\r\na=sendonly\r\n" +
	"a=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 nack pli\r\na=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n" +
	"a=rtpmap:98 VP9/90000\r\na=fmtp:98 profile-id=0\r\na=rtpmap:99 rtx/90000\r\na=fmtp:99 apt=98\r\n" +
	"a=rtpmap:102 H264/90000\r\na=rtcp-fb:102 nack\r\na=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f\r\n" +
	"a=rtpmap:103 rtx/90000\r\na=fmtp:103 apt=102\r\na=rtpmap:45 AV1/90000\r\na=rtpmap:46 rtx/90000\r\na=fmtp:46 apt=45\r\n" +
	"a=rtcp-fb:* ccm fir\r\na=ssrc-group:FID 1 2\r\n" +
	"m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:2\r\na=sctp-port:5000\r\n"

func TestRestrictSDP(t *testing.T) {
	got, err := restrictSDP(chromeLikeOffer, e2eeTestCodecs)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n", "a=rtpmap:111 opus/48000/2\r\n", "a=fmtp:111 minptime=10;useinbandfec=1\r\n",
		"m=video 9 UDP/TLS/RTP/SAVPF 96 97 98 99\r\n", "a=fmtp:97 apt=96\r\n", "a=fmtp:99 apt=98\r\n", "a=rtcp-fb:96 nack pli\r\n",
		"a=rtcp-fb:* ccm fir\r\n", "a=ssrc-group:FID 1 2\r\n", "a=mid:1\r\n", "a=sendonly\r\n",
		"m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:2\r\na=sctp-port:5000\r\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the restricted offer lacks %q:\n%s", want, got)
		}
	}
	for _, gone := range []string{"H264", "AV1", "red/", "G722", "PCMU", "CN/", "telephone-event", ":102 ", ":103 ", ":46 ", ":63 "} {
		if strings.Contains(got, gone) {
			t.Errorf("the restricted offer still has %q:\n%s", gone, got)
		}
	}
	if !strings.HasPrefix(got, "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n") || strings.Contains(strings.ReplaceAll(got, "\r\n", ""), "\n") {
		t.Errorf("the session part or the line ends changed:\n%s", got)
	}

	// A section in use that keeps no codec is refused; a rejected one stays.
	h264Only := "v=0\r\ns=-\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\na=mid:0\r\na=rtpmap:102 H264/90000\r\n"
	if _, err := restrictSDP(h264Only, e2eeTestCodecs); !errors.Is(err, ErrBadSDP) {
		t.Errorf("an H.264-only video section: %v, want ErrBadSDP", err)
	}
	rejected := strings.Replace(h264Only, "m=video 9 ", "m=video 0 ", 1)
	if got, err := restrictSDP(rejected, e2eeTestCodecs); err != nil || got != rejected {
		t.Errorf("a rejected section: %q, %v; want it unchanged", got, err)
	}
	// Without a restriction nothing is touched (the hook is not called).
	if codecs := (&Room{}).allowedCodecs(); codecs != nil {
		t.Errorf("a new room restricts codecs to %v", codecs)
	}
}

// TestRestrictedRoom: in a room restricted to VP8, VP9 and Opus, a client
// whose engine also has H.264 gets an answer without it, the server's
// later offers to a subscriber carry none either, and VP8 still flows; a
// client that can only send H.264 video is refused.
func TestRestrictedRoom(t *testing.T) {
	s := newTestSFU(t)
	room := s.NewRoom("sealed")
	room.RestrictCodecs(e2eeTestCodecs...)

	pub := newClient(t, room, "pub", Publish{Audio: true, Video: true})
	defer pub.close()
	pub.publishVideo("cam", "camera", 20*time.Millisecond)
	pub.publishAudio("mic", 20*time.Millisecond)
	pub.connect()
	answer := pub.pc.RemoteDescription().SDP
	if strings.Contains(answer, "H264") || !strings.Contains(answer, "VP8/90000") || !strings.Contains(answer, "opus/48000") {
		t.Errorf("the answer in a restricted room:\n%s", answer)
	}

	sub := newClient(t, room, "sub", Publish{})
	defer sub.close()
	sub.connect()
	eventually(t, 10*time.Second, func() bool { return sub.packetsOf("cam") > 20 }, "the subscriber receives the VP8 camera")
	if offer := sub.pc.RemoteDescription().SDP; strings.Contains(offer, "H264") {
		t.Errorf("a server offer in a restricted room carries H.264:\n%s", offer)
	}

	// A client that can send video only as H.264.
	m := &webrtc.MediaEngine{}
	if err := m.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
			SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"},
		PayloadType: 102,
	}, webrtc.RTPCodecTypeVideo); err != nil {
		t.Fatal(err)
	}
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(m)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000}, "h264", "s")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.AddTrack(track); err != nil {
		t.Fatal(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	h264 := newClient(t, room, "h264", Publish{Video: true})
	defer h264.close()
	if _, err := h264.p.HandleOffer(pc.LocalDescription().SDP, nil); !errors.Is(err, ErrBadSDP) {
		t.Errorf("an H.264-only offer in a restricted room: %v, want ErrBadSDP", err)
	}
}

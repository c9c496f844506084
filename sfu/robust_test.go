package sfu

import (
	"encoding/binary"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// rawTrack is a TrackLocal that writes whatever RTP header it is given
// (any payload type, padding, CSRCs): a misbehaving publisher.
type rawTrack struct {
	mu     sync.Mutex
	writer webrtc.TrackLocalWriter
	ssrc   uint32
}

func (r *rawTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writer, r.ssrc = ctx.WriteStream(), uint32(ctx.SSRC())
	return ctx.CodecParameters()[0], nil
}

func (r *rawTrack) Unbind(webrtc.TrackLocalContext) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writer = nil
	return nil
}

func (r *rawTrack) ID() string                { return "raw" }
func (r *rawTrack) RID() string               { return "" }
func (r *rawTrack) StreamID() string          { return "raw-stream" }
func (r *rawTrack) Kind() webrtc.RTPCodecType { return webrtc.RTPCodecTypeVideo }

func (r *rawTrack) write(h rtp.Header, payload []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.writer == nil {
		return
	}
	h.Version, h.SSRC = 2, r.ssrc
	_, _ = r.writer.WriteRTP(&h, payload)
}

// Random UDP to the media port and malformed RTP/RTCP from a connected
// peer crash nothing, and other media keeps flowing (catalog case 33).
func TestGarbageDoesNotStopMedia(t *testing.T) {
	s := newTestSFU(t)
	room := s.NewRoom("garbage")
	good := newClient(t, room, "good", publishAll)
	defer good.close()
	bad := newClient(t, room, "bad", publishAll)
	defer bad.close()
	watcher := newClient(t, room, "watcher", publishAll)
	defer watcher.close()
	good.publishVideo("good-cam", "camera", 20*time.Millisecond)
	good.publishAudio("good-mic", 20*time.Millisecond)
	raw := &rawTrack{}
	if _, err := bad.pc.AddTrack(raw); err != nil {
		t.Fatal(err)
	}
	bad.publishAudio("bad-mic", 20*time.Millisecond)
	for _, c := range []*client{good, bad, watcher} {
		c.connect()
	}
	eventually(t, 10*time.Second, func() bool {
		return watcher.packetsOf("good-cam") > 10 && watcher.packetsOf("bad-mic") > 10
	}, "media flows")
	// The raw track starts well: it is published and forwarded.
	seq := uint16(0)
	eventually(t, 10*time.Second, func() bool {
		seq++
		raw.write(rtp.Header{PayloadType: 96, SequenceNumber: seq, Timestamp: uint32(seq) * 3000}, vp8TestPayload(true, 640, seq, 10, 9))
		return watcher.packetsOf("raw") > 0
	}, "the raw track is forwarded")

	// Random datagrams, some shaped like STUN, DTLS and RTP, from loopback.
	conn, err := net.DialUDP("udp", nil, s.UDPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := rand.New(rand.NewPCG(3, 4))
	buf := make([]byte, 1500)
	for i := 0; i < 3000; i++ {
		n := r.IntN(len(buf))
		for j := 0; j < n; j++ {
			buf[j] = byte(r.Uint32())
		}
		if n >= 20 {
			switch i % 4 {
			case 0: // STUN binding request with a random username
				buf[0], buf[1] = 0, 1
				binary.BigEndian.PutUint32(buf[4:], 0x2112A442)
			case 1: // DTLS record
				buf[0] = 22
			case 2: // RTP
				buf[0] = 0x80
			}
		}
		_, _ = conn.Write(buf[:n])
	}

	// Malformed RTP from a connected peer: unknown payload types, bogus
	// padding, truncated VP8, CSRC lists, padding only, empty payloads.
	for i := 0; i < 500; i++ {
		p := make([]byte, r.IntN(60))
		for j := range p {
			p[j] = byte(r.Uint32())
		}
		seq++
		h := rtp.Header{PayloadType: 96, SequenceNumber: seq, Timestamp: uint32(seq) * 3000}
		switch i % 6 {
		case 0:
			h.PayloadType = uint8(r.IntN(128))
		case 1:
			h.Padding, h.PaddingSize = true, byte(r.IntN(256))
		case 2:
			p = []byte{0x90}
		case 3:
			h.CSRC = []uint32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}
		case 4:
			h.Padding, h.PaddingSize, p = true, 200, nil
		case 5:
			p = nil
		}
		raw.write(h, p)
	}
	// Malformed RTCP: truncated and lying feedback, unknown types.
	garbageRTCP := [][]byte{
		{0x81, 205, 0x00, 0x10, 0, 0, 0, 1, 0, 0, 0, 2},                                          // NACK claiming 68 bytes
		{0x81, 206, 0x00, 0x01, 0, 0, 0, 1},                                                      // PLI without media SSRC
		{0x8f, 206, 0x00, 0x04, 0, 0, 0, 1, 0, 0, 0, 0, 'R', 'E', 'M', 'B', 1, 0xff, 0xff, 0xff}, // REMB, huge exponent
		{0x9f, 201, 0x00, 0x01, 0, 0, 0, 1},                                                      // RR claiming 31 blocks
		{0x80, 210, 0x00, 0x01, 0, 0, 0, 1},                                                      // unknown type
	}
	for i := 0; i < 50; i++ {
		for _, g := range garbageRTCP {
			_ = bad.pc.WriteRTCP([]rtcp.Packet{rawRTCP(g)})
		}
		_ = watcher.pc.WriteRTCP([]rtcp.Packet{rawRTCP(garbageRTCP[i%len(garbageRTCP)])})
	}

	// Everyone's media keeps flowing, the misbehaving publisher's good track
	// too.
	for _, id := range []string{"good-cam", "good-mic", "bad-mic"} {
		from := watcher.packetsOf(id)
		if !growsWithin(watcher, id, from, 3*time.Second) {
			t.Errorf("%s stopped after the garbage", id)
		}
	}
	if from := bad.packetsOf("good-cam"); !growsWithin(bad, "good-cam", from, 3*time.Second) {
		t.Errorf("the misbehaving peer stopped receiving")
	}
	var badPackets uint64
	for _, ps := range room.Stats() {
		for _, ts := range ps.Published {
			badPackets += ts.BadPackets
		}
	}
	if badPackets == 0 {
		t.Errorf("no malformed packet was counted")
	}
}

func rawRTCP(b []byte) *rtcp.RawPacket {
	p := rtcp.RawPacket(b)
	return &p
}

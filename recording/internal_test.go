package recording

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/at-wat/ebml-go/mkvcore"
	"github.com/at-wat/ebml-go/webm"
)

type bitWriter struct {
	b []byte
	n int
}

func (w *bitWriter) put(v uint32, bits int) {
	for i := bits - 1; i >= 0; i-- {
		if w.n%8 == 0 {
			w.b = append(w.b, 0)
		}
		w.b[len(w.b)-1] |= byte(v>>i&1) << (7 - w.n%8)
		w.n++
	}
}

func TestVP9Frame(t *testing.T) {
	key := func(profile uint32, w, h uint32) []byte {
		bw := &bitWriter{}
		bw.put(2, 2)
		bw.put(profile&1, 1)
		bw.put(profile>>1, 1)
		if profile == 3 {
			bw.put(0, 1)
		}
		bw.put(0, 1) // show_existing_frame
		bw.put(0, 1) // key frame
		bw.put(1, 1) // show_frame
		bw.put(0, 1) // error_resilient_mode
		bw.put(0x498342, 24)
		if profile >= 2 {
			bw.put(0, 1)
		}
		bw.put(1, 3) // BT.601
		bw.put(0, 1) // color range
		if profile == 1 || profile == 3 {
			bw.put(0, 3)
		}
		bw.put(w-1, 16)
		bw.put(h-1, 16)
		return append(bw.b, 0xaa, 0xbb)
	}
	for profile := uint32(0); profile < 4; profile++ {
		k, w, h := vp9Frame(key(profile, 1280, 720))
		if !k || w != 1280 || h != 720 {
			t.Errorf("profile %d keyframe: %v %dx%d", profile, k, w, h)
		}
	}
	inter := &bitWriter{}
	inter.put(2, 2)
	inter.put(0, 2)
	inter.put(0, 1)
	inter.put(1, 1) // non-key
	if k, _, _ := vp9Frame(append(inter.b, 0, 0, 0)); k {
		t.Error("an interframe taken for a keyframe")
	}
	if k, _, _ := vp9Frame([]byte{0x00}); k {
		t.Error("garbage taken for a keyframe")
	}
}

func TestVP8FrameAndPictureIDs(t *testing.T) {
	b := []byte{0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a}
	b = binary.LittleEndian.AppendUint16(b, 640|0x4000) // scale bits are not size
	b = binary.LittleEndian.AppendUint16(b, 360)
	if k, w, h := vp8Frame(b); !k || w != 640 || h != 360 {
		t.Errorf("keyframe: %v %dx%d", k, w, h)
	}
	if k, _, _ := vp8Frame([]byte{0x11, 0, 0}); k {
		t.Error("an interframe taken for a keyframe")
	}
	for _, c := range []struct {
		a, b uint16
		ok   bool
	}{{5, 6, true}, {5, 7, false}, {0x7fff, 0, true}, {127, 0, true}, {127, 128, true}, {6, 6, false}, {300, 302, false}} {
		if got := pidFollows(c.a, c.b); got != c.ok {
			t.Errorf("pidFollows(%d, %d) = %v", c.a, c.b, got)
		}
	}
}

func TestNames(t *testing.T) {
	for in, want := range map[string]string{
		"Zoë Lee-Smith":        "Zoe_Lee-Smith",
		`"; filename=evil.exe`: "filename_evil_exe",
		"../../etc/passwd":     "etc_passwd",
		"李雷":                   "",
		"Ånna\r\nX-Header: 1":  "Anna_X-Header_1",
		"a very long name indeed that goes on and on": "a_very_long_name_indeed_that_goes_on_and",
	} {
		if got := safeName(in); got != want {
			t.Errorf("safeName(%q) = %q, want %q", in, got, want)
		}
	}
	if got := unsupportedNote("video/H264"); got != "H.264 is not recordable: Parley records VP8, VP9 and Opus" {
		t.Errorf("note = %q", got)
	}
	if h := opusHead(1); !bytes.Equal(h, []byte("OpusHead\x01\x01\x00\x00\x80\xbb\x00\x00\x00\x00\x00")) {
		t.Errorf("OpusHead = %x", h)
	}
}

// The scanner follows a live WebM to its end, and to the last complete
// element of a truncated one.
func TestScanWebM(t *testing.T) {
	var buf bytes.Buffer
	wc := &nopCloser{Buffer: &buf}
	info := &segmentInfo{TimecodeScale: 1_000_000, MuxingApp: "t", WritingApp: "t", DateUTC: time.Unix(0, 0), Void: make([]byte, durationReserve)}
	ws, err := webm.NewSimpleBlockWriter(wc, []webm.TrackEntry{{TrackNumber: 1, TrackUID: 1, CodecID: "A_OPUS", TrackType: 2,
		Audio: &webm.Audio{SamplingFrequency: 48000, Channels: 2}}}, mkvcore.WithSegmentInfo(info), mkvcore.WithBlockInterceptor(nil), mkvcore.WithMinMaxClusterDuration(1, clusterMax, clusterMax))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		ws[0].Write(true, int64(i*20), bytes.Repeat([]byte{byte(i)}, 100))
	}
	ws[0].Close()
	full := buf.Bytes()
	res, err := scanWebM(bytes.NewReader(full))
	if err != nil || res.blocks != 300 || res.firstMS != 0 || res.lastMS != 5980 || res.goodEnd != int64(len(full)) || res.durationAt < 0 {
		t.Fatalf("scan = %+v, %v (len %d)", res, err, len(full))
	}
	if full[res.durationAt] != 0xEC || full[res.durationAt+1] != 0x80|durationReserve {
		t.Errorf("durationAt does not point at the Void")
	}
	cut, err := scanWebM(bytes.NewReader(full[:len(full)/2]))
	if err != nil || cut.goodEnd <= res.headerEnd || cut.goodEnd > int64(len(full)/2) || cut.blocks >= 300 {
		t.Fatalf("truncated scan = %+v, %v", cut, err)
	}
	// The prefix up to goodEnd scans as whole.
	again, err := scanWebM(bytes.NewReader(full[:cut.goodEnd]))
	if err != nil || again.goodEnd != cut.goodEnd || again.blocks != cut.blocks {
		t.Errorf("prefix scan = %+v, %v; want %+v", again, err, cut)
	}
	if head, _ := scanWebM(bytes.NewReader(full[:res.headerEnd-1])); head.headerEnd != 0 || head.goodEnd != 0 {
		t.Errorf("a header cut short: %+v", head)
	}
	if _, err := scanWebM(bytes.NewReader([]byte{0x00, 0x01, 0x02})); err == nil {
		t.Error("garbage scanned without an error")
	}
}

type nopCloser struct{ *bytes.Buffer }

func (nopCloser) Close() error { return nil }

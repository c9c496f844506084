package recording_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/parley-meet/parley/recording"
	"github.com/parley-meet/parley/sfu"
	"github.com/parley-meet/parley/store"
)

var fileNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{22}\.webm\.age$`)

// A recording made through the tap's interface: a file per participant,
// named at random, 0600, encrypted (no pattern on disk), whose WebM holds
// the frames; Media serves the plaintext at any offset, with a duration.
func TestRecordFileAndReadAt(t *testing.T) {
	e := newEnv(t)
	m := e.manager()
	rec := recordFake(t, m, "room1", 2*time.Second, 3000, false)
	if rec.Status != recording.StatusComplete || rec.EndedAt.IsZero() || len(rec.Tracks) != 1 {
		t.Fatalf("stopped recording = %+v", rec)
	}
	tr := rec.Tracks[0]
	if tr.Kind != recording.KindAV || tr.Status != recording.StatusComplete || tr.ParticipantName != "Zoë Lee-Smith" ||
		len(tr.Codecs) != 2 || tr.Codecs[0] != webrtc_VP8 || tr.Codecs[1] != webrtc_Opus || tr.Size < 100_000 {
		t.Errorf("track = %+v", tr)
	}
	if len(rec.Participants) != 1 || rec.Participants[0] != "Zoë Lee-Smith" {
		t.Errorf("participants = %v", rec.Participants)
	}
	if fi, err := os.Stat(e.dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("recordings directory: %v, %v", fi.Mode(), err)
	}
	path := e.trackFile(rec.ID, tr.ID)
	if !fileNameRE.MatchString(filepath.Base(path)) {
		t.Errorf("file name %q is not a random id", filepath.Base(path))
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("file mode: %v, %v", fi.Mode(), err)
	}
	raw, _ := os.ReadFile(path)
	if bytes.Contains(raw, anyPattern) {
		t.Error("the file on disk holds plaintext media")
	}
	plain, err := decryptFile(t, path, e.id)
	if err != nil {
		t.Fatalf("age -d: %v", err)
	}
	if int64(len(plain)) != tr.Size {
		t.Errorf("catalog size %d, plaintext %d", tr.Size, len(plain))
	}

	md, err := m.Open(context.Background(), rec.ID, tr.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer md.Close()
	if md.Size != int64(len(plain)) || md.ContentType != "video/webm" || md.Incomplete {
		t.Errorf("media = size %d type %s incomplete %v", md.Size, md.ContentType, md.Incomplete)
	}
	if ok, _ := regexp.MatchString(`^parley-\d{4}-\d\d-\d\d-\d{4}-Zoe_Lee-Smith-camera\.webm$`, md.FileName); !ok {
		t.Errorf("file name = %q", md.FileName)
	}
	served := readAll(t, md)
	p, blocks := parseWebM(t, served)
	// The served file is the plaintext with the duration in its header.
	if diff := diffRanges(served, plain); len(diff) == 0 || diff[len(diff)-1][1]-diff[0][0] > 11 {
		t.Errorf("served and decrypted differ in %v (want 11 bytes or less: the duration)", diff)
	}
	if d := p.Segment.Info.Duration; d < 1800 || d > 2100 {
		t.Errorf("Duration = %v ms, want about 2000", d)
	}
	if len(p.Segment.Tracks.TrackEntry) != 2 {
		t.Fatalf("tracks = %+v", p.Segment.Tracks.TrackEntry)
	}
	v, a := p.Segment.Tracks.TrackEntry[0], p.Segment.Tracks.TrackEntry[1]
	if v.CodecID != "V_VP8" || v.Video == nil || v.Video.PixelWidth != 320 || v.Video.PixelHeight != 240 {
		t.Errorf("video track = %+v", v)
	}
	if a.CodecID != "A_OPUS" || !bytes.HasPrefix(a.CodecPrivate, []byte("OpusHead\x01\x02")) || a.Audio == nil || a.Audio.SamplingFrequency != 48000 {
		t.Errorf("audio track = %+v", a)
	}
	var nv, na int
	var lastMS int64 = -1
	for _, b := range blocks {
		if b.ms < lastMS {
			t.Fatalf("block at %d ms after one at %d", b.ms, lastMS)
		}
		lastMS = b.ms
		switch b.track {
		case v.TrackNumber:
			if nv == 0 && (!b.key || b.data[0]&1 != 0) {
				t.Error("the first video frame is not a keyframe")
			}
			if !bytes.Equal(b.data, vp8Frame(b.data[0]&1 == 0, 3000)) {
				t.Fatalf("video frame %d differs from what was sent", nv)
			}
			nv++
		case a.TrackNumber:
			if !bytes.Equal(b.data, opusFrame(na)) {
				t.Fatalf("audio frame %d differs from what was sent", na)
			}
			na++
		}
	}
	if nv < 48 || na < 98 {
		t.Errorf("%d video and %d audio frames, want 50 and 100", nv, na)
	}

	// ReadAt at random ranges matches the plaintext (the duration aside).
	patched := append([]byte(nil), served...)
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		off := rng.Int64N(md.Size)
		n := rng.IntN(200_000)
		buf := make([]byte, n)
		got, err := md.ReadAt(buf, off)
		want := patched[off:min(off+int64(n), md.Size)]
		if got != len(want) || !bytes.Equal(buf[:got], want) {
			t.Fatalf("ReadAt(%d, %d) = %d bytes, %v; mismatch", n, off, got, err)
		}
		if off+int64(n) > md.Size && !errors.Is(err, io.EOF) {
			t.Fatalf("ReadAt past the end: err = %v", err)
		}
	}
	if _, err := md.ReadAt(make([]byte, 1), md.Size); !errors.Is(err, io.EOF) {
		t.Errorf("ReadAt at the end: %v", err)
	}
}

const (
	webrtc_VP8  = "video/VP8"
	webrtc_Opus = "audio/opus"
)

// diffRanges lists the [start, end) ranges where a and b differ.
func diffRanges(a, b []byte) [][2]int {
	var out [][2]int
	for i := 0; i < min(len(a), len(b)); i++ {
		if a[i] != b[i] {
			j := i
			for j < min(len(a), len(b)) && a[j] != b[j] {
				j++
			}
			out = append(out, [2]int{i, j})
			i = j
		}
	}
	if len(a) != len(b) {
		out = append(out, [2]int{min(len(a), len(b)), max(len(a), len(b))})
	}
	return out
}

// A complete recording whose file was changed is refused whole: a flipped
// byte, a truncated tail, a cut at a chunk boundary, another file
// encrypted to the same key.
func TestIntegrity(t *testing.T) {
	e := newEnv(t)
	m := e.manager()
	rec := recordFake(t, m, "room1", 2*time.Second, 4000, false)
	other := recordFake(t, m, "room2", time.Second, 1000, false)
	tr := rec.Tracks[0]
	path := e.trackFile(rec.ID, tr.ID)
	orig, _ := os.ReadFile(path)
	if len(orig) < 3*65536 {
		t.Fatalf("file of %d bytes: too small for the test", len(orig))
	}
	open := func() (*recording.Media, error) { return m.Open(context.Background(), rec.ID, tr.ID) }
	restore := func() {
		t.Helper()
		if err := os.WriteFile(path, orig, 0o600); err != nil {
			t.Fatal(err)
		}
		md, err := open()
		if err != nil {
			t.Fatalf("the restored file: %v", err)
		}
		md.Close()
	}
	otherFile, _ := os.ReadFile(e.trackFile(other.ID, other.Tracks[0].ID))
	hdr, err := age.ExtractHeader(bytes.NewReader(orig))
	if err != nil {
		t.Fatal(err)
	}
	chunkCut := len(hdr) + 16 + 2*(65536+16) // after two whole chunks
	cases := map[string][]byte{
		"flipped byte":      flip(orig, len(orig)/2),
		"flipped last byte": flip(orig, len(orig)-1),
		"truncated tail":    orig[:len(orig)-10],
		"cut at a chunk":    orig[:chunkCut],
		"another file":      otherFile,
		"appended":          append(append([]byte(nil), orig...), 0),
	}
	for name, b := range cases {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		md, err := open()
		if !isIntegrity(err) || md != nil {
			t.Errorf("%s: Open = %v, %v; want ErrIntegrity and nothing", name, md, err)
		}
		restore()
	}

	// Changed after a successful verification, with its size and time
	// kept: the changed chunk fails when read, and none of it is served.
	md, err := open()
	if err != nil {
		t.Fatal(err)
	}
	defer md.Close()
	fi, _ := os.Stat(path)
	f, _ := os.OpenFile(path, os.O_WRONLY, 0)
	f.WriteAt([]byte{orig[100_000] ^ 1}, 100_000)
	f.Close()
	os.Chtimes(path, fi.ModTime(), fi.ModTime())
	md2, err := open() // from the cache
	if err != nil {
		t.Fatalf("Open from the cache: %v", err)
	}
	defer md2.Close()
	buf := make([]byte, 1000)
	n, err := md2.ReadAt(buf, 70_000)
	if !isIntegrity(err) || n != 0 {
		t.Errorf("reading a changed chunk: %d bytes, %v", n, err)
	}
	if _, err := md2.ReadAt(buf, 0); err != nil {
		t.Errorf("reading an intact chunk: %v", err)
	}
}

func flip(b []byte, i int) []byte {
	c := append([]byte(nil), b...)
	c[i] ^= 0x40
	return c
}

// A process that dies mid-recording leaves a file that decrypts up to its
// last complete chunk: after Recover the recording is incomplete and
// Open serves a valid WebM of what decrypts.
func TestCrashRecovery(t *testing.T) {
	e := newEnv(t)
	m := e.manager()
	src := &fakeSource{}
	rec, err := m.Start(context.Background(), src, recording.StartOptions{RoomID: "r", StartedBy: "user:u1", Names: func(string) string { return "Ann" }})
	if err != nil {
		t.Fatal(err)
	}
	v := src.publish(t, sfu.TrackInfo{ID: "cam", Participant: "p1", Kind: "video", Source: "camera"}, vp8)
	a := src.publish(t, sfu.TrackInfo{ID: "mic", Participant: "p1", Kind: "audio", Source: "microphone"}, opus)
	stream(v, a, 2*time.Second, 5000, 10, false)
	eventually(t, 5*time.Second, func() bool {
		r, _ := m.Get(context.Background(), rec.ID)
		return len(r.Tracks) == 1
	}, "the file is in the catalog")
	m.SimulateCrash()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	r, _ := m.Get(context.Background(), rec.ID)
	if r.Status != recording.StatusRecording || r.Tracks[0].Status != recording.StatusRecording {
		t.Fatalf("after the crash: %+v", r)
	}
	tr := r.Tracks[0]
	path := e.trackFile(rec.ID, tr.ID)
	prefix, derr := decryptFile(t, path, e.id)
	if derr == nil || len(prefix) < 65536 || len(prefix)%65536 != 0 {
		t.Fatalf("the crashed file decrypts %d bytes, %v; want whole chunks then an error", len(prefix), derr)
	}

	m2 := e.manager() // the restarted process
	n, err := m2.Recover(context.Background(), nil)
	if err != nil || n != 1 {
		t.Fatalf("Recover = %d, %v", n, err)
	}
	if n, _ := m2.Recover(context.Background(), nil); n != 0 {
		t.Errorf("a second Recover changed %d", n)
	}
	r, _ = m2.Get(context.Background(), rec.ID)
	tr = r.Tracks[0]
	if r.Status != recording.StatusIncomplete || tr.Status != recording.StatusIncomplete || tr.Size != int64(len(prefix)) ||
		tr.Duration < 500*time.Millisecond || tr.Duration > 2*time.Second || r.EndedAt.IsZero() {
		t.Errorf("recovered: %+v, track %+v", r, tr)
	}
	md, err := m2.Open(context.Background(), rec.ID, tr.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer md.Close()
	if !md.Incomplete || md.Size <= 0 || md.Size > int64(len(prefix)) || md.Size < int64(len(prefix))-10_000 {
		t.Errorf("media: incomplete %v, size %d of %d decryptable", md.Incomplete, md.Size, len(prefix))
	}
	served := readAll(t, md)
	if !bytes.Equal(served, prefix[:md.Size]) {
		t.Error("what is served is not the decrypted prefix")
	}
	_, blocks := parseWebM(t, served)
	if len(blocks) < 20 || !blocks[0].key {
		t.Errorf("%d blocks, first keyframe %v", len(blocks), len(blocks) > 0 && blocks[0].key)
	}
	// Reading backwards restarts the stream.
	buf := make([]byte, 100)
	if _, err := md.ReadAt(buf, md.Size-100); err != nil {
		t.Fatal(err)
	}
	if _, err := md.ReadAt(buf, 10); err != nil || !bytes.Equal(buf, served[10:110]) {
		t.Errorf("ReadAt back at 10: %v", err)
	}

	// Damage before the interrupted end is still an integrity failure.
	orig, _ := os.ReadFile(path)
	os.WriteFile(path, flip(orig, 1000), 0o600)
	if md, err := m2.Open(context.Background(), rec.ID, tr.ID); !isIntegrity(err) || md != nil {
		t.Errorf("an interrupted file damaged early: %v", err)
	}
}

func TestStartStopErrors(t *testing.T) {
	e := newEnv(t)
	m := e.manager()
	ctx := context.Background()
	if _, err := m.Stop(ctx, "r"); !errors.Is(err, recording.ErrNotRecording) {
		t.Errorf("Stop when not recording: %v", err)
	}
	rec, err := m.Start(ctx, &fakeSource{}, recording.StartOptions{RoomID: "r", StartedBy: "user:u1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Start(ctx, &fakeSource{}, recording.StartOptions{RoomID: "r"}); !errors.Is(err, recording.ErrAlreadyRecording) {
		t.Errorf("Start twice: %v", err)
	}
	if got, ok := m.Active("r"); !ok || got.ID != rec.ID || got.Status != recording.StatusRecording {
		t.Errorf("Active = %+v, %v", got, ok)
	}
	if err := m.Delete(ctx, rec.ID); !errors.Is(err, recording.ErrActive) {
		t.Errorf("Delete while recording: %v", err)
	}
	if _, err := m.Stop(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	if _, ok := m.Active("r"); ok {
		t.Error("still active after Stop")
	}
	if _, err := m.Stop(ctx, "r"); !errors.Is(err, recording.ErrNotRecording) {
		t.Errorf("Stop twice: %v", err)
	}
	// A source that cannot be tapped: nothing is left behind.
	if _, err := m.Start(ctx, badSource{}, recording.StartOptions{RoomID: "x"}); err == nil {
		t.Error("Start on a closed room succeeded")
	}
	if all, _ := m.List(ctx); len(all) != 1 {
		t.Errorf("%d recordings after a failed start, want 1", len(all))
	}
	if _, ok := m.Active("x"); ok {
		t.Error("a failed start is active")
	}
	// Without an identity nothing is decrypted.
	m2, err := recording.New(recording.Config{Dir: e.dir, Recipients: []age.Recipient{e.id.Recipient()}, Store: e.store})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	if _, err := m2.Open(ctx, rec.ID, "x"); !errors.Is(err, recording.ErrNoIdentity) {
		t.Errorf("Open without identity: %v", err)
	}
	if _, err := recording.New(recording.Config{Dir: e.dir, Store: e.store}); err == nil {
		t.Error("New without recipients succeeded")
	}
}

type badSource struct{}

func (badSource) AddTap(sfu.TapHandler) (*sfu.Tap, error) { return nil, sfu.ErrClosed }

// H.264 is not recorded: the catalog says so. A screen share gets its own
// file; a microphone alone waits for its partner, then goes on alone; a
// camera that comes later starts a new file.
func TestTracksAndFiles(t *testing.T) {
	e := newEnv(t)
	m := e.manager()
	ctx := context.Background()
	src := &fakeSource{}
	rec, err := m.Start(ctx, src, recording.StartOptions{RoomID: "r", StartedBy: "user:u1",
		Names: func(id string) string { return map[string]string{"p1": "Ann", "p2": "Bob"}[id] }})
	if err != nil {
		t.Fatal(err)
	}
	if s := src.publish(t, sfu.TrackInfo{ID: "h", Participant: "p2", Kind: "video", Source: "camera"}, h264); s.sink != nil {
		t.Error("an H.264 track got a sink")
	}
	mic := src.publish(t, sfu.TrackInfo{ID: "mic", Participant: "p1", Kind: "audio", Source: "microphone"}, opus)
	scr := src.publish(t, sfu.TrackInfo{ID: "scr", Participant: "p1", Kind: "video", Source: "screen"}, vp8)
	stream(scr, mic, 2500*time.Millisecond, 500, 25, true) // the microphone waits 1.5 s, then starts alone
	cam := src.publish(t, sfu.TrackInfo{ID: "cam", Participant: "p1", Kind: "video", Source: "camera"}, vp8)
	stream(cam, mic, time.Second, 500, 25, true)
	rec, err = m.Stop(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	var unsupported, screen, micOnly, both int
	for _, tr := range rec.Tracks {
		switch {
		case tr.Status == recording.StatusUnsupported:
			unsupported++
			if tr.Note == "" || tr.ParticipantName != "Bob" || !bytes.Contains([]byte(tr.Note), []byte("H.264")) {
				t.Errorf("unsupported track = %+v", tr)
			}
			if _, err := m.Open(ctx, rec.ID, tr.ID); !errors.Is(err, recording.ErrNotFound) {
				t.Errorf("Open an unsupported track: %v", err)
			}
		case tr.Kind == recording.KindScreen:
			screen++
			if len(tr.Codecs) != 1 || tr.Codecs[0] != webrtc_VP8 || tr.Duration < 2*time.Second || tr.Duration > 3*time.Second {
				t.Errorf("screen track = %+v", tr)
			}
		case len(tr.Codecs) == 1 && tr.Codecs[0] == webrtc_Opus:
			micOnly++
			if tr.Duration < 2*time.Second || tr.Duration > 3*time.Second {
				t.Errorf("microphone alone for %v", tr.Duration)
			}
			md, err := m.Open(ctx, rec.ID, tr.ID)
			if err != nil {
				t.Fatal(err)
			}
			if md.ContentType != "audio/webm" || !regexp.MustCompile(`-Ann-audio\.webm$`).MatchString(md.FileName) {
				t.Errorf("audio media: %s %s", md.ContentType, md.FileName)
			}
			md.Close()
		case len(tr.Codecs) == 2:
			both++
			if tr.Duration < 700*time.Millisecond || tr.Duration > 1300*time.Millisecond {
				t.Errorf("camera and microphone for %v", tr.Duration)
			}
		default:
			t.Errorf("unexpected track %+v", tr)
		}
	}
	if unsupported != 1 || screen != 1 || micOnly != 1 || both != 1 {
		t.Errorf("tracks: %d unsupported, %d screen, %d microphone alone, %d both; want one each: %+v", unsupported, screen, micOnly, both, rec.Tracks)
	}
	if len(rec.Participants) != 2 {
		t.Errorf("participants = %v", rec.Participants)
	}
	if _, err := m.Open(ctx, rec.ID, "nope"); !errors.Is(err, recording.ErrNotFound) {
		t.Errorf("Open an unknown track: %v", err)
	}
	if _, err := m.Open(ctx, "nope", rec.Tracks[0].ID); !errors.Is(err, recording.ErrNotFound) {
		t.Errorf("Open through an unknown recording: %v", err)
	}
}

func TestSharesAndDelete(t *testing.T) {
	e := newEnv(t)
	e.clock = &fakeClock{now: time.Date(2026, 11, 26, 14, 5, 0, 0, time.UTC)}
	m := e.manager()
	ctx := context.Background()
	for _, u := range []string{"u1", "u2"} {
		if err := e.store.CreateUser(ctx, store.User{ID: u, Username: u, DisplayName: u, CreatedUS: 1, UpdatedUS: 1}); err != nil {
			t.Fatal(err)
		}
	}
	rec := recordFake(t, m, "r", 500*time.Millisecond, 500, false)
	now := e.clock.Now()
	if err := m.Share(ctx, rec.ID, "u2", "u1", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := m.Share(ctx, "nope", "u2", "u1", now.Add(time.Hour)); !errors.Is(err, recording.ErrNotFound) {
		t.Errorf("share an unknown recording: %v", err)
	}
	if ok, err := m.SharedWith(ctx, rec.ID, "u2"); !ok || err != nil {
		t.Errorf("SharedWith = %v, %v", ok, err)
	}
	if ok, _ := m.SharedWith(ctx, rec.ID, "u1"); ok {
		t.Error("shared with someone it was not shared with")
	}
	got, _ := m.Get(ctx, rec.ID)
	if len(got.Shares) != 1 || got.Shares[0].UserID != "u2" || got.Shares[0].CreatedBy != "u1" || !got.Shares[0].ExpiresAt.Equal(now.Add(time.Hour)) {
		t.Errorf("shares = %+v", got.Shares)
	}
	e.clock.Set(now.Add(time.Hour))
	if ok, _ := m.SharedWith(ctx, rec.ID, "u2"); ok {
		t.Error("an expired share still shares")
	}
	if err := m.Unshare(ctx, rec.ID, "u2"); err != nil {
		t.Fatal(err)
	}
	if err := m.Unshare(ctx, rec.ID, "u2"); !errors.Is(err, recording.ErrNotFound) {
		t.Errorf("second unshare: %v", err)
	}
	if all, _ := m.List(ctx); len(all) != 1 || all[0].ID != rec.ID || len(all[0].Tracks) != 1 {
		t.Errorf("List = %+v", all)
	}

	m.Share(ctx, rec.ID, "u2", "u1", now.Add(48*time.Hour))
	path := e.trackFile(rec.ID, rec.Tracks[0].ID)
	if err := m.Delete(ctx, rec.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the file is still there: %v", err)
	}
	if _, err := m.Get(ctx, rec.ID); !errors.Is(err, recording.ErrNotFound) {
		t.Errorf("Get after Delete: %v", err)
	}
	if shares, _ := e.store.AllRecordingShares(ctx); len(shares) != 0 {
		t.Errorf("shares left: %+v", shares)
	}
	if err := m.Delete(ctx, rec.ID); !errors.Is(err, recording.ErrNotFound) {
		t.Errorf("second Delete: %v", err)
	}
	if entries, _ := os.ReadDir(e.dir); len(entries) != 0 {
		t.Errorf("files left: %v", entries)
	}
}

func TestDeleteExpired(t *testing.T) {
	e := newEnv(t)
	t0 := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	e.clock = &fakeClock{now: t0}
	m := e.manager()
	ctx := context.Background()
	if err := e.store.CreateRoom(ctx, store.Room{ID: "kept-long", Name: "A", CreatedBy: "u", CreatedUS: 1, UpdatedUS: 1, RecordingRetentionS: 3600}); err != nil {
		t.Fatal(err)
	}
	if err := e.store.CreateRoom(ctx, store.Room{ID: "default", Name: "B", CreatedBy: "u", CreatedUS: 1, UpdatedUS: 1}); err != nil {
		t.Fatal(err)
	}
	start := func(room string) recording.Recording {
		rec, err := m.Start(ctx, &fakeSource{}, recording.StartOptions{RoomID: room})
		if err != nil {
			t.Fatal(err)
		}
		return rec
	}
	long, def, gone := start("kept-long"), start("default"), start("deleted-room")
	e.clock.Set(t0.Add(10 * time.Minute)) // they end 10 minutes later
	for _, r := range []string{"kept-long", "default", "deleted-room"} {
		if _, err := m.Stop(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	e.clock.Set(t0.Add(15 * time.Minute))
	active := start("default") // never deleted while recording
	// An interrupted recording expires from its start.
	if err := e.store.CreateRecording(ctx, store.Recording{ID: "crashed", RoomID: "default", StartedUS: t0.UnixMicro(), EndedUS: t0.Add(50 * time.Minute).UnixMicro(), Status: recording.StatusIncomplete}); err != nil {
		t.Fatal(err)
	}

	ids := func(rs []recording.Recording) map[string]bool {
		out := map[string]bool{}
		for _, r := range rs {
			out[r.ID] = true
		}
		return out
	}
	// Global 0: kept forever, except where the room says otherwise.
	if del, err := m.DeleteExpired(ctx, t0.Add(30*time.Minute), 0); err != nil || len(del) != 0 {
		t.Errorf("global 0 at +30 min: %v, %v", ids(del), err)
	}
	// Global 20 min at +35 min: ended +10 → expired at +30 (default room,
	// deleted room); the crashed one from its start (+20); the room with 1 h
	// keeps its own.
	del, err := m.DeleteExpired(ctx, t0.Add(35*time.Minute), 20*time.Minute)
	got := ids(del)
	if err != nil || len(got) != 3 || !got[def.ID] || !got[gone.ID] || !got["crashed"] {
		t.Errorf("global 20 min at +35 min deleted %v, %v", got, err)
	}
	if _, err := m.Get(ctx, def.ID); !errors.Is(err, recording.ErrNotFound) {
		t.Errorf("expired recording still there: %v", err)
	}
	if del, _ := m.DeleteExpired(ctx, t0.Add(69*time.Minute), 20*time.Minute); len(del) != 0 {
		t.Errorf("the room's hour is not over at +69 min: deleted %v", ids(del))
	}
	del, _ = m.DeleteExpired(ctx, t0.Add(71*time.Minute), 20*time.Minute)
	if got := ids(del); len(got) != 1 || !got[long.ID] {
		t.Errorf("at +71 min deleted %v, want the room's", got)
	}
	if _, err := m.Get(ctx, active.ID); err != nil {
		t.Errorf("the active recording: %v", err)
	}
	if _, err := m.Stop(ctx, "default"); err != nil {
		t.Fatal(err)
	}
}

func TestLoadOrCreateIdentity(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	id, err := recording.LoadOrCreateIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, recording.IdentityFile)
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("identity file: %v, %v", fi.Mode(), err)
	}
	again, err := recording.LoadOrCreateIdentity(dir)
	if err != nil || again.String() != id.String() {
		t.Fatalf("second load: %v (same key %v)", err, err == nil && again.String() == id.String())
	}
	os.Chmod(path, 0o640)
	if _, err := recording.LoadOrCreateIdentity(dir); err == nil {
		t.Error("a group-readable identity was accepted")
	}
	os.Chmod(path, 0o600)
	os.WriteFile(path, []byte("garbage\n"), 0o600)
	if _, err := recording.LoadOrCreateIdentity(dir); err == nil || bytes.Contains([]byte(err.Error()), []byte("garbage")) {
		t.Errorf("a bad identity file: %v", err)
	}
}

// Timestamps come from RTP across reordering, loss and pauses; after a
// lost video packet nothing is written until the next keyframe, which is
// asked for.
func TestLossReorderPause(t *testing.T) {
	e := newEnv(t)
	m := e.manager()
	var kfMu sync.Mutex
	kf := map[string]int{}
	m.OnKeyframeRequest(func(id string) {
		kfMu.Lock()
		kf[id]++
		kfMu.Unlock()
	})
	ctx := context.Background()
	src := &fakeSource{}
	rec, err := m.Start(ctx, src, recording.StartOptions{RoomID: "r"})
	if err != nil {
		t.Fatal(err)
	}
	v := src.publish(t, sfu.TrackInfo{ID: "cam", Participant: "p1", Kind: "video", Source: "camera"}, vp8)
	a := src.publish(t, sfu.TrackInfo{ID: "mic", Participant: "p1", Kind: "audio", Source: "microphone"}, opus)

	start := time.Now()
	at := func(ms int) {
		if w := time.Until(start.Add(time.Duration(ms) * time.Millisecond)); w > 0 {
			time.Sleep(w)
		}
	}
	// Audio frame n has RTP time n*20 ms; sequence numbers follow what is
	// sent (a pause sends nothing).
	audioAt := func(n int, seq uint16) {
		a.ts = 1000 + uint32(n)*960
		a.seq = seq
		a.write(opusFrame(n), true)
	}
	// Video frame n (RTP time n*40 ms) of three packets; drop loses packet 1.
	videoAt := func(n int, key, drop bool) {
		v.ts = 1000 + uint32(n)*3600
		v.pid = uint16(n)
		pkts := vp8Packets(vp8Frame(key, 2500), v.pid)
		for i, p := range pkts {
			if drop && i == 1 {
				v.seq++
				continue
			}
			v.write(p, i == len(pkts)-1)
		}
	}
	// 0-1 s: audio packets swapped in pairs, video in order; frame 5
	// loses a packet, frame 8 is the next keyframe. (The sample builder
	// gives up on the lost packet once 500 ms of media followed it.)
	aseq := uint16(100)
	// Each track's timeline is anchored on the arrival of its first
	// packet: how far apart the first audio and video packets were sent
	// bounds how far apart equal RTP times may land (a loaded machine can
	// deschedule this goroutine between the two).
	var firstSkew time.Duration
	for n := 0; n < 50; n += 2 {
		at(n * 20)
		sent := time.Now()
		if n == 0 { // the first packet anchors the timeline: in order
			audioAt(n, aseq)
			audioAt(n+1, aseq+1)
		} else {
			audioAt(n+1, aseq+1)
			audioAt(n, aseq)
		}
		aseq += 2
		f := n / 2
		videoAt(f, f == 0 || f == 8, f == 5)
		if n == 0 {
			firstSkew = time.Since(sent)
		}
	}
	// 1-2 s: nothing sent, but RTP time goes on: a gap of 1 s.
	// 2-2.5 s: media again.
	for n := 100; n < 125; n++ {
		at(n * 20)
		audioAt(n, aseq)
		aseq++
		if n%2 == 0 {
			videoAt(n/2, n == 100, false)
		}
	}
	// 2.5-5 s: nothing, and then media whose RTP time did not advance
	// (as a sender that stopped its clock): the gap is the wall clock's.
	for n := 125; n < 150; n++ {
		at(5000 + (n-125)*20)
		audioAt(n, aseq)
		aseq++
		if n%2 == 0 {
			videoAt(n/2, n == 126, false)
		}
	}
	time.Sleep(100 * time.Millisecond)
	rec, err = m.Stop(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	plain, err := decryptFile(t, e.trackFile(rec.ID, rec.Tracks[0].ID), e.id)
	if err != nil {
		t.Fatal(err)
	}
	_, blocks := parseWebM(t, plain)
	var audio []int64
	var video []block
	var base int64 = -1
	for _, b := range blocks {
		if b.track == 2 {
			if base < 0 {
				base = b.ms
			}
			audio = append(audio, b.ms)
		} else {
			video = append(video, b)
		}
	}
	// Audio: 25 in order despite the swaps, a gap of ~1 s, 25, a gap of ~2.5 s.
	if len(audio) < 70 {
		t.Fatalf("%d audio frames", len(audio))
	}
	for i := 1; i < 24; i++ {
		if d := audio[i] - audio[i-1]; d != 20 {
			t.Errorf("audio frames %d→%d: %d ms apart", i-1, i, d)
		}
	}
	gaps := []int64{}
	for i := 1; i < len(audio); i++ {
		if d := audio[i] - audio[i-1]; d > 200 {
			gaps = append(gaps, d)
		}
	}
	if len(gaps) != 2 || gaps[0] < 1000 || gaps[0] > 1100 || gaps[1] < 2300 || gaps[1] > 2800 {
		t.Errorf("audio gaps %v ms, want about 1020 and 2520", gaps)
	}
	// Video: frames 0-4, then nothing until keyframe 8.
	if len(video) < 6 || !video[0].key {
		t.Fatalf("video frames: %d", len(video))
	}
	for i := 1; i < 5; i++ {
		if video[i].key || video[i].ms-video[i-1].ms != 40 {
			t.Errorf("video frame %d: key %v, %d ms after the one before", i, video[i].key, video[i].ms-video[i-1].ms)
		}
	}
	if after := video[5]; !after.key || after.ms-video[4].ms != 4*40 {
		t.Errorf("after the loss: key %v, %d ms after frame 4 (want keyframe 8, 160 ms later)", after.key, after.ms-video[4].ms)
	}
	kfMu.Lock()
	n := kf["cam"]
	kfMu.Unlock()
	if n == 0 {
		t.Error("no keyframe was asked for after the loss")
	}
	// Audio and video stay aligned: keyframe 50 and audio frame 100 have
	// the same RTP time (2 s).
	var key50 int64 = -1
	for _, b := range video {
		if b.key && b.ms > 1500 && b.ms < 2500 {
			key50 = b.ms
		}
	}
	var audio100 int64 = -1 // the first audio frame after the first gap
	for i := 1; i < len(audio); i++ {
		if audio[i]-audio[i-1] > 200 {
			audio100 = audio[i]
			break
		}
	}
	// Equal up to the skew of the first packets' sending (and the
	// millisecond rounding of block times).
	if skew := firstSkew.Milliseconds() + 1; key50 < 0 || key50 < audio100 || key50-audio100 > skew {
		t.Errorf("keyframe 50 at %d ms, audio frame 100 at %d ms: not aligned (the first video packet went %v after the first audio one)",
			key50, audio100, firstSkew)
	}
}

// The catalog does not get to name files the recorder did not make.
func TestCatalogFileNamesChecked(t *testing.T) {
	e := newEnv(t)
	m := e.manager()
	ctx := context.Background()
	victim := filepath.Join(filepath.Dir(e.dir), "victim.webm.age")
	if err := os.WriteFile(victim, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := e.store.CreateRecording(ctx, store.Recording{ID: "rec", RoomID: "r", StartedUS: 1, EndedUS: 2, Status: recording.StatusComplete}); err != nil {
		t.Fatal(err)
	}
	if err := e.store.AddRecordingTrack(ctx, store.RecordingTrack{ID: "tr", RecordingID: "rec", File: "../victim.webm.age", Kind: "av", Codecs: "[]", Status: recording.StatusComplete}); err != nil {
		t.Fatal(err)
	}
	if md, err := m.Open(ctx, "rec", "tr"); !isIntegrity(err) || md != nil {
		t.Errorf("Open a file outside the directory: %v", err)
	}
	if err := m.Delete(ctx, "rec"); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(victim); err != nil || string(b) != "keep me" {
		t.Errorf("Delete touched a file outside the directory: %q, %v", b, err)
	}
}

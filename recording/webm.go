package recording

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"filippo.io/age"
	"github.com/at-wat/ebml-go/mkvcore"
	"github.com/at-wat/ebml-go/webm"
	"github.com/pion/webrtc/v4"
)

// Slots of a file: at most one video and one audio track.
const (
	slotVideo = 0
	slotAudio = 1
)

// Media timing of a WebM file: block timecodes are in milliseconds.
const (
	// clusterMax starts a new cluster at least this often (ms).
	clusterMax = 5000
	// clusterMinKey: a video keyframe starts a new cluster once the
	// current one is this long (ms), so that clusters begin on keyframes.
	clusterMinKey = 1000
	// opusSeekPreRoll is the pre-roll WebM recommends for Opus (ns).
	opusSeekPreRoll = 80_000_000
	// defaultWidth, defaultHeight stand in when no keyframe told the size.
	defaultWidth, defaultHeight = 640, 480
)

// codecID is the WebM CodecID of an RTP codec Parley records; ok false
// for the codecs it does not record.
func codecID(mime string) (id string, ok bool) {
	switch {
	case strings.EqualFold(mime, webrtc.MimeTypeVP8):
		return "V_VP8", true
	case strings.EqualFold(mime, webrtc.MimeTypeVP9):
		return "V_VP9", true
	case strings.EqualFold(mime, webrtc.MimeTypeOpus):
		return "A_OPUS", true
	}
	return "", false
}

// unsupportedNote explains why a codec is not recorded.
func unsupportedNote(mime string) string {
	name := mime
	if _, sub, ok := strings.Cut(mime, "/"); ok {
		name = sub
	}
	if strings.EqualFold(name, "H264") {
		name = "H.264"
	}
	return name + " is not recordable: Parley records VP8, VP9 and Opus"
}

// opusHead is the CodecPrivate of an Opus track (RFC 7845, section 5.1):
// version 1, the channel count, no pre-skip, 48 kHz, no gain, mapping
// family 0.
func opusHead(channels uint16) []byte {
	if channels == 0 || channels > 2 {
		channels = 2
	}
	b := []byte("OpusHead")
	b = append(b, 1, byte(channels))
	b = binary.LittleEndian.AppendUint16(b, 0)
	b = binary.LittleEndian.AppendUint32(b, 48000)
	b = binary.LittleEndian.AppendUint16(b, 0)
	return append(b, 0)
}

// vp8Frame reports whether a VP8 frame (RFC 6386, section 9.1) is a
// keyframe and, if so, its size.
func vp8Frame(b []byte) (key bool, width, height int) {
	if len(b) < 3 || b[0]&1 != 0 {
		return false, 0, 0
	}
	if len(b) >= 10 && b[3] == 0x9d && b[4] == 0x01 && b[5] == 0x2a {
		width = int(binary.LittleEndian.Uint16(b[6:]) & 0x3fff)
		height = int(binary.LittleEndian.Uint16(b[8:]) & 0x3fff)
	}
	return true, width, height
}

// bitReader reads big-endian bits.
type bitReader struct {
	b   []byte
	pos int
}

func (r *bitReader) bits(n int) (uint32, bool) {
	var v uint32
	for range n {
		if r.pos >= len(r.b)*8 {
			return 0, false
		}
		v = v<<1 | uint32(r.b[r.pos/8]>>(7-r.pos%8)&1)
		r.pos++
	}
	return v, true
}

// vp9Frame reads a VP9 frame's uncompressed header (VP9 bitstream
// specification, section 6.2): whether it is a keyframe and, if so, its
// size.
func vp9Frame(b []byte) (key bool, width, height int) {
	r := &bitReader{b: b}
	marker, _ := r.bits(2)
	lo, _ := r.bits(1)
	hi, ok := r.bits(1)
	if !ok || marker != 2 {
		return false, 0, 0
	}
	profile := hi<<1 | lo
	if profile == 3 {
		r.bits(1) // reserved
	}
	if showExisting, _ := r.bits(1); showExisting == 1 {
		return false, 0, 0
	}
	frameType, _ := r.bits(1)
	if frameType != 0 {
		return false, 0, 0
	}
	r.bits(2) // show_frame, error_resilient_mode
	sync, ok := r.bits(24)
	if !ok || sync != 0x498342 {
		return true, 0, 0
	}
	if profile >= 2 {
		r.bits(1) // ten_or_twelve_bit
	}
	colorSpace, _ := r.bits(3)
	if colorSpace != 7 { // not CS_RGB
		r.bits(1) // color_range
		if profile == 1 || profile == 3 {
			r.bits(3) // subsampling_x, subsampling_y, reserved
		}
	} else if profile == 1 || profile == 3 {
		r.bits(1) // reserved
	}
	w, ok1 := r.bits(16)
	h, ok2 := r.bits(16)
	if !ok1 || !ok2 {
		return true, 0, 0
	}
	return true, int(w) + 1, int(h) + 1
}

// segmentInfo is the WebM Info element Parley writes. Void reserves the
// room of a Duration element (ID, size, 8-byte float): a live file
// cannot know its duration when its header is written, so Media patches
// the Duration in when it serves a finished file (see Open).
type segmentInfo struct {
	TimecodeScale uint64    `ebml:"TimecodeScale"`
	MuxingApp     string    `ebml:"MuxingApp"`
	WritingApp    string    `ebml:"WritingApp"`
	DateUTC       time.Time `ebml:"DateUTC"`
	Void          []byte    `ebml:"Void"`
}

// durationReserve is the Void's payload: with its ID and one-byte size it
// takes the 11 bytes of a Duration element.
const durationReserve = 9

// fileTrack describes one track of a file being created.
type fileTrack struct {
	slot     int
	mime     string
	channels uint16
	name     string
	width    int
	height   int
}

// mediaFile is one WebM file being written: ebml-go's live writer → a
// counter of plaintext bytes → age's streaming encryption → the file. No
// plaintext ever reaches the disk.
type mediaFile struct {
	name       string // inside Dir
	headerHash string // SHA-256 of the age header and nonce
	f          *os.File
	enc        io.WriteCloser
	writers    [2]mkvcore.BlockWriteCloser
	numbers    [2]uint64 // WebM track number per slot, 0: absent

	mu        sync.Mutex
	plain     int64 // plaintext bytes handed to age
	err       error // the first write error; later writes are dropped
	abandoned bool  // crash simulation: close without finishing the stream
	closed    bool
	closeErr  error
}

// hashingWriter hashes what passes through it until stop is set.
type hashingWriter struct {
	w    io.Writer
	h    hash.Hash
	stop bool
}

func (hw *hashingWriter) Write(p []byte) (int, error) {
	if !hw.stop {
		hw.h.Write(p)
	}
	return hw.w.Write(p)
}

// createMediaFile creates <dir>/<random>.webm.age (0600, never an
// existing file) and writes the WebM header with the given tracks.
func createMediaFile(dir string, recipients []age.Recipient, tracks []fileTrack, start time.Time) (*mediaFile, error) {
	name := randomID() + ".webm.age"
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("recording: create file: %w", err)
	}
	hw := &hashingWriter{w: f, h: sha256.New()}
	enc, err := age.Encrypt(hw, recipients...)
	if err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("recording: start encryption: %w", err)
	}
	hw.stop = true
	mf := &mediaFile{name: name, headerHash: hex.EncodeToString(hw.h.Sum(nil)), f: f, enc: enc}

	var entries []webm.TrackEntry
	main := uint64(0)
	var slots []int
	for i, t := range tracks {
		n := uint64(i + 1)
		id, _ := codecID(t.mime)
		e := webm.TrackEntry{Name: t.name, TrackNumber: n, TrackUID: randomUID(), CodecID: id}
		if t.slot == slotVideo {
			e.TrackType = 1
			w, h := t.width, t.height
			if w <= 0 || h <= 0 {
				w, h = defaultWidth, defaultHeight
			}
			e.Video = &webm.Video{PixelWidth: uint64(w), PixelHeight: uint64(h)}
			main = n
		} else {
			e.TrackType = 2
			ch := t.channels
			if ch == 0 || ch > 2 {
				ch = 2
			}
			e.CodecPrivate = opusHead(ch)
			e.SeekPreRoll = opusSeekPreRoll
			e.Audio = &webm.Audio{SamplingFrequency: 48000, Channels: uint64(ch)}
		}
		entries = append(entries, e)
		mf.numbers[t.slot] = n
		slots = append(slots, t.slot)
	}
	minCluster := int64(clusterMinKey)
	if main == 0 { // audio only: every frame is a keyframe
		main = 1
		minCluster = clusterMax
	}
	info := &segmentInfo{TimecodeScale: 1_000_000, MuxingApp: "Parley", WritingApp: "Parley",
		DateUTC: start.UTC(), Void: make([]byte, durationReserve)}
	ws, err := webm.NewSimpleBlockWriter(mf, entries,
		mkvcore.WithSegmentInfo(info),
		mkvcore.WithBlockInterceptor(nil), // the group interleaves tracks itself
		mkvcore.WithMinMaxClusterDuration(main, minCluster, clusterMax),
		mkvcore.WithOnErrorHandler(func(error) {}), // a frame too old for its cluster: dropped
		mkvcore.WithOnFatalHandler(mf.fail),
	)
	if err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("recording: write WebM header: %w", err)
	}
	for i, w := range ws {
		mf.writers[slots[i]] = w
	}
	if err := mf.failure(); err != nil {
		mf.closeWriters()
		os.Remove(f.Name())
		return nil, err
	}
	return mf, nil
}

// Write takes plaintext WebM from ebml-go's writer goroutine. It never
// returns an error (ebml-go would stop reading frames and block its
// writers): the first error is kept, and what follows is dropped.
func (mf *mediaFile) Write(p []byte) (int, error) {
	mf.mu.Lock()
	defer mf.mu.Unlock()
	if mf.err != nil || mf.closed {
		return len(p), nil
	}
	n, err := mf.enc.Write(p)
	mf.plain += int64(n)
	if err != nil {
		mf.err = fmt.Errorf("recording: write: %w", err)
	}
	return len(p), nil
}

// Close is called by ebml-go once the last cluster is written: the last
// age chunk is sealed and the file synced, unless the file is abandoned.
func (mf *mediaFile) Close() error {
	mf.mu.Lock()
	defer mf.mu.Unlock()
	if mf.closed {
		return nil
	}
	mf.closed = true
	var err error
	if !mf.abandoned {
		if mf.err == nil {
			err = mf.enc.Close()
		}
		if err == nil && mf.err == nil {
			err = mf.f.Sync()
		}
	}
	if cerr := mf.f.Close(); err == nil {
		err = cerr
	}
	if err != nil && mf.err == nil {
		mf.err = fmt.Errorf("recording: finish file: %w", err)
	}
	return nil
}

func (mf *mediaFile) fail(err error) {
	mf.mu.Lock()
	defer mf.mu.Unlock()
	if mf.err == nil {
		mf.err = fmt.Errorf("recording: WebM: %w", err)
	}
}

// failure is the first error met writing the file, if any.
func (mf *mediaFile) failure() error {
	mf.mu.Lock()
	defer mf.mu.Unlock()
	return mf.err
}

// written is the plaintext size so far.
func (mf *mediaFile) written() int64 {
	mf.mu.Lock()
	defer mf.mu.Unlock()
	return mf.plain
}

// write hands one frame to the WebM writer (ms from the file's origin).
func (mf *mediaFile) write(slot int, key bool, ms int64, data []byte) {
	if w := mf.writers[slot]; w != nil {
		_, _ = w.Write(key, ms, data)
	}
}

// closeWriters ends the WebM stream: when the last writer is closed,
// ebml-go has written the last cluster and closed mf.
func (mf *mediaFile) closeWriters() {
	for i, w := range mf.writers {
		if w != nil {
			_ = w.Close()
			mf.writers[i] = nil
		}
	}
}

// abandon makes Close leave the age stream unfinished, as a crash would.
func (mf *mediaFile) abandon() {
	mf.mu.Lock()
	mf.abandoned = true
	mf.mu.Unlock()
}

// randomID is 128 random bits, URL-safe.
func randomID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return b64(b[:])
}

func randomUID() uint64 {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	if u := binary.BigEndian.Uint64(b[:]); u != 0 {
		return u
	}
	return 1
}

var errClosed = errors.New("recording: manager closed")

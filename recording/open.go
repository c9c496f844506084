package recording

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"sync"
	"time"
	"unicode"

	"filippo.io/age"
	"golang.org/x/text/unicode/norm"

	"github.com/parley-meet/parley/store"
)

// age's STREAM layout (age v1 format): a header, a 16-byte nonce, then
// chunks of 64 KiB of plaintext, each sealed with a 16-byte tag.
const (
	ageNonceSize = 16
	ageChunk     = 64 << 10
	ageEncChunk  = ageChunk + 16
)

// Media is one recorded file, decrypted on demand: an io.ReaderAt over
// its plaintext WebM.
type Media struct {
	Size        int64
	ContentType string // "video/webm" or "audio/webm"
	FileName    string // safe in a Content-Disposition header
	Incomplete  bool   // the recording was interrupted: this is what decrypts

	f       *os.File
	ra      io.ReaderAt
	patch   []byte // bytes served at patchAt instead of the file's
	patchAt int64
	once    sync.Once
}

// ReadAt reads the plaintext at off.
func (md *Media) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("recording: negative offset")
	}
	if off >= md.Size {
		return 0, io.EOF
	}
	want := len(p)
	if rest := md.Size - off; int64(want) > rest {
		p = p[:rest]
	}
	n, err := md.ra.ReadAt(p, off)
	if n == len(p) && errors.Is(err, io.EOF) {
		err = nil
	}
	if err != nil {
		return n, fmt.Errorf("%w: %v", ErrIntegrity, err)
	}
	if md.patch != nil && off < md.patchAt+int64(len(md.patch)) && md.patchAt < off+int64(n) {
		for i := range md.patch {
			if j := md.patchAt + int64(i) - off; j >= 0 && j < int64(n) {
				p[j] = md.patch[i]
			}
		}
	}
	if n < want {
		return n, io.EOF
	}
	return n, nil
}

// Close releases the file.
func (md *Media) Close() error {
	var err error
	md.once.Do(func() { err = md.f.Close() })
	return err
}

// verified is what a verification pass learned of a file.
type verified struct {
	size  int64 // plaintext bytes that decrypt
	whole bool  // the stream ends properly (its final chunk is there)
	scan  scanResult
}

// verifyKey names one state of one file.
type verifyKey struct {
	path   string
	size   int64
	mtime  int64
	strict bool
}

// verifyCache remembers successful verifications, so that the many Range
// requests of a player decrypt only what they read.
type verifyCache struct {
	mu sync.Mutex
	m  map[verifyKey]verified
}

const verifyCacheSize = 256

func (c *verifyCache) get(k verifyKey) (verified, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[k]
	return v, ok
}

func (c *verifyCache) put(k verifyKey, v verified) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[verifyKey]verified{}
	}
	if len(c.m) >= verifyCacheSize {
		for old := range c.m { // any: a miss only costs a new pass
			delete(c.m, old)
			break
		}
	}
	c.m[k] = v
}

func (c *verifyCache) forget(path string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.m {
		if k.path == path {
			delete(c.m, k)
		}
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// fileHeader reads the age header and nonce of f and checks them against
// the catalog's hash: a file that is not the one written for this track
// (another file encrypted to the same recipient) is refused.
func fileHeader(f *os.File, size int64, want string) (payloadAt int64, header []byte, err error) {
	header, err = age.ExtractHeader(io.NewSectionReader(f, 0, size))
	if err != nil {
		return 0, nil, fmt.Errorf("%w: %v", ErrIntegrity, err)
	}
	nonce := make([]byte, ageNonceSize)
	if _, err := f.ReadAt(nonce, int64(len(header))); err != nil {
		return 0, nil, fmt.Errorf("%w: no nonce", ErrIntegrity)
	}
	sum := sha256.Sum256(append(append([]byte(nil), header...), nonce...))
	wantSum, err := hex.DecodeString(want)
	if err != nil || subtle.ConstantTimeCompare(sum[:], wantSum) != 1 {
		return 0, nil, fmt.Errorf("%w: the file's header is not the one recorded", ErrIntegrity)
	}
	return int64(len(header)) + ageNonceSize, header, nil
}

// verify decrypts a whole file once. strict: any failure is an integrity
// error. Otherwise (an interrupted file) the stream may stop within its
// last chunk; damage before that is still an integrity error.
func (m *Manager) verify(t store.RecordingTrack, strict bool) (verified, error) {
	path := m.path(t.File)
	if path == "" {
		return verified{}, fmt.Errorf("%w: the catalog names no valid file", ErrIntegrity)
	}
	f, err := os.Open(path)
	if err != nil {
		return verified{}, err
	}
	defer f.Close()
	return m.verifyFile(f, t, strict)
}

func (m *Manager) verifyFile(f *os.File, t store.RecordingTrack, strict bool) (verified, error) {
	fi, err := f.Stat()
	if err != nil {
		return verified{}, err
	}
	key := verifyKey{path: f.Name(), size: fi.Size(), mtime: fi.ModTime().UnixNano(), strict: strict}
	if v, ok := m.verified.get(key); ok {
		return v, nil
	}
	payloadAt, _, err := fileHeader(f, fi.Size(), t.HeaderSHA256)
	if err != nil {
		return verified{}, err
	}
	r, err := age.Decrypt(io.NewSectionReader(f, 0, fi.Size()), m.identities...)
	if err != nil {
		return verified{}, identityErr(err)
	}
	cr := &countingReader{r: r}
	scan, serr := scanWebM(cr)
	_, err = io.Copy(io.Discard, cr) // the rest, to authenticate all of it
	v := verified{size: cr.n, whole: err == nil, scan: scan}
	if err != nil {
		if strict {
			return verified{}, fmt.Errorf("%w: %v", ErrIntegrity, err)
		}
		// An interrupted file ends within its last chunk; the failing
		// chunk must be the file's last.
		failedAt := payloadAt + v.size/ageChunk*ageEncChunk
		if fi.Size()-failedAt > ageEncChunk {
			return verified{}, fmt.Errorf("%w: damaged before its end: %v", ErrIntegrity, err)
		}
	}
	if serr != nil {
		// Authenticated but not the WebM the scanner follows: served as
		// it is, without a duration, and an interrupted one not at all.
		m.log.Warn("recording: a file's WebM structure is not understood", "track", t.ID, "err", serr)
		v.scan = scanResult{durationAt: -1, firstMS: -1}
	}
	m.verified.put(key, v)
	return v, nil
}

// identityErr maps a header decryption failure.
func identityErr(err error) error {
	var noMatch *age.NoIdentityMatchError
	if errors.As(err, &noMatch) {
		return fmt.Errorf("%w: no identity of this server decrypts the file", ErrNoIdentity)
	}
	return fmt.Errorf("%w: %v", ErrIntegrity, err)
}

// Open returns a track's file for reading. A complete file is verified
// whole (every chunk authenticated, the end present) before anything of
// it is served: any failure is ErrIntegrity. The file of an interrupted
// recording is served up to its last complete WebM element that
// decrypts, with Incomplete set.
func (m *Manager) Open(ctx context.Context, recordingID, trackID string) (*Media, error) {
	if len(m.identities) == 0 {
		return nil, ErrNoIdentity
	}
	t, err := m.store.RecordingTrack(ctx, recordingID, trackID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("recording: %w", err)
	}
	if t.File == "" {
		return nil, ErrNotFound
	}
	path := m.path(t.File)
	if path == "" {
		return nil, fmt.Errorf("%w: the catalog names no valid file", ErrIntegrity)
	}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("recording: %w", err)
	}
	md, err := m.open(f, t)
	if err != nil {
		f.Close()
		return nil, err
	}
	return md, nil
}

func (m *Manager) open(f *os.File, t store.RecordingTrack) (*Media, error) {
	strict := t.Status == StatusComplete
	v, err := m.verifyFile(f, t, strict)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	var codecs []string
	_ = json.Unmarshal([]byte(t.Codecs), &codecs)
	md := &Media{f: f, ContentType: "audio/webm", FileName: fileName(t, codecs)}
	for _, c := range codecs {
		if strings.HasPrefix(strings.ToLower(c), "video/") {
			md.ContentType = "video/webm"
		}
	}
	if strict {
		ra, size, err := age.DecryptReaderAt(f, fi.Size(), m.identities...)
		if err != nil {
			return nil, identityErr(err)
		}
		if size != v.size {
			return nil, fmt.Errorf("%w: the file changed", ErrIntegrity)
		}
		md.ra, md.Size = ra, size
		if v.scan.durationAt >= 0 && v.scan.firstMS >= 0 {
			md.patchAt, md.patch = v.scan.durationAt, durationElement(v.scan.lastMS-v.scan.firstMS)
		}
		return md, nil
	}
	md.Incomplete = true
	md.Size = v.scan.goodEnd
	if v.whole && v.scan.goodEnd == v.size {
		md.Size = v.size
	}
	// age has random access only to a whole stream; an interrupted one is
	// read from its start, by a cursor that moves forward.
	hdr, err := age.ExtractHeader(io.NewSectionReader(f, 0, fi.Size()))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrIntegrity, err)
	}
	fileKey, err := age.DecryptHeader(hdr, m.identities...)
	if err != nil {
		return nil, identityErr(err)
	}
	size := fi.Size()
	md.ra = &streamReaderAt{open: func() (io.Reader, error) {
		return age.Decrypt(io.NewSectionReader(f, 0, size), age.NewInjectedFileKeyIdentity(fileKey))
	}}
	return md, nil
}

// durationElement is a WebM Duration element (ms, as a float64) of the
// size of the Void that reserves its place.
func durationElement(ms int64) []byte {
	b := []byte{0x44, 0x89, 0x88}
	return binary.BigEndian.AppendUint64(b, math.Float64bits(float64(ms)))
}

// streamReaderAt reads a stream that can only be decrypted from its
// start: reads at or after the cursor continue, earlier ones restart.
type streamReaderAt struct {
	open func() (io.Reader, error)
	mu   sync.Mutex
	r    io.Reader
	pos  int64
}

func (s *streamReaderAt) ReadAt(p []byte, off int64) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.r == nil || off < s.pos {
		r, err := s.open()
		if err != nil {
			return 0, err
		}
		s.r, s.pos = r, 0
	}
	if off > s.pos {
		n, err := io.CopyN(io.Discard, s.r, off-s.pos)
		s.pos += n
		if err != nil {
			s.r = nil
			return 0, err
		}
	}
	n, err := io.ReadFull(s.r, p)
	s.pos += int64(n)
	if err != nil {
		s.r = nil
		if n > 0 && (errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)) {
			return n, io.EOF
		}
	}
	return n, err
}

// fileName is a download name built from safe parts only, e.g.
// "parley-2026-11-26-1405-Ann_Lee-camera.webm".
func fileName(t store.RecordingTrack, codecs []string) string {
	label := "audio"
	if t.Kind == KindScreen {
		label = "screen"
	} else {
		for _, c := range codecs {
			if strings.HasPrefix(strings.ToLower(c), "video/") {
				label = "camera"
			}
		}
	}
	name := safeName(t.ParticipantName)
	if name == "" {
		name = "participant"
	}
	return "parley-" + time.UnixMicro(t.StartedUS).UTC().Format("2006-01-02-1504") + "-" + name + "-" + label + ".webm"
}

// safeName keeps letters and digits of a display name, accents dropped
// (é becomes e), as [A-Za-z0-9_-], at most 40 characters.
func safeName(s string) string {
	var b bytes.Buffer
	under := false
	for _, r := range norm.NFKD.String(s) {
		switch {
		case r < 0x80 && (unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-'):
			b.WriteRune(r)
			under = false
		case unicode.Is(unicode.Mn, r):
		default:
			if !under && b.Len() > 0 {
				b.WriteByte('_')
				under = true
			}
		}
		if b.Len() >= 40 {
			break
		}
	}
	return strings.Trim(b.String(), "_-")
}

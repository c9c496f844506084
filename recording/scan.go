package recording

import (
	"bufio"
	"errors"
	"io"
)

// EBML ids the scanner knows (Matroska specification).
const (
	idEBML        = 0x1A45DFA3
	idSegment     = 0x18538067
	idInfo        = 0x1549A966
	idTracks      = 0x1654AE6B
	idCluster     = 0x1F43B675
	idTimecode    = 0xE7
	idSimpleBlock = 0xA3
	idBlockGroup  = 0xA0
	idVoid        = 0xEC
)

// topLevel reports whether id is a child of Segment (which ends a
// cluster of unknown size) or a new EBML document.
func topLevel(id uint32) bool {
	switch id {
	case idCluster, idInfo, idTracks, 0x114D9B74 /* SeekHead */, 0x1C53BB6B /* Cues */, 0x1254C367, /* Tags */
		0x1043A770 /* Chapters */, 0x1941A469 /* Attachments */, idEBML, idSegment:
		return true
	}
	return false
}

// scanResult is what a WebM stream holds, read from its start.
type scanResult struct {
	headerEnd  int64 // end of Tracks: 0 if the header is not complete
	goodEnd    int64 // end of the last complete element after the header
	durationAt int64 // offset of the reserved Void in Info, -1 if none
	firstMS    int64 // first block's absolute timecode, -1 if no block
	lastMS     int64 // latest block timecode
	blocks     int
}

var errMalformed = errors.New("recording: malformed WebM")

// ebmlReader reads EBML elements and counts its position.
type ebmlReader struct {
	r   *bufio.Reader
	pos int64
}

func (e *ebmlReader) byte() (byte, error) {
	b, err := e.r.ReadByte()
	if err == nil {
		e.pos++
	}
	return b, err
}

// vint reads a variable-size integer; with keepMarker (element ids) the
// length marker stays in the value. unknown: all value bits set.
func (e *ebmlReader) vint(keepMarker bool, maxLen int) (v uint64, unknown bool, err error) {
	b, err := e.byte()
	if err != nil {
		return 0, false, err
	}
	n := 1
	for mask := byte(0x80); n <= 8 && b&mask == 0; mask >>= 1 {
		n++
	}
	if n > maxLen {
		return 0, false, errMalformed
	}
	v = uint64(b)
	if !keepMarker {
		v &= uint64(0xff >> n)
	}
	allOnes := v == uint64(0xff>>n)
	for i := 1; i < n; i++ {
		c, err := e.byte()
		if err != nil {
			return 0, false, noEOF(err)
		}
		v = v<<8 | uint64(c)
		allOnes = allOnes && c == 0xff
	}
	return v, !keepMarker && allOnes, nil
}

// header reads an element's id and size.
func (e *ebmlReader) header() (id uint32, size int64, unknown bool, err error) {
	v, _, err := e.vint(true, 4)
	if err != nil {
		return 0, 0, false, err
	}
	s, unknown, err := e.vint(false, 8)
	if err != nil {
		return 0, 0, false, noEOF(err)
	}
	if s > 1<<56 {
		return 0, 0, false, errMalformed
	}
	return uint32(v), int64(s), unknown, nil
}

func (e *ebmlReader) skip(n int64) error {
	m, err := e.r.Discard(int(min(n, 1<<30)))
	e.pos += int64(m)
	if err == nil && int64(m) < n {
		return e.skip(n - int64(m))
	}
	return noEOF(err)
}

func (e *ebmlReader) uint(n int64) (uint64, error) {
	if n > 8 {
		return 0, errMalformed
	}
	var v uint64
	for range n {
		b, err := e.byte()
		if err != nil {
			return 0, noEOF(err)
		}
		v = v<<8 | uint64(b)
	}
	return v, nil
}

// noEOF: an end of input inside an element is a truncation.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// scanWebM reads a WebM stream as Parley writes it (a Segment and
// clusters of unknown size, SimpleBlocks) up to its end or to the first
// element that is cut short, and reports what it holds. Only a structure
// it cannot follow is an error; a truncation is told by goodEnd.
func scanWebM(r io.Reader) (scanResult, error) {
	res := scanResult{durationAt: -1, firstMS: -1}
	e := &ebmlReader{r: bufio.NewReaderSize(r, 64<<10)}
	err := scanTop(e, &res)
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		err = nil
	}
	return res, err
}

func scanTop(e *ebmlReader, res *scanResult) error {
	for {
		id, size, unknown, err := e.header()
		if err != nil {
			return err
		}
		switch {
		case id == idEBML && !unknown:
			if err := e.skip(size); err != nil {
				return err
			}
		case id == idSegment:
			return scanSegment(e, res)
		default:
			return errMalformed
		}
	}
}

func scanSegment(e *ebmlReader, res *scanResult) error {
	id, size, unknown, err := e.header()
	for err == nil {
		start := e.pos
		switch {
		case id == idCluster:
			var next uint32
			next, size, unknown, err = scanCluster(e, res, size, unknown)
			if err != nil {
				return err
			}
			if next != 0 {
				id = next
				continue
			}
		case unknown:
			return errMalformed
		case id == idInfo:
			if err := scanInfo(e, res, size); err != nil {
				return err
			}
		default:
			if err := e.skip(size); err != nil {
				return err
			}
			if id == idTracks {
				res.headerEnd = e.pos
			}
		}
		if res.headerEnd > 0 && e.pos > start {
			res.goodEnd = e.pos
		}
		id, size, unknown, err = e.header()
	}
	return err
}

func scanInfo(e *ebmlReader, res *scanResult, size int64) error {
	end := e.pos + size
	for e.pos < end {
		at := e.pos
		id, n, unknown, err := e.header()
		if err != nil {
			return noEOF(err)
		}
		if unknown {
			return errMalformed
		}
		if id == idVoid && n == durationReserve && e.pos-at == 2 {
			res.durationAt = at
		}
		if err := e.skip(n); err != nil {
			return err
		}
	}
	return nil
}

// scanCluster reads a cluster's children. For a cluster of unknown size
// it returns the id (with its size) of the element that ended it.
func scanCluster(e *ebmlReader, res *scanResult, size int64, unknown bool) (next uint32, nsize int64, nunknown bool, err error) {
	end := e.pos + size
	var tc int64
	for unknown || e.pos < end {
		id, n, unk, err := e.header()
		if err != nil {
			return 0, 0, false, err
		}
		if unknown && topLevel(id) {
			return id, n, unk, nil
		}
		if unk {
			return 0, 0, false, errMalformed
		}
		switch id {
		case idTimecode:
			v, err := e.uint(n)
			if err != nil {
				return 0, 0, false, err
			}
			tc = int64(v)
		case idSimpleBlock:
			if n < 4 {
				return 0, 0, false, errMalformed
			}
			before := e.pos
			if _, _, err := e.vint(false, 8); err != nil { // track number
				return 0, 0, false, noEOF(err)
			}
			rel, err := e.uint(2)
			if err != nil {
				return 0, 0, false, err
			}
			if err := e.skip(n - (e.pos - before)); err != nil {
				return 0, 0, false, err
			}
			ms := tc + int64(int16(rel))
			if res.firstMS < 0 || ms < res.firstMS {
				res.firstMS = ms
			}
			res.lastMS = max(res.lastMS, ms)
			res.blocks++
		default:
			if err := e.skip(n); err != nil {
				return 0, 0, false, err
			}
		}
		if res.headerEnd > 0 {
			res.goodEnd = e.pos
		}
	}
	return 0, 0, false, nil
}

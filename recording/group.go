package recording

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"time"

	"github.com/parley-meet/parley/store"
)

// group is what goes into one participant's files of one kind ("av":
// camera and microphone; "screen": a screen share and its audio). It has
// at most one live track per slot and at most one file open at a time.
//
// A file's header names its tracks, so it is written when the tracks are
// known: when both slots have a track, or partnerWait after the first
// one, and for video once a keyframe told the picture size (at most
// keyframeWait). Frames that arrive meanwhile are held. A track of the
// same codec that replaces an ended one (a camera turned off and on)
// continues in the same file; a track whose slot the file lacks (the
// camera of someone who started with the microphone only) or whose codec
// differs ends the file and starts a new one, a new catalog track.
type group struct {
	s           *session
	kind        string
	participant string
	name        string

	mu     sync.Mutex
	tracks [2]*track // the live track of each slot
	out    *output   // the file being written, nil before its header
	// Before a header: the tracks the next file will have (live ones, and
	// ended ones whose frames are held), since when, and their frames.
	members  [2]*track
	waitFrom time.Time
	held     [2][]frame
	ended    bool
	lastKey  [2]time.Time // our last keyframe request per slot
}

func newGroup(s *session, kind, participant, name string) *group {
	return &group{s: s, kind: kind, participant: participant, name: name}
}

// output is one file being written and its catalog row.
type output struct {
	file     *mediaFile
	row      store.RecordingTrack
	origin   time.Time // media time 0
	codecs   [2]string
	needKey  bool // video: nothing until the next keyframe
	pending  [2][]frame
	first    int64 // ms of the first written frame, -1 before
	last     int64 // ms of the latest written frame
	lastDur  int64
	lastSave time.Time
	lastKF   time.Time // our last periodic keyframe request
}

// add joins t to the group; false if its slot holds a live track or the
// group has ended.
func (g *group) add(t *track) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ended || g.tracks[t.slot] != nil {
		return false
	}
	now := time.Now()
	if g.out == nil && g.members[t.slot] != nil {
		g.start(now) // an ended track's frames wait for a header: write them first
	}
	g.tracks[t.slot] = t
	if o := g.out; o != nil {
		if o.file.numbers[t.slot] != 0 && strings.EqualFold(o.codecs[t.slot], t.codec.MimeType) {
			if t.slot == slotVideo {
				o.needKey = true
			}
			return true // continues in the same file
		}
		g.finishOutput(now)
		g.members = g.tracks // the next file has both
	}
	g.members[t.slot] = t
	if g.waitFrom.IsZero() {
		g.waitFrom = now
	}
	g.held[t.slot] = nil
	return true
}

// frame takes a frame of t.
func (g *group) frame(t *track, f frame) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.tracks[t.slot] != t {
		return
	}
	now := time.Now()
	if g.out == nil {
		h := g.held[t.slot]
		if t.slot == slotVideo && (f.afterLoss || len(h) == 0) && !f.key {
			g.held[t.slot] = nil
			g.askKeyframe(t, now)
			return
		}
		if len(h) >= bufferFrames {
			if t.slot == slotVideo {
				h = nil // a video frame may not lose its keyframe
			} else {
				h = h[1:]
			}
		}
		g.held[t.slot] = append(h, f)
		g.tryStart(now)
		return
	}
	o := g.out
	if t.slot == slotVideo {
		if f.afterLoss && !f.key {
			o.needKey = true
		}
		if o.needKey {
			if !f.key {
				g.askKeyframe(t, now)
				return
			}
			o.needKey = false
		}
	}
	o.pending[t.slot] = append(o.pending[t.slot], f)
	g.flush(g.out, now, false)
}

// askKeyframe asks t's publisher for a keyframe, at most every
// keyframeRetry.
func (g *group) askKeyframe(t *track, now time.Time) {
	if now.Sub(g.lastKey[t.slot]) < keyframeRetry {
		return
	}
	g.lastKey[t.slot] = now
	g.s.requestKeyframe(t.info.ID)
}

// tick does what time alone decides: writing a header whose partner did
// not come, writing frames whose partner is late, saving progress.
func (g *group) tick(now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.out == nil {
		g.tryStart(now)
		return
	}
	g.flush(g.out, now, false)
	o := g.out
	if t := g.tracks[slotVideo]; t != nil && now.Sub(o.lastKF) >= keyframeEvery {
		o.lastKF = now
		g.s.requestKeyframe(t.info.ID)
	}
	if now.Sub(o.lastSave) >= progressEvery {
		o.lastSave = now
		g.save(o, StatusRecording)
	}
}

// trackEnded: t's sink was closed and its frames are all in.
func (g *group) trackEnded(t *track) {
	g.mu.Lock()
	if g.tracks[t.slot] == t {
		g.tracks[t.slot] = nil
	}
	now := time.Now()
	empty := g.tracks[slotVideo] == nil && g.tracks[slotAudio] == nil
	if g.out == nil {
		if g.members[t.slot] == t && len(g.held[t.slot]) == 0 {
			g.members[t.slot] = nil
		}
		g.tryStart(now) // with no live track left, whatever is held is written
	} else {
		g.flush(g.out, now, false)
	}
	if empty {
		if g.out != nil {
			g.finishOutput(now)
		}
		g.ended = true
		g.members, g.held, g.waitFrom = [2]*track{}, [2][]frame{}, time.Time{}
	}
	g.mu.Unlock()
	if empty {
		g.s.removeGroup(t.gkey, g)
	}
}

// tryStart writes the header of a new file if its tracks are known: both
// are there, or the partner did not come in time, and a video track has
// told its size or did not in time. With no live track left it writes
// what is held.
func (g *group) tryStart(now time.Time) {
	if g.out != nil || g.waitFrom.IsZero() {
		return
	}
	members, live := 0, 0
	for slot := range g.members {
		if g.members[slot] != nil {
			members++
		}
		if g.tracks[slot] != nil {
			live++
		}
	}
	if members == 0 {
		return
	}
	if live > 0 {
		waited := now.Sub(g.waitFrom)
		if members < 2 && waited < partnerWait {
			return
		}
		if t := g.tracks[slotVideo]; t != nil && len(g.held[slotVideo]) == 0 && waited < keyframeWait {
			g.askKeyframe(t, now)
			return
		}
	}
	g.start(now)
}

// start creates the file of the members and writes what is held.
func (g *group) start(now time.Time) {
	var key *frame
	if h := g.held[slotVideo]; len(h) > 0 {
		key = &h[0]
	}
	var tracks []fileTrack
	var mimes []string
	var codecsOf [2]string
	for slot, t := range g.members {
		if t == nil {
			continue
		}
		ft := fileTrack{slot: slot, mime: t.codec.MimeType, channels: t.codec.Channels, name: sourceName(t)}
		if slot == slotVideo && key != nil {
			ft.width, ft.height = key.width, key.height
		}
		tracks = append(tracks, ft)
		mimes = append(mimes, t.codec.MimeType)
		codecsOf[slot] = t.codec.MimeType
	}
	origin := now
	for _, h := range g.held {
		if len(h) > 0 && h[0].at.Before(origin) {
			origin = h[0].at
		}
	}
	m := g.s.m
	started := m.now().Add(-now.Sub(origin)) // the catalog's clock at media time 0
	mf, err := createMediaFile(m.dir, m.recipients, tracks, started)
	codecsJSON, _ := json.Marshal(mimes)
	row := store.RecordingTrack{ID: randomID(), RecordingID: g.s.id, Kind: g.kind, ParticipantID: g.participant,
		ParticipantName: g.name, Codecs: string(codecsJSON), StartedUS: started.UnixMicro(), Status: StatusRecording}
	held := g.held
	g.members, g.held, g.waitFrom = [2]*track{}, [2][]frame{}, time.Time{}
	if err != nil {
		m.log.Error("recording: cannot create a file", "recording", g.s.id, "err", err)
		row.Status, row.Note = StatusFailed, "the file could not be created"
		g.addRow(row)
		// The live tracks are let go: their frames are dropped, and a new
		// track of the participant tries again.
		g.tracks = [2]*track{}
		return
	}
	row.File, row.HeaderSHA256 = mf.name, mf.headerHash
	g.addRow(row)
	o := &output{file: mf, row: row, origin: origin, codecs: codecsOf, first: -1, lastSave: now, lastKF: now}
	o.needKey = mf.numbers[slotVideo] != 0 && key == nil
	o.pending = held
	g.out = o
	m.log.Info("recording: file started", "recording", g.s.id, "track", row.ID, "kind", g.kind, "codecs", strings.Join(mimes, ","))
	g.flush(o, now, false)
}

func sourceName(t *track) string {
	switch {
	case t.info.Source == "screen" && t.slot == slotAudio:
		return "screen audio"
	case t.info.Source != "":
		return t.info.Source
	case t.slot == slotVideo:
		return "camera"
	}
	return "microphone"
}

// flush writes the pending frames in time order. A frame waits for the
// other live track of the file to have a later frame, at most
// interleaveWait; with all, everything is written.
func (g *group) flush(o *output, now time.Time, all bool) {
	for {
		slot := -1
		for s := range o.pending {
			if len(o.pending[s]) > 0 && (slot < 0 || o.pending[s][0].at.Before(o.pending[slot][0].at)) {
				slot = s
			}
		}
		if slot < 0 {
			return
		}
		f := o.pending[slot][0]
		other := 1 - slot
		waitOther := o.file.numbers[other] != 0 && g.tracks[other] != nil && len(o.pending[other]) == 0
		if !all && waitOther && now.Sub(f.at) < interleaveWait {
			return
		}
		o.pending[slot][0] = frame{}
		o.pending[slot] = o.pending[slot][1:]
		ms := f.at.Sub(o.origin).Round(time.Millisecond).Milliseconds()
		if o.first >= 0 && ms < o.last {
			ms = o.last // blocks in time order
		}
		if ms < 0 {
			ms = 0
		}
		o.file.write(slot, f.key, ms, f.data)
		if o.first < 0 {
			o.first = ms
		}
		o.last, o.lastDur = ms, f.dur.Milliseconds()
	}
}

// finishOutput writes what is pending, ends the file and records how it
// ended. g.mu is held.
func (g *group) finishOutput(now time.Time) {
	o := g.out
	g.out = nil
	g.flush(o, now, true)
	if g.s.m.crashed.Load() {
		o.file.abandon()
		o.file.closeWriters()
		return
	}
	o.file.closeWriters()
	status := StatusComplete
	if err := o.file.failure(); err != nil {
		g.s.m.log.Error("recording: a file failed", "recording", g.s.id, "track", o.row.ID, "err", err)
		status, o.row.Note = StatusFailed, "writing the file failed; what was written before may play"
	}
	g.save(o, status)
	g.s.m.log.Info("recording: file finished", "recording", g.s.id, "track", o.row.ID, "status", status, "bytes", o.row.Size)
}

// save writes the file's progress to the catalog.
func (g *group) save(o *output, status string) {
	if g.s.m.crashed.Load() {
		return
	}
	o.row.Size = o.file.written()
	if o.first >= 0 {
		o.row.DurationMS = o.last - o.first + o.lastDur
	}
	o.row.Status = status
	ctx, cancel := context.WithTimeout(context.Background(), dbTimeout)
	defer cancel()
	if err := g.s.m.store.UpdateRecordingTrack(ctx, o.row); err != nil {
		g.s.m.log.Error("recording: cannot update the catalog", "recording", g.s.id, "track", o.row.ID, "err", err)
	}
}

func (g *group) addRow(row store.RecordingTrack) {
	ctx, cancel := context.WithTimeout(context.Background(), dbTimeout)
	defer cancel()
	if err := g.s.m.store.AddRecordingTrack(ctx, row); err != nil {
		g.s.m.log.Error("recording: cannot add a track to the catalog", "recording", g.s.id, "err", err)
	}
}

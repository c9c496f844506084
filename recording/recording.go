package recording

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"filippo.io/age"

	"github.com/parley-meet/parley/sfu"
	"github.com/parley-meet/parley/store"
)

// Errors callers branch on.
var (
	ErrNotFound         = errors.New("recording: not found")
	ErrAlreadyRecording = errors.New("recording: the room is already being recorded")
	ErrNotRecording     = errors.New("recording: the room is not being recorded")
	// ErrIntegrity: a file failed authentication (changed, truncated, or
	// not the file the catalog names). Nothing of it is served.
	ErrIntegrity = errors.New("recording: the file failed its integrity check")
	// ErrNoIdentity: this server holds no identity that decrypts recordings.
	ErrNoIdentity = errors.New("recording: no identity to decrypt recordings")
	// ErrActive: the recording is still being made.
	ErrActive = errors.New("recording: the recording is in progress")
)

// Statuses of recordings and tracks.
const (
	StatusRecording   = "recording"
	StatusComplete    = "complete"
	StatusIncomplete  = "incomplete"
	StatusFailed      = "failed"
	StatusUnsupported = "unsupported" // tracks only
)

// Track kinds.
const (
	KindAV     = "av"
	KindScreen = "screen"
)

// dbTimeout bounds the catalog writes made from the media goroutines.
const dbTimeout = 10 * time.Second

// OrphanAge is how old (by this node's clock) a recording of another node
// must be before Recover takes it for interrupted because its node is not
// live. A node registers in the cluster before it records, but this node's
// view of the live nodes may be a refresh old and the nodes' clocks differ
// a little: a recording just started by a node that has just joined is
// not taken for an orphan.
const OrphanAge = time.Minute

// Config configures a Manager.
type Config struct {
	Dir        string          // recordings directory; created 0700 if missing
	Recipients []age.Recipient // every file is encrypted to all of these (at least one)
	Identities []age.Identity  // to decrypt for the portal; empty: Open returns ErrNoIdentity
	Store      *store.Store
	Logger     *slog.Logger // nil: discard
	Now        func() time.Time
	// Node is this node's id in a cluster (multi-node mode), written with
	// every recording started here; "" on a single node. Recover tells
	// this node's recordings from the others' by it.
	Node string
}

// Source is what can be recorded: *sfu.Room satisfies it. An alias of an
// unnamed interface, so that signaling.TapSource is the same type and the
// hub can drive a Manager directly (StartRoom, StopRoom).
type Source = interface {
	AddTap(h sfu.TapHandler) (*sfu.Tap, error)
}

// StartOptions describe a recording being started.
type StartOptions struct {
	RoomID    string
	StartedBy string // subject, e.g. "user:<id>"
	// Names gives a participant's display name for the catalog; it is
	// called from the media goroutines.
	Names func(participantID string) string
}

// Recording is a recorded meeting as the catalog knows it.
type Recording struct {
	ID           string
	RoomID       string
	StartedBy    string
	StartedAt    time.Time
	EndedAt      time.Time // zero while recording, or when a crash left it unknown
	Status       string    // recording | complete | incomplete | failed
	Node         string    // the cluster node that makes or made it ("" on a single node)
	Participants []string  // display names, in the order their tracks started
	Tracks       []Track
	Shares       []Share // expired ones included
}

// Track is one file of a recording (or a track that was not recorded).
type Track struct {
	ID              string
	Kind            string // "av" (camera and microphone of one participant) | "screen"
	ParticipantID   string
	ParticipantName string
	Codecs          []string // MIME types, e.g. "video/VP8", "audio/opus"
	StartedAt       time.Time
	Duration        time.Duration
	Size            int64 // plaintext bytes
	Status          string
	Note            string
}

// Share lets one user see a recording until it expires.
type Share struct {
	UserID    string
	CreatedBy string
	ExpiresAt time.Time
	CreatedAt time.Time
}

// Manager records rooms into encrypted files and keeps their catalog.
type Manager struct {
	dir        string
	recipients []age.Recipient
	identities []age.Identity
	store      *store.Store
	log        *slog.Logger
	now        func() time.Time
	node       string

	// crashed: a test has simulated a crash; files are abandoned
	// unfinished and the catalog is left as it was.
	crashed atomic.Bool
	// keyframeHook, set by tests before Start, sees keyframe requests.
	keyframeHook func(trackID string)

	verified verifyCache

	mu     sync.Mutex
	closed bool
	active map[string]*session // by room id
	done   sync.WaitGroup      // sessions being stopped
}

// New checks cfg and creates the recordings directory.
func New(cfg Config) (*Manager, error) {
	if cfg.Dir == "" {
		return nil, errors.New("recording: no recordings directory")
	}
	if len(cfg.Recipients) == 0 {
		return nil, errors.New("recording: no recipient to encrypt to")
	}
	if cfg.Store == nil {
		return nil, errors.New("recording: no store")
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("recording: create %s: %w", cfg.Dir, err)
	}
	m := &Manager{dir: cfg.Dir, recipients: cfg.Recipients, identities: cfg.Identities, store: cfg.Store,
		log: cfg.Logger, now: cfg.Now, node: cfg.Node, active: map[string]*session{}}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if m.now == nil {
		m.now = time.Now
	}
	return m, nil
}

// Start records the room that src forwards: every published track, now
// and later, until Stop. ErrAlreadyRecording if the room is.
func (m *Manager) Start(ctx context.Context, src Source, opt StartOptions) (Recording, error) {
	if opt.RoomID == "" || src == nil {
		return Recording{}, errors.New("recording: Start needs a room and a source")
	}
	id := randomID()
	s := newSession(m, id, opt.RoomID, opt.Names)
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return Recording{}, errClosed
	}
	if m.active[opt.RoomID] != nil {
		m.mu.Unlock()
		return Recording{}, ErrAlreadyRecording
	}
	m.active[opt.RoomID] = s
	m.mu.Unlock()

	rec := store.Recording{ID: id, RoomID: opt.RoomID, StartedBy: opt.StartedBy, StartedUS: m.now().UnixMicro(), Status: StatusRecording, Node: m.node}
	err := m.store.CreateRecording(ctx, rec)
	var tap *sfu.Tap
	if err == nil {
		tap, err = src.AddTap(s)
		if err != nil {
			err = fmt.Errorf("recording: tap the room: %w", err)
		}
	}
	if err != nil {
		close(s.started)
		s.finish()
		dctx, cancel := context.WithTimeout(context.Background(), dbTimeout)
		_ = m.store.DeleteRecording(dctx, id)
		cancel()
		m.mu.Lock()
		delete(m.active, opt.RoomID)
		m.mu.Unlock()
		return Recording{}, err
	}
	if tap != nil {
		s.tap.Store(tap)
	}
	close(s.started)
	m.log.Info("recording: started", "recording", id, "room", opt.RoomID)
	return Recording{ID: id, RoomID: opt.RoomID, StartedBy: opt.StartedBy, StartedAt: time.UnixMicro(rec.StartedUS), Status: StatusRecording, Node: m.node}, nil
}

// Stop finishes the room's recording: every file is completed and the
// recording is "complete" (or "failed" if no file could be written).
// StartRoom is Start in the form the signaling hub calls it
// (signaling.Recorder).
func (m *Manager) StartRoom(ctx context.Context, src Source, roomID, by string, names func(participantID string) string) error {
	_, err := m.Start(ctx, src, StartOptions{RoomID: roomID, StartedBy: by, Names: names})
	return err
}

// StopRoom is Stop in the form the signaling hub calls it.
func (m *Manager) StopRoom(ctx context.Context, roomID string) error {
	_, err := m.Stop(ctx, roomID)
	return err
}

func (m *Manager) Stop(ctx context.Context, roomID string) (Recording, error) {
	m.mu.Lock()
	s := m.active[roomID]
	if s == nil || s.stopping {
		m.mu.Unlock()
		return Recording{}, ErrNotRecording
	}
	s.stopping = true
	m.done.Add(1)
	m.mu.Unlock()
	defer m.done.Done()
	err := m.stop(ctx, s)
	m.mu.Lock()
	delete(m.active, roomID)
	m.mu.Unlock()
	if err != nil {
		return Recording{}, err
	}
	return m.Get(ctx, s.id)
}

// stop ends a session's media and marks its end in the catalog. The end
// is written whatever the catalog says: a node cut off from the cluster
// for a while may find its recording taken for an orphan and marked
// incomplete by another, and its own end, which knows the files are
// whole, is the one that counts.
func (m *Manager) stop(ctx context.Context, s *session) error {
	s.finish()
	if m.crashed.Load() {
		return nil
	}
	status := StatusComplete
	tracks, err := m.store.RecordingTracks(ctx, s.id)
	if err != nil {
		return fmt.Errorf("recording: %w", err)
	}
	recorded, failed := 0, 0
	for _, t := range tracks {
		switch t.Status {
		case StatusFailed:
			failed++
			recorded++
		case StatusComplete:
			recorded++
		}
	}
	if recorded > 0 && failed == recorded {
		status = StatusFailed
	}
	if err := m.store.FinishRecording(ctx, s.id, status, m.now().UnixMicro()); err != nil {
		return fmt.Errorf("recording: %w", err)
	}
	m.log.Info("recording: stopped", "recording", s.id, "room", s.roomID, "status", status)
	return nil
}

// Active returns the room's recording in progress.
// ActiveCount is the number of recordings running (metrics).
func (m *Manager) ActiveCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.active)
}

func (m *Manager) Active(roomID string) (Recording, bool) {
	m.mu.Lock()
	s := m.active[roomID]
	m.mu.Unlock()
	if s == nil {
		return Recording{}, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), dbTimeout)
	defer cancel()
	rec, err := m.Get(ctx, s.id)
	if err != nil {
		return Recording{ID: s.id, RoomID: roomID, Status: StatusRecording}, true
	}
	return rec, true
}

// isActive reports whether a recording is being made by this manager.
func (m *Manager) isActive(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.active {
		if s.id == id {
			return true
		}
	}
	return false
}

// Close stops every recording in progress (each completes) and waits for
// all of the manager's goroutines.
func (m *Manager) Close() error {
	m.mu.Lock()
	m.closed = true
	var sessions []*session
	for _, s := range m.active {
		if !s.stopping {
			s.stopping = true
			sessions = append(sessions, s)
		}
	}
	m.mu.Unlock()
	var errs []error
	for _, s := range sessions {
		ctx, cancel := context.WithTimeout(context.Background(), dbTimeout)
		if err := m.stop(ctx, s); err != nil {
			errs = append(errs, err)
		}
		cancel()
		m.mu.Lock()
		delete(m.active, s.roomID)
		m.mu.Unlock()
	}
	m.done.Wait()
	return errors.Join(errs...)
}

// Recover marks as "incomplete" the recordings that were left
// "recording" by a process that stopped without finishing them: those of
// this node (Config.Node) that it is not making now, and those of the
// nodes that live does not report live, once they are OrphanAge old (a
// SIGKILLed node's, or one that left the cluster for good; on a cluster
// with random node ids, a restarted node's former ones). live nil means
// a single node: no other node can be recording, so every recording left
// "recording" that this manager is not making is recovered. live is
// called after the catalog has been read.
//
// The files hold every complete 64 KiB chunk written before the stop;
// with an identity, each track's size and duration are read from what
// decrypts, else the last progress the catalog saved is kept, as it is
// when another node's file is not in this node's recordings directory.
// A recording is changed only if it is still "recording" when it is
// written (store.FinishRecordingIf), so Recover is idempotent and nodes
// may run it at the same time: one of them changes each recording. It
// returns how many recordings it changed.
func (m *Manager) Recover(ctx context.Context, live func(node string) bool) (int, error) {
	recs, err := m.store.RecordingsWithStatus(ctx, StatusRecording)
	if err != nil {
		return 0, fmt.Errorf("recording: %w", err)
	}
	now := m.now()
	n := 0
	for _, r := range recs {
		if m.isActive(r.ID) {
			continue
		}
		foreign := r.Node != m.node
		if foreign && live != nil && (now.Sub(time.UnixMicro(r.StartedUS)) < OrphanAge || live(r.Node)) {
			continue
		}
		tracks, err := m.store.RecordingTracks(ctx, r.ID)
		if err != nil {
			return n, fmt.Errorf("recording: %w", err)
		}
		var end int64
		var recovered []store.RecordingTrack
		for _, t := range tracks {
			if t.Status == StatusRecording {
				m.recoverTrack(&t, foreign)
				recovered = append(recovered, t)
			}
			if t.File != "" {
				end = max(end, t.StartedUS+t.DurationMS*1000)
			}
		}
		changed, err := m.store.FinishRecordingIf(ctx, r.ID, StatusRecording, StatusIncomplete, end, recovered)
		if err != nil {
			return n, fmt.Errorf("recording: %w", err)
		}
		if !changed {
			continue // finished meanwhile, by its recorder or another node's Recover
		}
		if foreign {
			m.log.Warn("recording: recovered a recording interrupted on a node that is gone", "recording", r.ID, "room", r.RoomID, "node", r.Node)
		} else {
			m.log.Warn("recording: recovered an interrupted recording", "recording", r.ID, "room", r.RoomID)
		}
		n++
	}
	return n, nil
}

// recoverTrack learns what an interrupted file holds. A file of another
// node's recording that is not here (the recordings directory is not
// shared) keeps the progress the catalog saved.
func (m *Manager) recoverTrack(t *store.RecordingTrack, foreign bool) {
	t.Status = StatusIncomplete
	if t.Note == "" {
		t.Note = "the recording was interrupted; the file plays up to its last complete part"
	}
	if path := m.path(t.File); path == "" {
		t.Status, t.Note = StatusFailed, "the catalog names no valid file"
		return
	} else if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		if foreign {
			m.log.Warn("recording: an interrupted file of another node is not in the recordings directory (is it shared?)", "track", t.ID)
			return
		}
		t.Status, t.Note = StatusFailed, "the file is missing"
		return
	}
	if len(m.identities) == 0 {
		return
	}
	v, err := m.verify(*t, false)
	if err != nil {
		m.log.Warn("recording: an interrupted file does not decrypt", "track", t.ID, "err", err)
		return
	}
	t.Size = v.size
	if v.scan.firstMS >= 0 {
		t.DurationMS = v.scan.lastMS - v.scan.firstMS
	}
}

// Get returns one recording with its tracks and shares.
func (m *Manager) Get(ctx context.Context, id string) (Recording, error) {
	r, err := m.store.RecordingByID(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return Recording{}, ErrNotFound
	}
	if err != nil {
		return Recording{}, fmt.Errorf("recording: %w", err)
	}
	tracks, err := m.store.RecordingTracks(ctx, id)
	if err != nil {
		return Recording{}, fmt.Errorf("recording: %w", err)
	}
	shares, err := m.store.RecordingShares(ctx, id)
	if err != nil {
		return Recording{}, fmt.Errorf("recording: %w", err)
	}
	return assemble(r, tracks, shares), nil
}

// List returns every recording, newest first.
func (m *Manager) List(ctx context.Context) ([]Recording, error) {
	recs, err := m.store.ListRecordings(ctx)
	if err != nil {
		return nil, fmt.Errorf("recording: %w", err)
	}
	tracks, err := m.store.AllRecordingTracks(ctx)
	if err != nil {
		return nil, fmt.Errorf("recording: %w", err)
	}
	shares, err := m.store.AllRecordingShares(ctx)
	if err != nil {
		return nil, fmt.Errorf("recording: %w", err)
	}
	byRec := map[string][]store.RecordingTrack{}
	for _, t := range tracks {
		byRec[t.RecordingID] = append(byRec[t.RecordingID], t)
	}
	sharesOf := map[string][]store.RecordingShare{}
	for _, sh := range shares {
		sharesOf[sh.RecordingID] = append(sharesOf[sh.RecordingID], sh)
	}
	out := make([]Recording, 0, len(recs))
	for _, r := range recs {
		out = append(out, assemble(r, byRec[r.ID], sharesOf[r.ID]))
	}
	return out, nil
}

func assemble(r store.Recording, tracks []store.RecordingTrack, shares []store.RecordingShare) Recording {
	rec := Recording{ID: r.ID, RoomID: r.RoomID, StartedBy: r.StartedBy, StartedAt: time.UnixMicro(r.StartedUS), Status: r.Status, Node: r.Node}
	if r.EndedUS != 0 {
		rec.EndedAt = time.UnixMicro(r.EndedUS)
	}
	seen := map[string]bool{}
	for _, t := range tracks {
		tr := Track{ID: t.ID, Kind: t.Kind, ParticipantID: t.ParticipantID, ParticipantName: t.ParticipantName,
			StartedAt: time.UnixMicro(t.StartedUS), Duration: time.Duration(t.DurationMS) * time.Millisecond,
			Size: t.Size, Status: t.Status, Note: t.Note}
		_ = json.Unmarshal([]byte(t.Codecs), &tr.Codecs)
		rec.Tracks = append(rec.Tracks, tr)
		who := t.ParticipantName
		if who == "" {
			who = t.ParticipantID
		}
		if !seen[who] {
			seen[who] = true
			rec.Participants = append(rec.Participants, who)
		}
	}
	for _, sh := range shares {
		rec.Shares = append(rec.Shares, Share{UserID: sh.UserID, CreatedBy: sh.CreatedBy,
			ExpiresAt: time.UnixMicro(sh.ExpiresUS), CreatedAt: time.UnixMicro(sh.CreatedUS)})
	}
	return rec
}

// Delete removes a recording's files, then its catalog entry with its
// tracks and shares. An active recording is refused (ErrActive).
func (m *Manager) Delete(ctx context.Context, id string) error {
	r, err := m.store.RecordingByID(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("recording: %w", err)
	}
	if r.Status == StatusRecording || m.isActive(id) {
		return ErrActive
	}
	tracks, err := m.store.RecordingTracks(ctx, id)
	if err != nil {
		return fmt.Errorf("recording: %w", err)
	}
	for _, t := range tracks {
		if t.File == "" {
			continue
		}
		path := m.path(t.File)
		if path == "" {
			continue // not a file the recorder made: not ours to remove
		}
		m.verified.forget(path)
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("recording: remove a file: %w", err)
		}
	}
	if err := m.store.DeleteRecording(ctx, id); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return ErrNotFound
		}
		return fmt.Errorf("recording: %w", err)
	}
	m.log.Info("recording: deleted", "recording", id)
	return nil
}

// Share lets userID see the recording until expires (again: the expiry
// changes). ErrNotFound if the recording or the user does not exist.
func (m *Manager) Share(ctx context.Context, id, userID, by string, expires time.Time) error {
	err := m.store.PutRecordingShare(ctx, store.RecordingShare{RecordingID: id, UserID: userID, CreatedBy: by,
		CreatedUS: m.now().UnixMicro(), ExpiresUS: expires.UnixMicro()})
	if errors.Is(err, store.ErrNotFound) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("recording: %w", err)
	}
	return nil
}

// Unshare ends a share; ErrNotFound if there is none.
func (m *Manager) Unshare(ctx context.Context, id, userID string) error {
	err := m.store.DeleteRecordingShare(ctx, id, userID)
	if errors.Is(err, store.ErrNotFound) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("recording: %w", err)
	}
	return nil
}

// SharedWith reports whether the recording is shared with userID by a
// share that has not expired.
func (m *Manager) SharedWith(ctx context.Context, id, userID string) (bool, error) {
	sh, err := m.store.RecordingShare(ctx, id, userID)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("recording: %w", err)
	}
	return sh.ExpiresUS > m.now().UnixMicro(), nil
}

// DeleteExpired removes the recordings whose retention has passed: a
// recording expires its room's retention (or, when the room has none or
// is gone, global) after it ended, or after it started for one that did
// not end normally; a retention of 0 keeps it forever. It returns what
// it deleted, for the caller to audit; on an error it stops there.
func (m *Manager) DeleteExpired(ctx context.Context, now time.Time, global time.Duration) ([]Recording, error) {
	recs, err := m.store.ListRecordings(ctx)
	if err != nil {
		return nil, fmt.Errorf("recording: %w", err)
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].StartedUS < recs[j].StartedUS })
	var deleted []Recording
	for _, r := range recs {
		if r.Status == StatusRecording || m.isActive(r.ID) {
			continue
		}
		keep := global
		if r.RoomRetentionS > 0 {
			keep = time.Duration(r.RoomRetentionS) * time.Second
		}
		if keep <= 0 {
			continue
		}
		base := r.EndedUS
		if r.Status != StatusComplete || base == 0 {
			base = r.StartedUS
		}
		if time.UnixMicro(base).Add(keep).After(now) {
			continue
		}
		rec, err := m.Get(ctx, r.ID)
		if err != nil {
			return deleted, err
		}
		if err := m.Delete(ctx, r.ID); err != nil && !errors.Is(err, ErrNotFound) {
			return deleted, err
		}
		deleted = append(deleted, rec)
	}
	return deleted, nil
}

// path is where a catalog's file name is, or "" for a name the recorder
// never makes (the catalog is not trusted to name other files).
func (m *Manager) path(file string) string {
	base, ok := strings.CutSuffix(file, ".webm.age")
	if !ok || len(base) != 22 {
		return ""
	}
	for _, c := range base {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return ""
		}
	}
	return filepath.Join(m.dir, file)
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

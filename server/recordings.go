package server

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/parley-meet/parley/audit"
	"github.com/parley-meet/parley/cluster"
	"github.com/parley-meet/parley/rbac"
	"github.com/parley-meet/parley/recording"
	"github.com/parley-meet/parley/signaling"
	"github.com/parley-meet/parley/store"
)

// EnableRecording serves the recording portal's API from m (nil: the
// recording endpoints answer 503 unavailable). Call before Serve.
func (s *Server) EnableRecording(m *recording.Manager) { s.recordings = m }

var (
	errNoRecording      = &Error{Status: http.StatusNotFound, Code: "not_found", Message: "no such recording"}
	errNoTrack          = &Error{Status: http.StatusNotFound, Code: "not_found", Message: "no such track in this recording"}
	errRecordingOff     = &Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "recording is not available on this server"}
	errRecordingE2EE    = &Error{Status: http.StatusConflict, Code: "e2ee_room", Message: "this room is end-to-end encrypted: the server cannot read its meetings' media, so it cannot record them"}
	errRecordingNoKey   = &Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "this server does not hold the key that decrypts recordings"}
	errRecordingCorrupt = &Error{Status: http.StatusInternalServerError, Code: "integrity", Message: "the recording file failed its integrity check; nothing of it was sent"}
	errRange            = &Error{Status: http.StatusRequestedRangeNotSatisfiable, Code: "range", Message: "the requested range is not in this file"}
)

func (s *Server) recordingRoutes() {
	api := s.app.Group("/api/v1", s.guardUnsafe)
	api.Post("/rooms/:id/recording", s.requireAuth, s.handleRoomRecording)
	api.Get("/recordings", s.requireAuth, s.handleListRecordings)
	api.Get("/recordings/:rid", s.requireAuth, s.handleGetRecording)
	api.Delete("/recordings/:rid", s.requireAuth, s.handleDeleteRecording)
	api.Get("/recordings/:rid/tracks/:tid/media", s.requireAuth, s.handleRecordingMedia)
	api.Post("/recordings/:rid/shares", s.requireAuth, s.handleShareRecording)
	api.Delete("/recordings/:rid/shares/:username", s.requireAuth, s.handleUnshareRecording)
}

// handleRoomRecording starts or stops the recording of the meeting in
// progress: room.record, as for the record message.
func (s *Server) handleRoomRecording(c *fiber.Ctx) error {
	who := userCaller(principalOf(c))
	var req struct {
		Action string `json:"action"`
	}
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if req.Action != "start" && req.Action != "stop" {
		return &Error{Status: http.StatusBadRequest, Code: "invalid_action", Message: `action is "start" or "stop"`}
	}
	r, err := s.room(c, who, rbac.ActRoomRecord)
	if err != nil {
		return err
	}
	if req.Action == "start" && r.E2EE {
		// The hub refuses too, for a meeting that started encrypted.
		s.auditEvent(c, who.actor, "recording.start", "room:"+r.ID, audit.Denied, map[string]any{"reason": "e2ee"})
		return errRecordingE2EE
	}
	if s.hub == nil || s.recordings == nil {
		return errRecordingOff
	}
	_, err = s.onMeeting(c.UserContext(), roomOp{Op: "record", Room: r.ID, On: req.Action == "start", Actor: who.actor, ClientIP: s.ClientIP(c)})
	switch {
	case err == nil:
	case errors.Is(err, cluster.ErrUnavailable):
		return clusterErr(err)
	case errors.Is(err, signaling.ErrNoMeeting):
		return &Error{Status: http.StatusConflict, Code: "no_meeting", Message: "nobody is in this room's meeting: a recording starts while people meet"}
	case errors.Is(err, signaling.ErrRecordingE2EE):
		return errRecordingE2EE // audited by the hub
	case errors.Is(err, signaling.ErrRecordingState):
		return &Error{Status: http.StatusConflict, Code: "recording_state", Message: "the meeting is already in that recording state"}
	case errors.Is(err, signaling.ErrRecordingUnavailable):
		return errRecordingOff
	default:
		return err
	}
	return c.JSON(fiber.Map{"recording": req.Action == "start"})
}

// recordingView is a recording as the portal shows it.
type recordingView struct {
	ID           string         `json:"id"`
	RoomID       string         `json:"room_id"`
	RoomName     string         `json:"room_name"`
	StartedAt    time.Time      `json:"started_at"`
	EndedAt      *time.Time     `json:"ended_at"`
	DurationS    float64        `json:"duration_s"`
	Status       string         `json:"status"`
	Participants []string       `json:"participants"`
	Size         int64          `json:"size"`
	Tracks       []trackView    `json:"tracks"`
	Permissions  []string       `json:"permissions"`
	Shares       []shareView    `json:"shares,omitempty"`
	SharedWithMe *shareViewSelf `json:"shared_with_me,omitempty"`
}

type trackView struct {
	ID              string   `json:"id"`
	Kind            string   `json:"kind"`
	ParticipantName string   `json:"participant_name"`
	Codecs          []string `json:"codecs"`
	StartedAt       string   `json:"started_at"`
	DurationS       float64  `json:"duration_s"`
	Size            int64    `json:"size"`
	Status          string   `json:"status"`
	Note            string   `json:"note,omitempty"`
}

type shareView struct {
	Username    string    `json:"username"`
	DisplayName string    `json:"display_name"`
	ExpiresAt   time.Time `json:"expires_at"`
}

type shareViewSelf struct {
	ExpiresAt time.Time `json:"expires_at"`
}

// recordingAccess is what the caller may do with rec: the recording.*
// actions rbac allows (empty: nothing, not even knowing it exists).
func (s *Server) recordingAccess(c *fiber.Ctx, who *caller, rec recording.Recording) (perms []string, share *recording.Share) {
	uid := who.user.User.ID
	for i, sh := range rec.Shares {
		if sh.UserID == uid && sh.ExpiresAt.After(s.now()) {
			share = &rec.Shares[i]
		}
	}
	for _, act := range []string{rbac.ActRecordingView, rbac.ActRecordingDownload, rbac.ActRecordingShare, rbac.ActRecordingDelete} {
		if s.rbac.CanRecording(c.UserContext(), who.subject, rec.RoomID, act, share != nil) {
			perms = append(perms, act)
		}
	}
	return perms, share
}

// recordingFor loads the recording of the path if the caller may do
// action with it. Without the right to view it the caller learns nothing:
// 404, as for a recording that does not exist. Refusals are audited.
func (s *Server) recordingFor(c *fiber.Ctx, action string) (*caller, recording.Recording, []string, error) {
	who := userCaller(principalOf(c))
	if s.recordings == nil {
		return who, recording.Recording{}, nil, errRecordingOff
	}
	rec, err := s.recordings.Get(c.UserContext(), c.Params("rid"))
	if errors.Is(err, recording.ErrNotFound) {
		return who, rec, nil, errNoRecording
	}
	if err != nil {
		return who, rec, nil, err
	}
	perms, _ := s.recordingAccess(c, who, rec)
	for _, p := range perms {
		if p == action {
			return who, rec, perms, nil
		}
	}
	s.auditEvent(c, who.actor, "authz.denied", "recording:"+rec.ID, audit.Denied, map[string]any{"action": action})
	for _, p := range perms {
		if p == rbac.ActRecordingView {
			return who, rec, perms, errForbidden
		}
	}
	return who, rec, perms, errNoRecording
}

func (s *Server) recordingView(c *fiber.Ctx, who *caller, rec recording.Recording, perms []string, share *recording.Share) recordingView {
	v := recordingView{ID: rec.ID, RoomID: rec.RoomID, StartedAt: rec.StartedAt.UTC(), Status: rec.Status,
		Participants: rec.Participants, Tracks: []trackView{}, Permissions: perms}
	if v.Participants == nil {
		v.Participants = []string{}
	}
	if r, err := s.store.RoomByID(c.UserContext(), rec.RoomID); err == nil {
		v.RoomName = r.Name
	}
	if !rec.EndedAt.IsZero() {
		end := rec.EndedAt.UTC()
		v.EndedAt = &end
		v.DurationS = end.Sub(rec.StartedAt).Seconds()
	}
	for _, t := range rec.Tracks {
		v.Size += t.Size
		codecs := t.Codecs
		if codecs == nil {
			codecs = []string{}
		}
		v.Tracks = append(v.Tracks, trackView{ID: t.ID, Kind: t.Kind, ParticipantName: t.ParticipantName, Codecs: codecs,
			StartedAt: t.StartedAt.UTC().Format(time.RFC3339), DurationS: t.Duration.Seconds(), Size: t.Size,
			Status: t.Status, Note: t.Note})
	}
	if containsAction(perms, rbac.ActRecordingShare) {
		for _, sh := range rec.Shares {
			if !sh.ExpiresAt.After(s.now()) {
				continue
			}
			sv := shareView{ExpiresAt: sh.ExpiresAt.UTC()}
			if u, err := s.store.UserByID(c.UserContext(), sh.UserID); err == nil {
				sv.Username, sv.DisplayName = u.Username, u.DisplayName
			}
			v.Shares = append(v.Shares, sv)
		}
	}
	if share != nil {
		v.SharedWithMe = &shareViewSelf{ExpiresAt: share.ExpiresAt.UTC()}
	}
	return v
}

func containsAction(perms []string, action string) bool {
	for _, p := range perms {
		if p == action {
			return true
		}
	}
	return false
}

func (s *Server) handleListRecordings(c *fiber.Ctx) error {
	who := userCaller(principalOf(c))
	if s.recordings == nil {
		return c.JSON(fiber.Map{"recordings": []recordingView{}})
	}
	all, err := s.recordings.List(c.UserContext())
	if err != nil {
		return err
	}
	out := []recordingView{}
	for _, rec := range all {
		perms, share := s.recordingAccess(c, who, rec)
		if containsAction(perms, rbac.ActRecordingView) {
			out = append(out, s.recordingView(c, who, rec, perms, share))
		}
	}
	return c.JSON(fiber.Map{"recordings": out})
}

func (s *Server) handleGetRecording(c *fiber.Ctx) error {
	who, rec, perms, err := s.recordingFor(c, rbac.ActRecordingView)
	if err != nil {
		return err
	}
	_, share := s.recordingAccess(c, who, rec)
	return c.JSON(fiber.Map{"recording": s.recordingView(c, who, rec, perms, share)})
}

func (s *Server) handleDeleteRecording(c *fiber.Ctx) error {
	who, rec, _, err := s.recordingFor(c, rbac.ActRecordingDelete)
	if err != nil {
		return err
	}
	err = s.recordings.Delete(c.UserContext(), rec.ID)
	if errors.Is(err, recording.ErrActive) {
		return &Error{Status: http.StatusConflict, Code: "recording_active", Message: "the recording is still running: stop it first"}
	}
	if err != nil {
		s.auditEvent(c, who.actor, "recording.delete", "recording:"+rec.ID, audit.Failure, map[string]any{"room": rec.RoomID})
		return err
	}
	s.auditEvent(c, who.actor, "recording.delete", "recording:"+rec.ID, audit.Success, map[string]any{"room": rec.RoomID})
	return c.SendStatus(http.StatusNoContent)
}

const (
	minShare = time.Minute
	maxShare = 366 * 24 * time.Hour
)

func (s *Server) handleShareRecording(c *fiber.Ctx) error {
	who, rec, _, err := s.recordingFor(c, rbac.ActRecordingShare)
	if err != nil {
		return err
	}
	var req struct {
		Username   string `json:"username"`
		ExpiresInS int64  `json:"expires_in_s"`
	}
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	d := time.Duration(req.ExpiresInS) * time.Second
	if req.ExpiresInS <= 0 || d < minShare || d > maxShare {
		return &Error{Status: http.StatusBadRequest, Code: "invalid_expiry", Message: "expires_in_s is from 60 seconds to 366 days"}
	}
	u, err := s.store.UserByUsername(c.UserContext(), req.Username)
	if errors.Is(err, store.ErrNotFound) {
		return &Error{Status: http.StatusNotFound, Code: "unknown_user", Message: "no such user"}
	}
	if err != nil {
		return err
	}
	expires := s.now().Add(d).UTC().Truncate(time.Second)
	if err := s.recordings.Share(c.UserContext(), rec.ID, u.ID, who.user.User.ID, expires); err != nil {
		return err
	}
	s.auditEvent(c, who.actor, "recording.share", "recording:"+rec.ID, audit.Success,
		map[string]any{"with": "user:" + u.ID, "expires_at": expires.Format(time.RFC3339)})
	return c.Status(http.StatusCreated).JSON(shareView{Username: u.Username, DisplayName: u.DisplayName, ExpiresAt: expires})
}

func (s *Server) handleUnshareRecording(c *fiber.Ctx) error {
	who, rec, _, err := s.recordingFor(c, rbac.ActRecordingShare)
	if err != nil {
		return err
	}
	u, err := s.store.UserByUsername(c.UserContext(), c.Params("username"))
	if errors.Is(err, store.ErrNotFound) {
		return &Error{Status: http.StatusNotFound, Code: "not_found", Message: "this recording is not shared with that user"}
	}
	if err != nil {
		return err
	}
	err = s.recordings.Unshare(c.UserContext(), rec.ID, u.ID)
	if errors.Is(err, recording.ErrNotFound) {
		return &Error{Status: http.StatusNotFound, Code: "not_found", Message: "this recording is not shared with that user"}
	}
	if err != nil {
		return err
	}
	s.auditEvent(c, who.actor, "recording.unshare", "recording:"+rec.ID, audit.Success, map[string]any{"with": "user:" + u.ID})
	return c.SendStatus(http.StatusNoContent)
}

// handleRecordingMedia serves one recorded file, decrypted on the fly:
// recording.view to play it, recording.download with ?download=1. HTTP
// Range (one range) is honoured, so that a <video> element can seek. A
// playback or download is audited when it starts (a request from byte 0),
// not for every range the player asks for.
func (s *Server) handleRecordingMedia(c *fiber.Ctx) error {
	download := c.Query("download") == "1"
	action, auditAction := rbac.ActRecordingView, "recording.view"
	if download {
		action, auditAction = rbac.ActRecordingDownload, "recording.download"
	}
	who, rec, _, err := s.recordingFor(c, action)
	if err != nil {
		return err
	}
	tid := c.Params("tid")
	found := false
	for _, t := range rec.Tracks {
		found = found || t.ID == tid
	}
	if !found {
		return errNoTrack
	}
	target := "recording:" + rec.ID
	m, err := s.recordings.Open(c.UserContext(), rec.ID, tid)
	switch {
	case err == nil:
	case errors.Is(err, recording.ErrIntegrity):
		s.log.Error("a recording failed its integrity check", "recording", rec.ID, "track", tid)
		s.auditEvent(c, who.actor, "recording.integrity", target, audit.Failure, map[string]any{"track": tid})
		return errRecordingCorrupt
	case errors.Is(err, recording.ErrNoIdentity):
		return errRecordingNoKey
	case errors.Is(err, recording.ErrNotFound):
		return errNoTrack
	default:
		return err
	}
	start, length, partial, rerr := parseRange(c.Get(fiber.HeaderRange), m.Size)
	if rerr != nil {
		m.Close()
		c.Set(fiber.HeaderContentRange, fmt.Sprintf("bytes */%d", m.Size))
		return rerr
	}
	if start == 0 {
		s.auditEvent(c, who.actor, auditAction, target, audit.Success, map[string]any{"track": tid, "incomplete": m.Incomplete})
	}
	disposition := "inline"
	if download {
		disposition = "attachment"
	}
	c.Set(fiber.HeaderContentType, m.ContentType)
	c.Set(fiber.HeaderContentDisposition, disposition+`; filename="`+m.FileName+`"`)
	c.Set(fiber.HeaderAcceptRanges, "bytes")
	c.Set(fiber.HeaderCacheControl, "no-store")
	c.Set(fiber.HeaderXContentTypeOptions, "nosniff")
	if partial {
		c.Set(fiber.HeaderContentRange, fmt.Sprintf("bytes %d-%d/%d", start, start+length-1, m.Size))
		c.Status(http.StatusPartialContent)
	}
	c.Response().SetBodyStream(&mediaBody{Reader: io.NewSectionReader(m, start, length), m: m}, int(length))
	return nil
}

// mediaBody streams a range of a recording and closes it after (fasthttp
// closes a body stream that is an io.Closer once it is sent).
type mediaBody struct {
	io.Reader
	m *recording.Media
}

func (b *mediaBody) Close() error { return b.m.Close() }

// parseRange reads a Range header for a resource of size bytes: one range
// ("bytes=a-b", "bytes=a-", "bytes=-n"). No header, or a form this server
// does not serve (several ranges, other units), means the whole resource.
func parseRange(h string, size int64) (start, length int64, partial bool, err error) {
	if h == "" {
		return 0, size, false, nil
	}
	spec, ok := strings.CutPrefix(strings.TrimSpace(h), "bytes=")
	if !ok || strings.Contains(spec, ",") {
		return 0, size, false, nil
	}
	a, b, ok := strings.Cut(strings.TrimSpace(spec), "-")
	if !ok {
		return 0, 0, false, errRange
	}
	switch {
	case a == "": // the last b bytes
		n, perr := strconv.ParseInt(b, 10, 64)
		if perr != nil || n <= 0 {
			return 0, 0, false, errRange
		}
		n = min(n, size)
		return size - n, n, true, nil
	default:
		first, perr := strconv.ParseInt(a, 10, 64)
		if perr != nil || first < 0 || first >= size {
			return 0, 0, false, errRange
		}
		last := size - 1
		if b != "" {
			l, perr := strconv.ParseInt(b, 10, 64)
			if perr != nil || l < first {
				return 0, 0, false, errRange
			}
			last = min(l, size-1)
		}
		return first, last - first + 1, true, nil
	}
}

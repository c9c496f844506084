package rbac

import "context"

// CanRecording decides whether subject may do action (a recording.*
// action) on a recording of room. The room's rights decide (its hosts, and
// admins through their global role); a person the recording was shared
// with (shared: an unexpired share exists, which the caller looked up) may
// view it and nothing else. A recording outlives its room's policy lines
// when the room is deleted: then only admins and shares reach it.
func (a *Authorizer) CanRecording(ctx context.Context, subject, room, action string, shared bool) bool {
	switch action {
	case ActRecordingView, ActRecordingDownload, ActRecordingShare, ActRecordingDelete:
	default:
		return false
	}
	if a.Can(ctx, subject, room, action) {
		return true
	}
	if !shared || action != ActRecordingView || !validSubject(subject) {
		return false
	}
	a.mu.RLock()
	state := a.userState
	a.mu.RUnlock()
	return a.enabled(ctx, state, subject)
}

package rbac_test

import (
	"context"
	"testing"

	"github.com/parley-meet/parley/rbac"
)

// Recordings: the room's hosts and admins do everything; a share lets a
// person view and nothing more; without a share or right, nothing; a
// disabled account gets nothing even with a share; unknown actions never.
func TestCanRecording(t *testing.T) {
	a, _, _ := open(t, sqliteOnly(), nil)
	fixture(t, a)
	ctx := context.Background()
	all := []string{rbac.ActRecordingView, rbac.ActRecordingDownload, rbac.ActRecordingShare, rbac.ActRecordingDelete}
	for _, c := range []struct {
		subject string
		shared  bool
		want    map[string]bool
	}{
		{"user:host1", false, map[string]bool{rbac.ActRecordingView: true, rbac.ActRecordingDownload: true, rbac.ActRecordingShare: true, rbac.ActRecordingDelete: true}},
		{"user:admin1", false, map[string]bool{rbac.ActRecordingView: true, rbac.ActRecordingDownload: true, rbac.ActRecordingShare: true, rbac.ActRecordingDelete: true}},
		{"user:mem1", false, map[string]bool{}},
		{"user:mem1", true, map[string]bool{rbac.ActRecordingView: true}},
		{"user:nobody", true, map[string]bool{rbac.ActRecordingView: true}},
		{"user:host2", false, map[string]bool{}}, // host of another room
		{"user:disabled1", true, map[string]bool{}},
		{"guest:g1", false, map[string]bool{}},
		{"not a subject", true, map[string]bool{}},
	} {
		for _, act := range all {
			if got := a.CanRecording(ctx, c.subject, roomA, act, c.shared); got != c.want[act] {
				t.Errorf("%s (shared %v) %s: %v, want %v", c.subject, c.shared, act, got, c.want[act])
			}
		}
	}
	if a.CanRecording(ctx, "user:host1", roomA, rbac.ActRoomManage, true) {
		t.Error("CanRecording allowed a room action")
	}
}

package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/parley-meet/parley/store"
	"github.com/parley-meet/parley/store/storetest"
)

func TestRecordingsCatalog(t *testing.T) {
	storetest.Each(t, func(t *testing.T, tg storetest.Target) {
		ctx := context.Background()
		s, _ := tg.Open(t)
		if err := s.CreateUser(ctx, store.User{ID: "u1", Username: "ann", DisplayName: "Ann", CreatedUS: 1, UpdatedUS: 1}); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateRoom(ctx, store.Room{ID: "room1", Name: "R", CreatedBy: "u1", CreatedUS: 1, UpdatedUS: 1, RecordingRetentionS: 3600}); err != nil {
			t.Fatal(err)
		}
		old := store.Recording{ID: "rec-old", RoomID: "room1", StartedBy: "user:u1", StartedUS: 100, Status: "recording"}
		gone := store.Recording{ID: "rec-gone", RoomID: "no-such-room", StartedBy: "user:u1", StartedUS: 200, EndedUS: 250, Status: "complete"}
		for _, r := range []store.Recording{old, gone} {
			if err := s.CreateRecording(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.CreateRecording(ctx, old); !errors.Is(err, store.ErrConflict) {
			t.Errorf("duplicate id: %v", err)
		}

		// The room's retention comes with the recording; a deleted room's is 0.
		got, err := s.RecordingByID(ctx, "rec-old")
		if err != nil || got.RoomRetentionS != 3600 || got.Status != "recording" || got.StartedBy != "user:u1" {
			t.Errorf("RecordingByID = %+v, %v", got, err)
		}
		list, err := s.ListRecordings(ctx)
		if err != nil || len(list) != 2 || list[0].ID != "rec-gone" || list[1].ID != "rec-old" || list[0].RoomRetentionS != 0 {
			t.Errorf("ListRecordings (newest first) = %+v, %v", list, err)
		}
		if _, err := s.RecordingByID(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("unknown recording: %v", err)
		}
		active, err := s.RecordingsWithStatus(ctx, "recording")
		if err != nil || len(active) != 1 || active[0].ID != "rec-old" {
			t.Errorf("RecordingsWithStatus = %+v, %v", active, err)
		}
		if err := s.FinishRecording(ctx, "rec-old", "complete", 190); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.RecordingByID(ctx, "rec-old"); got.Status != "complete" || got.EndedUS != 190 {
			t.Errorf("after FinishRecording: %+v", got)
		}
		if err := s.FinishRecording(ctx, "nope", "complete", 1); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("FinishRecording unknown: %v", err)
		}

		// Tracks.
		tr := store.RecordingTrack{ID: "t1", RecordingID: "rec-old", File: "f1.webm.age", Kind: "av", ParticipantID: "p1",
			ParticipantName: "Ann", Codecs: `["video/VP8","audio/opus"]`, StartedUS: 110, Status: "recording", HeaderSHA256: "abc"}
		if err := s.AddRecordingTrack(ctx, tr); err != nil {
			t.Fatal(err)
		}
		if err := s.AddRecordingTrack(ctx, store.RecordingTrack{ID: "t0", RecordingID: "rec-old", Kind: "screen", StartedUS: 105, Status: "unsupported", Note: "H.264", Codecs: "[]"}); err != nil {
			t.Fatal(err)
		}
		if err := s.AddRecordingTrack(ctx, store.RecordingTrack{ID: "t9", RecordingID: "nope", Status: "x", Codecs: "[]"}); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("track of an unknown recording: %v", err)
		}
		tr.DurationMS, tr.Size, tr.Status, tr.Note = 5000, 12345, "complete", "ok"
		if err := s.UpdateRecordingTrack(ctx, tr); err != nil {
			t.Fatal(err)
		}
		if err := s.UpdateRecordingTrack(ctx, store.RecordingTrack{ID: "t1", RecordingID: "rec-gone"}); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("update a track through another recording: %v", err)
		}
		got1, err := s.RecordingTrack(ctx, "rec-old", "t1")
		if err != nil || got1 != tr {
			t.Errorf("RecordingTrack = %+v, %v; want %+v", got1, err, tr)
		}
		if _, err := s.RecordingTrack(ctx, "rec-gone", "t1"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("track through another recording: %v", err)
		}
		tracks, err := s.RecordingTracks(ctx, "rec-old")
		if err != nil || len(tracks) != 2 || tracks[0].ID != "t0" || tracks[1].ID != "t1" {
			t.Errorf("RecordingTracks = %+v, %v", tracks, err)
		}
		if all, err := s.AllRecordingTracks(ctx); err != nil || len(all) != 2 {
			t.Errorf("AllRecordingTracks = %d, %v", len(all), err)
		}

		// Shares: upsert, unknown user or recording, delete.
		sh := store.RecordingShare{RecordingID: "rec-old", UserID: "u1", CreatedBy: "u1", CreatedUS: 10, ExpiresUS: 20}
		if err := s.PutRecordingShare(ctx, sh); err != nil {
			t.Fatal(err)
		}
		sh.ExpiresUS = 30
		if err := s.PutRecordingShare(ctx, sh); err != nil {
			t.Fatal(err)
		}
		if got, err := s.RecordingShare(ctx, "rec-old", "u1"); err != nil || got != sh {
			t.Errorf("RecordingShare = %+v, %v", got, err)
		}
		for _, bad := range []store.RecordingShare{{RecordingID: "rec-old", UserID: "nobody"}, {RecordingID: "nope", UserID: "u1"}} {
			if err := s.PutRecordingShare(ctx, bad); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("share %+v: %v", bad, err)
			}
		}
		if shares, err := s.RecordingShares(ctx, "rec-old"); err != nil || len(shares) != 1 {
			t.Errorf("RecordingShares = %+v, %v", shares, err)
		}
		if err := s.PutRecordingShare(ctx, store.RecordingShare{RecordingID: "rec-gone", UserID: "u1", ExpiresUS: 5}); err != nil {
			t.Fatal(err)
		}
		if all, err := s.AllRecordingShares(ctx); err != nil || len(all) != 2 {
			t.Errorf("AllRecordingShares = %d, %v", len(all), err)
		}
		if err := s.DeleteRecordingShare(ctx, "rec-gone", "u1"); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteRecordingShare(ctx, "rec-gone", "u1"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("second unshare: %v", err)
		}

		// Deleting the room keeps its recordings (retention then 0).
		if err := s.DeleteRoom(ctx, "room1"); err != nil {
			t.Fatal(err)
		}
		if got, err := s.RecordingByID(ctx, "rec-old"); err != nil || got.RoomRetentionS != 0 {
			t.Errorf("recording after its room was deleted: %+v, %v", got, err)
		}

		// Deleting a recording takes its tracks and shares.
		if err := s.DeleteRecording(ctx, "rec-old"); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteRecording(ctx, "rec-old"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("second delete: %v", err)
		}
		if tracks, _ := s.AllRecordingTracks(ctx); len(tracks) != 0 {
			t.Errorf("tracks left: %+v", tracks)
		}
		if shares, _ := s.AllRecordingShares(ctx); len(shares) != 0 {
			t.Errorf("shares left: %+v", shares)
		}
		if list, _ := s.ListRecordings(ctx); len(list) != 1 || list[0].ID != "rec-gone" {
			t.Errorf("left: %+v", list)
		}
	})
}

func TestRoomRecordingRetention(t *testing.T) {
	storetest.Each(t, func(t *testing.T, tg storetest.Target) {
		ctx := context.Background()
		s, _ := tg.Open(t)
		r := store.Room{ID: "r", Name: "R", CreatedBy: "u", CreatedUS: 1, UpdatedUS: 1}
		if err := s.CreateRoom(ctx, r); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.RoomByID(ctx, "r"); got.RecordingRetentionS != 0 {
			t.Errorf("default retention = %d", got.RecordingRetentionS)
		}
		r.RecordingRetentionS, r.UpdatedUS = 86400, 2
		if err := s.UpdateRoom(ctx, r); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.RoomByID(ctx, "r"); got.RecordingRetentionS != 86400 {
			t.Errorf("retention after update = %d", got.RecordingRetentionS)
		}
		if rooms, _ := s.ListRooms(ctx); len(rooms) != 1 || rooms[0].RecordingRetentionS != 86400 {
			t.Errorf("ListRooms = %+v", rooms)
		}
	})
}

// Migration 7 adds the recording's node: a recording made before it (on a
// single node) reads back with an empty node, and a new one keeps its node.
func TestRecordingNodeMigration(t *testing.T) {
	storetest.Each(t, func(t *testing.T, tg storetest.Target) {
		ctx := context.Background()
		o := tg.Options(t)
		db := storetest.DB(t, o)
		if err := store.MigrateToForTest(ctx, db, tg.Engine, 6); err != nil {
			t.Fatalf("migrate to 6: %v", err)
		}
		if _, err := db.ExecContext(ctx, `INSERT INTO recordings (id, room_id, started_by, started_us, status)
			VALUES ('rec-before', 'room1', 'user:u1', 100, 'recording')`); err != nil {
			t.Fatal(err)
		}
		s, err := store.Open(ctx, o)
		if err != nil {
			t.Fatalf("upgrade: %v", err)
		}
		defer s.Close()
		got, err := s.RecordingByID(ctx, "rec-before")
		if err != nil || got.Node != "" || got.Status != "recording" || got.StartedUS != 100 {
			t.Errorf("a recording made before the migration = %+v, %v", got, err)
		}
		if err := s.CreateRecording(ctx, store.Recording{ID: "rec-n1", RoomID: "room1", StartedBy: "user:u1", StartedUS: 200,
			Status: "recording", Node: "node-a"}); err != nil {
			t.Fatal(err)
		}
		got, err = s.RecordingByID(ctx, "rec-n1")
		if err != nil || got.Node != "node-a" {
			t.Errorf("RecordingByID = %+v, %v", got, err)
		}
		list, err := s.RecordingsWithStatus(ctx, "recording")
		if err != nil || len(list) != 2 || list[0].Node != "" || list[1].Node != "node-a" {
			t.Errorf("RecordingsWithStatus = %+v, %v", list, err)
		}
		var node string
		if err := db.QueryRowContext(ctx, `SELECT node FROM recordings WHERE id = 'rec-n1'`).Scan(&node); err != nil || node != "node-a" {
			t.Errorf("the node column holds %q, %v", node, err)
		}
	})
}

// FinishRecordingIf changes a recording only while it is still in the
// given status, with its tracks still in it; of several at once, exactly
// one wins.
func TestFinishRecordingIf(t *testing.T) {
	storetest.Each(t, func(t *testing.T, tg storetest.Target) {
		ctx := context.Background()
		s, _ := tg.Open(t)
		if err := s.CreateRecording(ctx, store.Recording{ID: "rec", RoomID: "r", StartedBy: "user:u1", StartedUS: 100, Status: "recording", Node: "n1"}); err != nil {
			t.Fatal(err)
		}
		live := store.RecordingTrack{ID: "t-live", RecordingID: "rec", File: "a.webm.age", Kind: "av", Codecs: "[]", StartedUS: 110, DurationMS: 1000, Size: 10, Status: "recording"}
		done := store.RecordingTrack{ID: "t-done", RecordingID: "rec", File: "b.webm.age", Kind: "screen", Codecs: "[]", StartedUS: 120, DurationMS: 500, Size: 5, Status: "complete", Note: "kept"}
		for _, tr := range []store.RecordingTrack{live, done} {
			if err := s.AddRecordingTrack(ctx, tr); err != nil {
				t.Fatal(err)
			}
		}
		wantLive := live
		wantLive.DurationMS, wantLive.Size, wantLive.Status, wantLive.Note = 2000, 20, "incomplete", "interrupted"
		changedDone := done
		changedDone.DurationMS, changedDone.Size, changedDone.Status, changedDone.Note = 1, 1, "incomplete", "overwritten"
		ok, err := s.FinishRecordingIf(ctx, "rec", "recording", "incomplete", 3000, []store.RecordingTrack{wantLive, changedDone})
		if err != nil || !ok {
			t.Fatalf("FinishRecordingIf = %v, %v", ok, err)
		}
		if got, _ := s.RecordingByID(ctx, "rec"); got.Status != "incomplete" || got.EndedUS != 3000 || got.Node != "n1" {
			t.Errorf("after FinishRecordingIf: %+v", got)
		}
		if got, _ := s.RecordingTrack(ctx, "rec", "t-live"); got != wantLive {
			t.Errorf("the track still recording = %+v, want %+v", got, wantLive)
		}
		if got, _ := s.RecordingTrack(ctx, "rec", "t-done"); got != done {
			t.Errorf("a finished track was changed: %+v, want %+v", got, done)
		}
		// Again: the recording has left "recording"; nothing is written.
		again := wantLive
		again.Status, again.Note = "failed", "second"
		ok, err = s.FinishRecordingIf(ctx, "rec", "recording", "failed", 9000, []store.RecordingTrack{again})
		if err != nil || ok {
			t.Errorf("second FinishRecordingIf = %v, %v", ok, err)
		}
		if got, _ := s.RecordingByID(ctx, "rec"); got.Status != "incomplete" || got.EndedUS != 3000 {
			t.Errorf("after the second FinishRecordingIf: %+v", got)
		}
		if got, _ := s.RecordingTrack(ctx, "rec", "t-live"); got != wantLive {
			t.Errorf("the second FinishRecordingIf changed a track: %+v", got)
		}
		if ok, err := s.FinishRecordingIf(ctx, "nope", "recording", "incomplete", 1, nil); err != nil || ok {
			t.Errorf("unknown recording: %v, %v", ok, err)
		}
		// The recorder's own end is unconditional.
		if err := s.FinishRecording(ctx, "rec", "complete", 4000); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.RecordingByID(ctx, "rec"); got.Status != "complete" || got.EndedUS != 4000 {
			t.Errorf("after FinishRecording: %+v", got)
		}

		// Several nodes at once: exactly one wins, and its end is the one kept.
		for round := range 5 {
			id := fmt.Sprintf("race-%d", round)
			if err := s.CreateRecording(ctx, store.Recording{ID: id, RoomID: "r", StartedBy: "user:u1", StartedUS: 1, Status: "recording"}); err != nil {
				t.Fatal(err)
			}
			const n = 8
			var wg sync.WaitGroup
			results := make([]bool, n)
			errs := make([]error, n)
			start := make(chan struct{})
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					results[i], errs[i] = s.FinishRecordingIf(ctx, id, "recording", "incomplete", int64(1000+i), nil)
				}()
			}
			close(start)
			wg.Wait()
			winners := 0
			var winner int
			for i := range n {
				if errs[i] != nil {
					t.Errorf("%s: caller %d: %v", id, i, errs[i])
				}
				if results[i] {
					winners++
					winner = i
				}
			}
			if winners != 1 {
				t.Fatalf("%s: %d callers changed the recording, want 1", id, winners)
			}
			if got, _ := s.RecordingByID(ctx, id); got.Status != "incomplete" || got.EndedUS != int64(1000+winner) {
				t.Errorf("%s: %+v, want the end of caller %d", id, got, winner)
			}
		}
	})
}

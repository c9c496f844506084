package store_test

import (
	"context"
	"errors"
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

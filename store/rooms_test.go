package store_test

import (
	"context"
	"testing"

	"github.com/parley-meet/parley/store"
	"github.com/parley-meet/parley/store/storetest"
)

func TestRoomE2EESetting(t *testing.T) {
	storetest.Each(t, func(t *testing.T, tg storetest.Target) {
		ctx := context.Background()
		s, _ := tg.Open(t)
		plain := store.Room{ID: "plain", Name: "Plain", CreatedBy: "u", CreatedUS: 1, UpdatedUS: 1}
		sealed := store.Room{ID: "sealed", Name: "Sealed", CreatedBy: "u", CreatedUS: 2, UpdatedUS: 2, E2EE: true}
		for _, r := range []store.Room{plain, sealed} {
			if err := s.CreateRoom(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		if got, _ := s.RoomByID(ctx, "plain"); got.E2EE {
			t.Error("a room created without e2ee reads back as end-to-end encrypted")
		}
		if got, _ := s.RoomByID(ctx, "sealed"); !got.E2EE {
			t.Error("a room created with e2ee reads back without it")
		}
		plain.E2EE, plain.UpdatedUS = true, 3
		if err := s.UpdateRoom(ctx, plain); err != nil {
			t.Fatal(err)
		}
		sealed.E2EE, sealed.UpdatedUS = false, 3
		if err := s.UpdateRoom(ctx, sealed); err != nil {
			t.Fatal(err)
		}
		rooms, err := s.ListRooms(ctx)
		if err != nil || len(rooms) != 2 {
			t.Fatalf("ListRooms = %+v, %v", rooms, err)
		}
		for _, r := range rooms {
			if want := r.ID == "plain"; r.E2EE != want {
				t.Errorf("after the update, room %s has e2ee %v, want %v", r.ID, r.E2EE, want)
			}
		}
	})
}

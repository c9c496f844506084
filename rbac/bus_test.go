package rbac_test

import (
	"context"
	"testing"
	"time"

	"github.com/parley-meet/parley/rbac"
)

// deliveryBound is how long the test waits for an event before it fails.
// Delivery is synchronous into a buffered channel, so the event is there
// before the mutator returns; the bound only keeps a broken bus from
// hanging the test. It is generous because some waits include a mutation
// running concurrently (a store write), which a loaded machine can slow
// past any tight figure: tests assert behaviour, not timings.
const deliveryBound = 10 * time.Second

func receive(t *testing.T, events <-chan rbac.Event) rbac.Event {
	t.Helper()
	select {
	case e, ok := <-events:
		if !ok {
			t.Fatalf("event channel closed")
		}
		return e
	case <-time.After(deliveryBound):
		t.Fatalf("no event within %v", deliveryBound)
	}
	return rbac.Event{}
}

func TestBusDeliversChanges(t *testing.T) {
	a, _, _ := open(t, sqliteOnly(), newAccounts("u", "h"))
	ctx := context.Background()
	must(t, a.SetRoomRole(ctx, "user:h", roomA, rbac.RoleHost))
	events, cancel := a.Subscribe()
	defer cancel()
	other, cancelOther := a.Subscribe()
	defer cancelOther()

	must(t, a.SetRoomRole(ctx, "user:u", roomA, rbac.RoleModerator))
	if !a.Can(ctx, "user:u", roomA, "room.moderate") {
		t.Errorf("SetRoomRole not visible through Can at once")
	}
	want := rbac.Event{Subject: "user:u", Room: roomA, Kind: rbac.EventBinding}
	if e := receive(t, events); e != want {
		t.Errorf("event = %+v, want %+v", e, want)
	}
	if e := receive(t, other); e != want {
		t.Errorf("second subscriber got %+v", e)
	}
	must(t, a.SetGlobalRoles(ctx, "user:u", []string{rbac.RoleMember}))
	if e := receive(t, events); e != (rbac.Event{Subject: "user:u", Room: rbac.Global, Kind: rbac.EventBinding}) {
		t.Errorf("global role event = %+v", e)
	}
	must(t, a.RemoveFromRoom(ctx, "user:u", roomA))
	if e := receive(t, events); e != want {
		t.Errorf("removal event = %+v", e)
	}
	// A change that changes nothing publishes nothing.
	must(t, a.RemoveFromRoom(ctx, "user:u", roomA))
	must(t, a.SetGlobalRoles(ctx, "user:u", []string{rbac.RoleMember}))
	select {
	case e := <-events:
		t.Errorf("no-op published %+v", e)
	default:
	}
}

func TestBusCancelClosesChannel(t *testing.T) {
	a, _, _ := open(t, sqliteOnly(), newAccounts("u"))
	ctx := context.Background()
	events, cancel := a.Subscribe()
	kept, cancelKept := a.Subscribe()
	defer cancelKept()
	cancel()
	cancel() // twice is harmless
	select {
	case _, ok := <-events:
		if ok {
			t.Errorf("received an event after cancel")
		}
	case <-time.After(deliveryBound):
		t.Fatalf("channel not closed by cancel")
	}
	// Publishing after a cancel neither panics nor disturbs the others.
	must(t, a.SetRoomRole(ctx, "user:u", roomA, rbac.RoleHost))
	receive(t, kept)
}

// TestBusFullBufferNeverBlocks: a subscriber that never reads does not slow
// mutations; what it missed is coalesced into a resync event.
func TestBusFullBufferNeverBlocks(t *testing.T) {
	a, _, _ := open(t, sqliteOnly(), newAccounts("h"))
	ctx := context.Background()
	must(t, a.SetRoomRole(ctx, "user:h", roomA, rbac.RoleHost))
	stuck, cancelStuck := a.Subscribe()
	defer cancelStuck()
	live, cancelLive := a.Subscribe()
	defer cancelLive()

	const changes = 300
	done := make(chan error, 1)
	go func() {
		for i := range changes {
			role := rbac.RoleViewer
			if i%2 == 1 {
				role = rbac.RoleGuest
			}
			if err := a.SetRoomRole(ctx, "guest:g", roomA, role); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	// The live subscriber reads as it goes and sees changes in order,
	// until the last one; if it fell a full buffer behind (a loaded
	// machine), what it missed came as one resync event, and fewer than
	// `changes` events arrive: it then reads on until the mutations are
	// done and its channel is empty.
	for i, resynced := 0, false; i < changes; i++ {
		var e rbac.Event
		if resynced {
			select {
			case e = <-live:
			case err := <-done:
				done <- err
				i = changes
				continue
			}
		} else {
			e = receive(t, live)
		}
		if e.Kind == rbac.EventPolicy {
			resynced = true
			continue
		}
		if e.Subject != "guest:g" {
			t.Fatalf("event %d = %+v", i, e)
		}
	}
	select {
	case err := <-done:
		must(t, err)
	case <-time.After(30 * time.Second):
		t.Fatalf("mutations blocked on a full subscriber")
	}
	var got []rbac.Event
	for len(stuck) > 0 {
		got = append(got, <-stuck)
	}
	if len(got) == 0 || len(got) > 64 {
		t.Fatalf("stuck subscriber holds %d events", len(got))
	}
	resync := 0
	for _, e := range got {
		if e == (rbac.Event{Kind: rbac.EventPolicy, Room: rbac.Global}) {
			resync++
		}
	}
	if resync != 1 {
		t.Errorf("stuck subscriber got %d resync events in %v, want 1", resync, got)
	}
}

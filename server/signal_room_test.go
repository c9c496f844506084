package server

import (
	"testing"
	"time"
)

// Deleting a room ends the meeting in progress; changing its settings
// reaches the meeting at once (a lobby switched on holds the next arrival).
func TestRoomChangesReachTheMeeting(t *testing.T) {
	f := newMeetingFixture(t, false, nil)
	host := f.ms.open(t, f.host, f.room)
	host.join()
	member := f.ms.open(t, f.bob, f.room)
	member.join()
	expect(t, "lobby on", f.host.do("PATCH", "/api/v1/rooms/"+f.room, map[string]any{"lobby": true}, nil), 200, "")
	expect(t, "add carol", f.host.do("PUT", "/api/v1/rooms/"+f.room+"/members/carol", map[string]string{"role": "viewer"}, nil), 200, "")
	carol := f.ms.open(t, f.carol, f.room)
	carol.send(map[string]any{"type": "join"})
	carol.expectWithin("lobby", 2*time.Second)

	expect(t, "delete", f.host.do("DELETE", "/api/v1/rooms/"+f.room, nil, nil), 204, "")
	member.expectWithin("ended", 2*time.Second)
	member.expectClose(1000, 2*time.Second)
}

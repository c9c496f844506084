package store_test

import (
	"context"
	"strings"
	"testing"

	"github.com/parley-meet/parley/store"
	"github.com/parley-meet/parley/store/storetest"
)

func TestInactiveUsers(t *testing.T) {
	storetest.Each(t, func(t *testing.T, tg storetest.Target) {
		s, _ := tg.Open(t)
		ctx := context.Background()
		const cutoff = int64(1_000_000)
		for _, u := range []store.User{
			{ID: "1", Username: "old-login", LastLoginUS: cutoff - 1, CreatedUS: 1},
			{ID: "2", Username: "recent-login", LastLoginUS: cutoff, CreatedUS: 1},
			{ID: "3", Username: "never-old", CreatedUS: cutoff - 1},
			{ID: "4", Username: "never-new", CreatedUS: cutoff + 5},
			{ID: "5", Username: "disabled-old", LastLoginUS: 5, CreatedUS: 1, Disabled: true},
			{ID: "6", Username: "another-old", LastLoginUS: 7, CreatedUS: 1},
		} {
			u.DisplayName, u.UpdatedUS = u.Username, u.CreatedUS
			if err := s.CreateUser(ctx, u); err != nil {
				t.Fatal(err)
			}
		}
		us, err := s.InactiveUsers(ctx, cutoff, 10)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, u := range us {
			names = append(names, u.Username)
		}
		if got := strings.Join(names, ","); got != "another-old,never-old,old-login" {
			t.Errorf("inactive users %s", got)
		}
		if us, _ := s.InactiveUsers(ctx, cutoff, 1); len(us) != 1 {
			t.Errorf("limit 1 gave %d", len(us))
		}
	})
}

func TestQueryAuditNeedsALimit(t *testing.T) {
	s, _ := storetest.Targets()[0].Open(t)
	for _, n := range []int{0, -1, 10001} {
		if _, err := s.QueryAudit(context.Background(), store.AuditFilter{Limit: n}); err == nil {
			t.Errorf("limit %d accepted", n)
		}
	}
	if _, err := s.CountAuditByBucket(context.Background(), 10, 10, 1, []string{"a"}); err == nil {
		t.Error("an empty range was counted")
	}
}

package audit_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-meet/parley/audit"
	"github.com/parley-meet/parley/store"
	"github.com/parley-meet/parley/store/storetest"
)

// queryFixture records a known set of entries, one a minute from 10:00.
type queryFixture struct {
	l     *audit.Log
	s     *store.Store
	o     store.Options
	start time.Time
}

var fixtureEvents = []audit.Event{
	{Actor: "user:a", Action: "auth.login", Target: "user:a", Outcome: audit.Failure, ClientIP: "192.0.2.1", Details: map[string]any{"reason": "wrong password"}}, // 1
	{Actor: "user:a", Action: "auth.login", Target: "user:a", Outcome: audit.Success},                                                                             // 2
	{Actor: "user:b", Action: "auth.mfa", Target: "user:b", Outcome: audit.Failure},                                                                               // 3
	{Actor: "user:b", Action: "authx.other", Outcome: audit.Success},                                                                                              // 4
	{Actor: "user:a", Action: "user.reset_mfa", Target: "user:b", Outcome: audit.Success},                                                                         // 5
	{Actor: "user:a", Action: "user.resetxmfa", Target: "user:b", Outcome: audit.Success},                                                                         // 6
	{Actor: "anonymous", Action: "auth.throttled", Target: "login:c", Outcome: audit.Denied},                                                                      // 7
	{Actor: "user:A", Action: "AUTH.LOGIN", Outcome: audit.Failure},                                                                                               // 8
	{Actor: "system", Action: "réseau.é", Outcome: audit.Success},                                                                                                 // 9
}

func newQueryFixture(t *testing.T, tg storetest.Target) *queryFixture {
	t.Helper()
	s, o := tg.Open(t)
	start := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	at := start
	l := audit.New(s, func() time.Time { mu.Lock(); defer mu.Unlock(); return at })
	for i, e := range fixtureEvents {
		mu.Lock()
		at = start.Add(time.Duration(i) * time.Minute)
		mu.Unlock()
		if _, err := l.Record(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	return &queryFixture{l: l, s: s, o: o, start: start}
}

func seqs(es []audit.Entry) string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprint(&b, e.Seq)
	}
	return b.String()
}

func TestQueryFilters(t *testing.T) {
	storetest.Each(t, func(t *testing.T, tg storetest.Target) {
		f := newQueryFixture(t, tg)
		ctx := context.Background()
		at := func(min int) time.Time { return f.start.Add(time.Duration(min) * time.Minute) }
		for _, c := range []struct {
			name string
			f    audit.Filter
			want string
		}{
			{"everything, newest first", audit.Filter{Limit: 100}, "9,8,7,6,5,4,3,2,1"},
			{"oldest first", audit.Filter{Oldest: true, Limit: 3}, "1,2,3"},
			{"actor exact and case-sensitive", audit.Filter{Actor: "user:a", Limit: 100}, "6,5,2,1"},
			{"action exact", audit.Filter{Action: "auth.login", Limit: 100}, "2,1"},
			{"action prefix stops at the dot", audit.Filter{Action: "auth.*", Limit: 100}, "7,3,2,1"},
			{"prefix without the dot", audit.Filter{Action: "auth*", Limit: 100}, "7,4,3,2,1"},
			{"underscore is no wildcard", audit.Filter{Action: "user.reset_*", Limit: 100}, "5"},
			{"non-ASCII prefix", audit.Filter{Action: "réseau.*", Limit: 100}, "9"},
			{"outcome", audit.Filter{Outcome: audit.Failure, Limit: 100}, "8,3,1"},
			{"target", audit.Filter{Target: "user:b", Limit: 100}, "6,5,3"},
			{"combined", audit.Filter{Actor: "user:a", Action: "auth.*", Outcome: audit.Success, Limit: 100}, "2"},
			{"from is inclusive", audit.Filter{From: at(6), Limit: 100}, "9,8,7"},
			{"to is exclusive", audit.Filter{To: at(2), Limit: 100}, "2,1"},
			{"from and to", audit.Filter{From: at(2), To: at(4), Limit: 100}, "4,3"},
			{"from with nanoseconds past an entry", audit.Filter{From: at(2).Add(time.Nanosecond), Limit: 100}, "9,8,7,6,5,4"},
			{"to with nanoseconds past an entry", audit.Filter{To: at(2).Add(time.Nanosecond), Limit: 100}, "3,2,1"},
			{"before_seq", audit.Filter{BeforeSeq: 4, Limit: 100}, "3,2,1"},
			{"after_seq oldest first", audit.Filter{AfterSeq: 6, Oldest: true, Limit: 100}, "7,8,9"},
			{"limit", audit.Filter{Limit: 2}, "9,8"},
			{"nothing matches", audit.Filter{Actor: "user:nobody", Limit: 100}, ""},
			{"quote in a value", audit.Filter{Actor: "x' OR '1'='1", Limit: 100}, ""},
		} {
			es, err := f.l.Query(ctx, c.f)
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
				continue
			}
			if got := seqs(es); got != c.want {
				t.Errorf("%s: got %q, want %q", c.name, got, c.want)
			}
		}
		// An entry comes back whole.
		es, _ := f.l.Query(ctx, audit.Filter{BeforeSeq: 2, Limit: 1})
		if len(es) != 1 || es[0].Actor != "user:a" || es[0].ClientIP != "192.0.2.1" || string(es[0].Details) != `{"reason":"wrong password"}` ||
			!es[0].At.Equal(f.start) || es[0].PrevHash != audit.GenesisHash || es[0].Hash == "" {
			t.Errorf("entry 1: %+v", es)
		}
	})
}

func TestQueryRefusesBadFilters(t *testing.T) {
	st, _ := storetest.Targets()[0].Open(t)
	l := audit.New(st, nil)
	now := time.Now()
	for name, f := range map[string]audit.Filter{
		"no limit":        {},
		"limit too large": {Limit: audit.MaxPage + 1},
		"bad outcome":     {Outcome: "maybe", Limit: 1},
		"from after to":   {From: now, To: now.Add(-time.Second), Limit: 1},
		"from equals to":  {From: now, To: now, Limit: 1},
		"negative seq":    {BeforeSeq: -1, Limit: 1},
		"lone star":       {Action: "*", Limit: 1},
		"huge actor":      {Actor: strings.Repeat("a", 300), Limit: 1},
	} {
		if _, err := l.Query(context.Background(), f); !errors.Is(err, audit.ErrInvalidFilter) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

func TestPage(t *testing.T) {
	storetest.Each(t, func(t *testing.T, tg storetest.Target) {
		f := newQueryFixture(t, tg)
		ctx := context.Background()
		var pages []string
		filter := audit.Filter{Limit: 4}
		for i := 0; i < 10; i++ {
			es, next, err := f.l.Page(ctx, filter)
			if err != nil {
				t.Fatal(err)
			}
			pages = append(pages, seqs(es))
			if next == 0 {
				break
			}
			if next != es[len(es)-1].Seq {
				t.Fatalf("next %d after page %s", next, seqs(es))
			}
			filter.BeforeSeq = next
		}
		if got := strings.Join(pages, "|"); got != "9,8,7,6|5,4,3,2|1" {
			t.Errorf("pages %s", got)
		}
		// A page that ends exactly at the last entry says there is no more.
		es, next, err := f.l.Page(ctx, audit.Filter{Actor: "user:a", Limit: 4})
		if err != nil || seqs(es) != "6,5,2,1" || next != 0 {
			t.Errorf("exact page: %s, next %d, %v", seqs(es), next, err)
		}
		es, next, _ = f.l.Page(ctx, audit.Filter{Actor: "user:a", Limit: 3})
		if seqs(es) != "6,5,2" || next != 2 {
			t.Errorf("short page: %s, next %d", seqs(es), next)
		}
	})
}

func TestHistogram(t *testing.T) {
	storetest.Each(t, func(t *testing.T, tg storetest.Target) {
		s, _ := tg.Open(t)
		base := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
		var at time.Time
		l := audit.New(s, func() time.Time { return at })
		rec := func(when time.Duration, action, outcome string) {
			at = base.Add(when)
			if _, err := l.Record(context.Background(), audit.Event{Actor: "x", Action: action, Outcome: outcome}); err != nil {
				t.Fatal(err)
			}
		}
		rec(-time.Microsecond, "auth.login", audit.Failure) // before the range
		rec(0, "auth.login", audit.Failure)                 // bucket 0, at its start
		rec(59*time.Minute+59*time.Second, "auth.login", audit.Failure)
		rec(59*time.Minute, "auth.login", audit.Success)
		rec(time.Hour, "auth.login", audit.Failure) // bucket 1
		rec(90*time.Minute, "auth.throttled", audit.Denied)
		rec(150*time.Minute, "auth.mfa", audit.Failure) // bucket 2
		rec(150*time.Minute, "room.create", audit.Success)
		rec(3*time.Hour, "auth.login", audit.Failure) // at the end: outside
		counts, err := l.Histogram(context.Background(), base, base.Add(3*time.Hour), time.Hour, []string{"auth.login", "auth.mfa", "auth.throttled"})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, c := range counts {
			got = append(got, fmt.Sprintf("%s %s/%s=%d", c.Start.Format("15:04"), c.Action, c.Outcome, c.N))
		}
		want := "08:00 auth.login/failure=2,08:00 auth.login/success=1,09:00 auth.login/failure=1,09:00 auth.throttled/denied=1,10:00 auth.mfa/failure=1"
		if len(got) != 5 || !sameSet(got, strings.Split(want, ",")) {
			t.Errorf("histogram %v, want %s", got, want)
		}
		if _, err := l.Histogram(context.Background(), base, base, time.Hour, []string{"auth.login"}); err == nil {
			t.Error("an empty range was counted")
		}
	})
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]int{}
	for _, x := range a {
		m[x]++
	}
	for _, x := range b {
		m[x]--
	}
	for _, n := range m {
		if n != 0 {
			return false
		}
	}
	return true
}

// VerifyLive finds what Verify finds, and also rows stored past the head.
func TestVerifyLive(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name    string
		tamper  []string
		wantSeq int64
	}{
		{"intact", nil, 0},
		{"edit actor", []string{`UPDATE audit_log SET actor = 'user:evil' WHERE seq = 3`}, 3},
		{"delete middle", []string{`DELETE FROM audit_log WHERE seq = 2`}, 2},
		{"delete last", []string{`DELETE FROM audit_log WHERE seq = 9`}, 9},
		{"delete last and move head back", []string{`DELETE FROM audit_log WHERE seq = 9`, `UPDATE audit_head SET seq = 8`}, 8},
		{"row past the head", []string{
			`INSERT INTO audit_log (seq, at_us, actor, action, target, outcome, client_ip, details, prev_hash, hash)
			 SELECT 10, at_us, 'user:evil', action, target, outcome, client_ip, details, hash, hash FROM audit_log WHERE seq = 9`}, 10},
	} {
		t.Run(c.name, func(t *testing.T) {
			storetest.Each(t, func(t *testing.T, tg storetest.Target) {
				f := newQueryFixture(t, tg)
				db := storetest.DB(t, f.o)
				for _, q := range c.tamper {
					if _, err := db.Exec(q); err != nil {
						t.Fatalf("tamper %q: %v", q, err)
					}
				}
				res, err := audit.VerifyLive(ctx, f.s)
				var broken *audit.BrokenError
				if c.wantSeq == 0 {
					if err != nil || res.Count != 9 {
						t.Fatalf("intact chain: %+v, %v", res, err)
					}
					head, err := audit.StoredHead(ctx, f.s)
					if err != nil || head.Seq != 9 || head.Hash != res.Head || head.Rows != 9 {
						t.Errorf("stored head %+v, %v; verify %+v", head, err, res)
					}
					return
				}
				if !errors.As(err, &broken) || broken.Seq != c.wantSeq || broken.Reason == "" {
					t.Fatalf("verify after tampering = %v, want broken at %d", err, c.wantSeq)
				}
			})
		})
	}
}

// Entries appended while VerifyLive walks are not a broken tail.
func TestVerifyLiveWhileAppending(t *testing.T) {
	storetest.Each(t, func(t *testing.T, tg storetest.Target) {
		f := newQueryFixture(t, tg)
		ctx, cancel := context.WithCancel(context.Background())
		l := audit.New(f.s, nil)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				l.Record(context.Background(), audit.Event{Actor: "system", Action: "test.append", Outcome: audit.Success})
			}
		}()
		for i := 0; i < 20; i++ {
			if _, err := audit.VerifyLive(context.Background(), f.s); err != nil {
				t.Errorf("verify %d while appending: %v", i, err)
				break
			}
		}
		cancel()
		wg.Wait()
	})
}

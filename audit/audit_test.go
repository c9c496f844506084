package audit_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-meet/parley/audit"
	"github.com/parley-meet/parley/internal/leakcheck"
	"github.com/parley-meet/parley/store"
	"github.com/parley-meet/parley/store/storetest"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

// fill records n events and returns the entries.
func fill(t *testing.T, l *audit.Log, n int) []audit.Entry {
	t.Helper()
	var out []audit.Entry
	for i := 1; i <= n; i++ {
		e, err := l.Record(context.Background(), audit.Event{
			Actor: fmt.Sprintf("user:%d", i), Action: "auth.login", Target: "user:x",
			Outcome: audit.Success, ClientIP: "192.0.2.7",
			Details: map[string]any{"method": "totp", "attempt": i, "zeta": "z", "alpha": []int{1, 2}},
		})
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		out = append(out, e)
	}
	return out
}

func TestChainIntact(t *testing.T) {
	storetest.Each(t, func(t *testing.T, tg storetest.Target) {
		s, _ := tg.Open(t)
		clock := time.Date(2026, 11, 26, 10, 0, 0, 123456789, time.FixedZone("X", 3600))
		l := audit.New(s, func() time.Time { return clock })

		res, err := audit.Verify(context.Background(), s)
		if err != nil || res.Count != 0 || res.Head != audit.GenesisHash {
			t.Fatalf("empty chain: %+v, %v", res, err)
		}
		entries := fill(t, l, 5)
		if entries[0].PrevHash != audit.GenesisHash {
			t.Errorf("first entry's previous hash = %s", entries[0].PrevHash)
		}
		for i := 1; i < len(entries); i++ {
			if entries[i].PrevHash != entries[i-1].Hash || entries[i].Seq != int64(i+1) {
				t.Errorf("entry %d does not link to %d", i+1, i)
			}
		}
		if got := entries[0].At; got.Location() != time.UTC || got.Nanosecond() != 123456000 {
			t.Errorf("time = %v, want UTC truncated to microseconds", got)
		}
		if string(entries[0].Details) != `{"alpha":[1,2],"attempt":1,"method":"totp","zeta":"z"}` {
			t.Errorf("details not canonical: %s", entries[0].Details)
		}
		res, err = audit.Verify(context.Background(), s)
		if err != nil {
			t.Fatalf("verify: %v", err)
		}
		if res.Count != 5 || res.Head != entries[4].Hash {
			t.Errorf("verify = %+v, want 5 entries and head %s", res, entries[4].Hash)
		}
	})
}

func TestTamperingDetected(t *testing.T) {
	cases := []struct {
		name    string
		tamper  []string
		wantSeq int64
	}{
		{"edit actor", []string{`UPDATE audit_log SET actor = 'user:evil' WHERE seq = 3`}, 3},
		{"edit outcome", []string{`UPDATE audit_log SET outcome = 'failure' WHERE seq = 4`}, 4},
		{"edit details", []string{`UPDATE audit_log SET details = '{}' WHERE seq = 2`}, 2},
		{"edit time", []string{`UPDATE audit_log SET at_us = at_us + 1 WHERE seq = 5`}, 5},
		{"edit and rehash one row", []string{`UPDATE audit_log SET actor = 'x', hash = 'ab' WHERE seq = 2`}, 2},
		{"delete middle", []string{`DELETE FROM audit_log WHERE seq = 3`}, 3},
		{"delete first", []string{`DELETE FROM audit_log WHERE seq = 1`}, 1},
		{"delete last", []string{`DELETE FROM audit_log WHERE seq = 6`}, 6},
		{"delete last and move head back", []string{
			`DELETE FROM audit_log WHERE seq = 6`,
			`UPDATE audit_head SET seq = 5`}, 5},
		{"reorder two rows", []string{
			`UPDATE audit_log SET seq = -1 WHERE seq = 2`,
			`UPDATE audit_log SET seq = 2 WHERE seq = 3`,
			`UPDATE audit_log SET seq = 3 WHERE seq = -1`}, 2},
		{"insert forged row", []string{
			`UPDATE audit_log SET seq = seq + 100 WHERE seq >= 4`,
			`UPDATE audit_log SET seq = seq - 99 WHERE seq >= 104`,
			`INSERT INTO audit_log (seq, at_us, actor, action, target, outcome, client_ip, details, prev_hash, hash)
			 SELECT 4, at_us, 'user:evil', action, target, outcome, client_ip, details, hash, hash FROM audit_log WHERE seq = 3`}, 4},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			storetest.Each(t, func(t *testing.T, tg storetest.Target) {
				s, o := tg.Open(t)
				fill(t, audit.New(s, nil), 6)
				db := storetest.DB(t, o)
				for _, q := range c.tamper {
					if _, err := db.Exec(q); err != nil {
						t.Fatalf("tamper %q: %v", q, err)
					}
				}
				_, err := audit.Verify(context.Background(), s)
				var broken *audit.BrokenError
				if !errors.As(err, &broken) {
					t.Fatalf("verify after tampering = %v, want a BrokenError", err)
				}
				if broken.Seq != c.wantSeq {
					t.Errorf("first broken entry = %d (%s), want %d", broken.Seq, broken.Reason, c.wantSeq)
				}
			})
		})
	}
}

func TestConcurrentAppendsNeverFork(t *testing.T) {
	storetest.Each(t, func(t *testing.T, tg storetest.Target) {
		s, o := tg.Open(t)
		// A second store on the same database plays a second process.
		s2, err := store.Open(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		defer s2.Close()
		logs := []*audit.Log{audit.New(s, nil), audit.New(s2, nil)}
		const workers, each = 8, 10
		var wg sync.WaitGroup
		errs := make(chan error, workers*each)
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := 0; i < each; i++ {
					_, err := logs[w%2].Record(context.Background(), audit.Event{
						Actor: fmt.Sprintf("worker:%d", w), Action: "test.append", Outcome: audit.Success})
					if err != nil {
						errs <- err
					}
				}
			}(w)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("append: %v", err)
		}
		res, err := audit.Verify(context.Background(), s)
		if err != nil {
			t.Fatalf("verify: %v", err)
		}
		if res.Count != workers*each {
			t.Errorf("count = %d, want %d", res.Count, workers*each)
		}
	})
}

func TestInvalidEventsChangeNothing(t *testing.T) {
	storetest.Each(t, func(t *testing.T, tg storetest.Target) {
		s, _ := tg.Open(t)
		l := audit.New(s, nil)
		bad := []audit.Event{
			{Action: "x", Outcome: audit.Success},
			{Actor: "a", Outcome: audit.Success},
			{Actor: "a", Action: "x", Outcome: "maybe"},
			{Actor: "a", Action: "x", Outcome: audit.Success, Details: map[string]any{"Password": "hunter2"}},
			{Actor: "a", Action: "x", Outcome: audit.Success, Details: map[string]any{"token": "t"}},
			{Actor: "a", Action: "x", Outcome: audit.Success, Details: map[string]any{"big": string(make([]byte, 9000))}},
		}
		for i, e := range bad {
			if _, err := l.Record(context.Background(), e); !errors.Is(err, audit.ErrInvalidEvent) {
				t.Errorf("event %d: err = %v, want ErrInvalidEvent", i, err)
			}
		}
		res, err := audit.Verify(context.Background(), s)
		if err != nil || res.Count != 0 {
			t.Errorf("after refused events: %+v, %v; want an empty, intact chain", res, err)
		}
	})
}

func TestHostileFieldsStoredInertly(t *testing.T) {
	storetest.Each(t, func(t *testing.T, tg storetest.Target) {
		s, o := tg.Open(t)
		l := audit.New(s, nil)
		long := strings.Repeat("é", 300)
		weird := "a\x00b\xffc\n'; DROP TABLE audit_log; --"
		for _, v := range []string{long, weird, "日本語" + strings.Repeat("x", 300)} {
			if _, err := l.Record(context.Background(), audit.Event{Actor: v, Action: v, Target: v, Outcome: audit.Failure, ClientIP: v}); err != nil {
				t.Fatalf("record %q: %v", v, err)
			}
		}
		if _, err := audit.Verify(context.Background(), s); err != nil {
			t.Fatalf("verify: %v", err)
		}
		var n int
		if err := storetest.DB(t, o).QueryRow(`SELECT count(*) FROM audit_log WHERE length(actor) <= 256`).Scan(&n); err != nil || n != 3 {
			t.Errorf("bounded rows = %d, %v; want 3", n, err)
		}
	})
}

// Observers see every recorded entry, after it is stored, and nothing
// that was refused.
func TestObserve(t *testing.T) {
	st, _ := storetest.Targets()[0].Open(t)
	l := audit.New(st, nil)
	var seen []string
	l.Observe(func(e audit.Entry) { seen = append(seen, e.Action+"/"+e.Outcome+"/"+strconv.FormatInt(e.Seq, 10)) })
	var second int
	l.Observe(func(audit.Entry) { second++ })
	ctx := context.Background()
	if _, err := l.Record(ctx, audit.Event{Actor: "system", Action: "a.one", Outcome: audit.Success}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Record(ctx, audit.Event{Actor: "system", Action: "a.bad", Outcome: "maybe"}); err == nil {
		t.Fatal("an invalid event was recorded")
	}
	if _, err := l.Record(ctx, audit.Event{Actor: "user:x", Action: "a.two", Outcome: audit.Denied}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(seen, ",") != "a.one/success/1,a.two/denied/2" || second != 2 {
		t.Errorf("observed %v and %d", seen, second)
	}
}

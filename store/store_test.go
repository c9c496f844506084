package store_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parley-meet/parley/internal/leakcheck"
	"github.com/parley-meet/parley/store"
	"github.com/parley-meet/parley/store/storetest"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

func TestOpenMigratesAndReopens(t *testing.T) {
	storetest.Each(t, func(t *testing.T, tg storetest.Target) {
		s, o := tg.Open(t)
		if s.Engine() != tg.Engine {
			t.Errorf("engine = %s, want %s", s.Engine(), tg.Engine)
		}
		if err := s.Ping(context.Background()); err != nil {
			t.Fatalf("ping: %v", err)
		}
		head, err := s.AuditHead(context.Background())
		if err != nil || head.Seq != 0 || len(head.Hash) != 64 {
			t.Fatalf("fresh head = %+v, %v", head, err)
		}
		// Opening again finds every migration applied and keeps the data.
		if _, err := s.AppendAudit(context.Background(), func(h store.AuditHead) (store.AuditRecord, error) {
			return store.AuditRecord{Seq: h.Seq + 1, PrevHash: h.Hash, Hash: "h1", Actor: "a", Action: "b", Outcome: "success", Details: "{}"}, nil
		}); err != nil {
			t.Fatal(err)
		}
		s2, err := store.Open(context.Background(), o)
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		defer s2.Close()
		if h, _ := s2.AuditHead(context.Background()); h.Seq != 1 || h.Hash != "h1" {
			t.Errorf("head after reopen = %+v", h)
		}
		var versions int
		if err := storetest.DB(t, o).QueryRow(`SELECT count(*) FROM goose_db_version WHERE is_applied`).Scan(&versions); err != nil || versions < 2 {
			t.Errorf("goose versions = %d, %v", versions, err)
		}
	})
}

func TestAppendAuditRefusesRecordNotFollowingHead(t *testing.T) {
	storetest.Each(t, func(t *testing.T, tg storetest.Target) {
		s, _ := tg.Open(t)
		for _, bad := range []store.AuditRecord{
			{Seq: 2, PrevHash: strings.Repeat("0", 64), Hash: "x"},
			{Seq: 1, PrevHash: "elsewhere", Hash: "x"},
		} {
			_, err := s.AppendAudit(context.Background(), func(store.AuditHead) (store.AuditRecord, error) { return bad, nil })
			if !errors.Is(err, store.ErrAuditHeadMoved) {
				t.Errorf("append %+v: err = %v", bad, err)
			}
		}
		n := 0
		s.ScanAudit(context.Background(), func(store.AuditRecord) error { n++; return nil })
		if h, _ := s.AuditHead(context.Background()); n != 0 || h.Seq != 0 {
			t.Errorf("refused appends changed the log: %d rows, head %+v", n, h)
		}
	})
}

func TestSQLiteFileSettings(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	s, err := store.Open(context.Background(), store.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for path, want := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, store.SQLiteFile): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s mode = %v, want %v", path, fi.Mode().Perm(), want)
		}
	}
	db := storetest.DB(t, store.Options{DataDir: dir})
	var mode string
	if err := db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v; want wal", mode, err)
	}
	// Foreign keys and the busy timeout are per connection: check Parley's own.
	var fk, busy int
	if err := s.QueryRowForTest(context.Background(), `PRAGMA foreign_keys`).Scan(&fk); err != nil || fk != 1 {
		t.Errorf("foreign_keys = %d, %v; want 1", fk, err)
	}
	if err := s.QueryRowForTest(context.Background(), `PRAGMA busy_timeout`).Scan(&busy); err != nil || busy < 5000 {
		t.Errorf("busy_timeout = %d, %v; want >= 5000", busy, err)
	}
}

func TestPostgresURLErrors(t *testing.T) {
	_, err := store.Open(context.Background(), store.Options{DatabaseURL: "postgres://u:pw@[::1"})
	if !errors.Is(err, store.ErrBadURL) {
		t.Errorf("unparseable URL: err = %v, want ErrBadURL", err)
	}
	// Nothing listens on port 1: a clear error, bounded in time, no password.
	start := time.Now()
	_, err = store.Open(context.Background(), store.Options{
		DatabaseURL: "postgres://parley:sekrit-pw@127.0.0.1:1/parley?sslmode=disable", ConnectTimeout: time.Second})
	if err == nil || errors.Is(err, store.ErrBadURL) {
		t.Fatalf("unreachable server: err = %v", err)
	}
	if strings.Contains(err.Error(), "sekrit-pw") {
		t.Errorf("error leaks the password: %v", err)
	}
	if !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("error does not say where: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v to give up", d)
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://u:pw@h/db":                    "postgres://u:xxxxx@h/db",
		"postgres://h/db?password=pw&sslmode=off": "postgres://h/db?password=xxxxx&sslmode=off",
		"postgres://h/db":                         "postgres://h/db",
	} {
		if got := store.RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

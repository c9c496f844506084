// Package storetest opens real, empty stores for tests: an SQLite database
// in a temporary directory and, when PARLEY_TEST_DATABASE_URL names a
// PostgreSQL server, a PostgreSQL schema of its own that is dropped when the
// test ends. Tests that use Each run once per engine, so one suite covers
// both.
package storetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"testing"

	"github.com/parley-meet/parley/store"
)

// EnvDatabaseURL names the PostgreSQL server used by tests.
const EnvDatabaseURL = "PARLEY_TEST_DATABASE_URL"

// Target is one engine to test against.
type Target struct {
	Engine store.Engine
	// Options opens a fresh, empty database of this engine each time it is
	// called; the database is removed when the test ends.
	Options func(t testing.TB) store.Options
}

// Each runs fn as a subtest for every available engine. PostgreSQL is
// skipped when PARLEY_TEST_DATABASE_URL is unset, except under CI (CI=true),
// where its absence fails the test.
func Each(t *testing.T, fn func(t *testing.T, target Target)) {
	t.Helper()
	for _, target := range Targets() {
		t.Run(string(target.Engine), func(t *testing.T) {
			if target.Engine == store.Postgres && os.Getenv(EnvDatabaseURL) == "" {
				if os.Getenv("CI") == "true" {
					t.Fatalf("%s is not set: the PostgreSQL store tests must run in CI", EnvDatabaseURL)
				}
				t.Skipf("%s is not set", EnvDatabaseURL)
			}
			fn(t, target)
		})
	}
}

// Targets lists both engines.
func Targets() []Target {
	return []Target{
		{Engine: store.SQLite, Options: func(t testing.TB) store.Options {
			return store.Options{DataDir: t.TempDir()}
		}},
		{Engine: store.Postgres, Options: postgresOptions},
	}
}

// Open opens a fresh store of the target's engine, closed when the test ends.
func (tg Target) Open(t testing.TB) (*store.Store, store.Options) {
	t.Helper()
	o := tg.Options(t)
	s, err := store.Open(context.Background(), o)
	if err != nil {
		t.Fatalf("open %s store: %v", tg.Engine, err)
	}
	t.Cleanup(func() { s.Close() })
	return s, o
}

// postgresOptions creates a schema with a random name and returns options
// whose URL selects it through search_path.
func postgresOptions(t testing.TB) store.Options {
	t.Helper()
	base := os.Getenv(EnvDatabaseURL)
	if base == "" {
		t.Skipf("%s is not set", EnvDatabaseURL)
	}
	var b [8]byte
	rand.Read(b[:])
	schema := "parley_test_" + hex.EncodeToString(b[:])
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatalf("open %s: %v", store.RedactURL(base), err)
	}
	if _, err := admin.Exec(`CREATE SCHEMA ` + schema); err != nil {
		admin.Close()
		t.Fatalf("create schema on %s: %v", store.RedactURL(base), err)
	}
	t.Cleanup(func() {
		admin.Exec(`DROP SCHEMA ` + schema + ` CASCADE`)
		admin.Close()
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("parse %s: %v", EnvDatabaseURL, err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return store.Options{DatabaseURL: u.String()}
}

// DB opens a raw connection to the same database as o, for tests that play
// an attacker editing rows behind Parley's back.
func DB(t testing.TB, o store.Options) *sql.DB {
	t.Helper()
	var db *sql.DB
	var err error
	if o.DatabaseURL != "" {
		db, err = sql.Open("pgx", o.DatabaseURL)
	} else {
		db, err = sql.Open("sqlite", "file:"+o.DataDir+"/"+store.SQLiteFile+"?_pragma=busy_timeout(10000)")
	}
	if err != nil {
		t.Fatalf("open raw database: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

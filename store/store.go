// Package store owns Parley's durable state and is the only package that
// writes SQL. It opens the embedded SQLite database (modernc.org/sqlite, pure
// Go) under the data directory, or PostgreSQL through pgx, and brings either
// to the newest schema with the goose migrations embedded in the binary.
//
// The same queries run on both engines; where they differ, the difference
// stays inside this package. It never logs row contents and never decides
// permissions.
package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

//go:embed migrations/*.sql
var migrations embed.FS

// Engine names a database engine.
type Engine string

// The supported engines.
const (
	SQLite   Engine = "sqlite"
	Postgres Engine = "postgres"
)

// SQLiteFile is the database file's name inside the data directory.
const SQLiteFile = "parley.db"

// Errors of Open that mean the configuration names no usable database.
var (
	// ErrBadURL: the PostgreSQL URL cannot be parsed.
	ErrBadURL = errors.New("invalid database URL")
	// ErrUnreachable: PostgreSQL did not accept a connection in time.
	ErrUnreachable = errors.New("database unreachable")
	// ErrNoDatabase: Options.MustExist was set and there is no SQLite
	// database in the data directory, or the directory cannot be used.
	ErrNoDatabase = errors.New("no usable database")
)

// Options says which database to open.
type Options struct {
	// DataDir holds the SQLite database when DatabaseURL is empty.
	DataDir string
	// DatabaseURL is a postgres:// URL; empty selects SQLite.
	DatabaseURL string
	// ConnectTimeout bounds the wait for PostgreSQL to accept connections
	// (it may still be starting, as under compose). Zero means 10 s.
	ConnectTimeout time.Duration
	// Logger receives migration progress; nil discards it.
	Logger *slog.Logger
	// MustExist refuses to create a new SQLite database (for commands that
	// inspect an existing one, such as `parley audit verify`).
	MustExist bool
}

// Store is an open, migrated database.
type Store struct {
	db     *sql.DB
	engine Engine
}

// Open connects to the database chosen by o and applies pending migrations.
func Open(ctx context.Context, o Options) (*Store, error) {
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var (
		s   *Store
		err error
	)
	if o.DatabaseURL != "" {
		s, err = openPostgres(ctx, o)
	} else {
		s, err = openSQLite(o.DataDir, o.MustExist)
	}
	if err != nil {
		return nil, err
	}
	if err := s.migrate(ctx, logger); err != nil {
		s.db.Close()
		return nil, err
	}
	return s, nil
}

func openSQLite(dataDir string, mustExist bool) (*Store, error) {
	path := filepath.Join(dataDir, SQLiteFile)
	flags := os.O_RDWR
	if mustExist {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrNoDatabase, path, errors.Unwrap(err))
		}
	} else {
		if err := os.MkdirAll(dataDir, 0o700); err != nil {
			return nil, fmt.Errorf("%w: create data directory: %v", ErrNoDatabase, err)
		}
		flags |= os.O_CREATE
	}
	// Create the file ourselves so that it is private from the first byte.
	f, err := os.OpenFile(path, flags, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%w: open %s: %v", ErrNoDatabase, path, errors.Unwrap(err))
	}
	f.Close()
	q := url.Values{}
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "synchronous(NORMAL)")
	// Every transaction takes the write lock at BEGIN, so that read-then-write
	// transactions (the audit chain) are serialised instead of failing with
	// SQLITE_BUSY half-way.
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open SQLite database: %w", err)
	}
	db.SetMaxOpenConns(8)
	db.SetMaxIdleConns(8)
	db.SetConnMaxIdleTime(5 * time.Minute)
	if err := db.Ping(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open SQLite database %s: %w", path, err)
	}
	return &Store{db: db, engine: SQLite}, nil
}

func openPostgres(ctx context.Context, o Options) (*Store, error) {
	if _, err := pgx.ParseConfig(o.DatabaseURL); err != nil {
		// pgx's message may quote the URL, password included: say less.
		return nil, fmt.Errorf("%w: %s", ErrBadURL, "cannot parse it as a PostgreSQL connection URL")
	}
	db, err := sql.Open("pgx", o.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadURL, err)
	}
	db.SetMaxOpenConns(20)
	db.SetMaxIdleConns(10)
	db.SetConnMaxIdleTime(5 * time.Minute)

	timeout := o.ConnectTimeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	deadline := time.Now().Add(timeout)
	for {
		pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		err = db.PingContext(pctx)
		cancel()
		if err == nil {
			return &Store{db: db, engine: Postgres}, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			db.Close()
			return nil, fmt.Errorf("%w: cannot connect to PostgreSQL at %s: %v", ErrUnreachable, RedactURL(o.DatabaseURL), err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (s *Store) migrate(ctx context.Context, logger *slog.Logger) error {
	dialect := goose.DialectSQLite3
	var opts []goose.ProviderOption
	opts = append(opts, goose.WithSlog(logger), goose.WithDisableGlobalRegistry(true))
	if s.engine == Postgres {
		dialect = goose.DialectPostgres
		// Several nodes may start at once against one database: take a
		// session-level advisory lock while migrating.
		locker, err := lock.NewPostgresSessionLocker()
		if err != nil {
			return fmt.Errorf("migrations: %w", err)
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	p, err := goose.NewProvider(dialect, s.db, migrationsFS(), opts...)
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	return nil
}

func migrationsFS() fs.FS {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		panic(err) // the embedded directory is fixed at build time
	}
	return sub
}

// Engine says which database engine is in use.
func (s *Store) Engine() Engine { return s.engine }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// RedactURL returns u without its password, for messages.
func RedactURL(u string) string {
	parsed, err := url.Parse(u)
	if err != nil {
		return "(unparseable URL)"
	}
	q := parsed.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		parsed.RawQuery = q.Encode()
	}
	return parsed.Redacted()
}

// withTx runs fn in a transaction and commits it if fn returns nil.
func (s *Store) withTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

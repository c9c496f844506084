package store

import (
	"context"
	"database/sql"

	"github.com/pressly/goose/v3"
)

// MigrateToForTest applies the embedded migrations up to version v only,
// on a raw connection: an older schema, for tests of an upgrade.
func MigrateToForTest(ctx context.Context, db *sql.DB, engine Engine, v int64) error {
	dialect := goose.DialectSQLite3
	if engine == Postgres {
		dialect = goose.DialectPostgres
	}
	p, err := goose.NewProvider(dialect, db, migrationsFS(), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return err
	}
	_, err = p.UpTo(ctx, v)
	return err
}

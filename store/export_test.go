package store

import (
	"context"
	"database/sql"
)

// QueryRowForTest runs a query on Parley's own connection pool.
func (s *Store) QueryRowForTest(ctx context.Context, q string) *sql.Row {
	return s.db.QueryRowContext(ctx, q)
}

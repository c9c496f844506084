package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// CasbinRule is one line of the Casbin policy that rbac/ evaluates: PType
// is "p" (a permission) or "g" (a role binding), V0..V2 its values in the
// order of the model's definition. The store keeps the lines as they are
// given and never interprets them; rbac/ validates what it writes.
type CasbinRule struct {
	PType string
	V0    string
	V1    string
	V2    string
}

// casbinColumns names the value columns in field order: a filter's field
// index selects one of these, never a column named by the caller.
var casbinColumns = [...]string{"v0", "v1", "v2"}

// ErrBadFilter: a filter of RemoveFilteredCasbinRules names no value
// column or more than there are.
var ErrBadFilter = errors.New("invalid policy filter")

// CasbinRules returns every policy line, ordered by ptype and values.
func (s *Store) CasbinRules(ctx context.Context) ([]CasbinRule, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT ptype, v0, v1, v2 FROM casbin_rule ORDER BY ptype, v0, v1, v2`)
	if err != nil {
		return nil, fmt.Errorf("list policy: %w", err)
	}
	defer rows.Close()
	var out []CasbinRule
	for rows.Next() {
		var r CasbinRule
		if err := rows.Scan(&r.PType, &r.V0, &r.V1, &r.V2); err != nil {
			return nil, fmt.Errorf("list policy: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list policy: %w", err)
	}
	return out, nil
}

// AddCasbinRules inserts rules in one transaction. A line that is already
// stored is left as it is, so adding is idempotent.
func (s *Store) AddCasbinRules(ctx context.Context, rules []CasbinRule) error {
	return s.UpdateCasbinRules(ctx, nil, rules)
}

// RemoveCasbinRules deletes rules in one transaction; lines that are not
// stored are ignored.
func (s *Store) RemoveCasbinRules(ctx context.Context, rules []CasbinRule) error {
	return s.UpdateCasbinRules(ctx, rules, nil)
}

// UpdateCasbinRules deletes remove and then inserts add, in one
// transaction, so that a change made of several lines (a role replaced by
// another) is stored whole or not at all.
func (s *Store) UpdateCasbinRules(ctx context.Context, remove, add []CasbinRule) error {
	if len(remove) == 0 && len(add) == 0 {
		return nil
	}
	err := s.withTx(ctx, func(tx *sql.Tx) error {
		if err := deleteCasbinRules(ctx, tx, remove); err != nil {
			return err
		}
		return insertCasbinRules(ctx, tx, add)
	})
	if err != nil {
		return fmt.Errorf("update policy: %w", err)
	}
	return nil
}

// RemoveFilteredCasbinRules deletes the lines of ptype whose values,
// starting at field fieldIndex (0 is v0), equal values; an empty value
// matches anything, as in Casbin's RemoveFilteredPolicy. ErrBadFilter if
// the fields run past v2.
func (s *Store) RemoveFilteredCasbinRules(ctx context.Context, ptype string, fieldIndex int, values ...string) error {
	if fieldIndex < 0 || fieldIndex+len(values) > len(casbinColumns) {
		return fmt.Errorf("%w: field %d with %d values", ErrBadFilter, fieldIndex, len(values))
	}
	var b strings.Builder
	b.WriteString(`DELETE FROM casbin_rule WHERE ptype = $1`)
	args := []any{ptype}
	for i, v := range values {
		if v == "" {
			continue
		}
		args = append(args, v)
		b.WriteString(" AND " + casbinColumns[fieldIndex+i] + " = $" + strconv.Itoa(len(args)))
	}
	if _, err := s.db.ExecContext(ctx, b.String(), args...); err != nil {
		return fmt.Errorf("remove filtered policy: %w", err)
	}
	return nil
}

// ReplaceCasbinRules makes rules the whole policy, in one transaction
// (Casbin's SavePolicy).
func (s *Store) ReplaceCasbinRules(ctx context.Context, rules []CasbinRule) error {
	err := s.withTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM casbin_rule`); err != nil {
			return err
		}
		return insertCasbinRules(ctx, tx, rules)
	})
	if err != nil {
		return fmt.Errorf("replace policy: %w", err)
	}
	return nil
}

func insertCasbinRules(ctx context.Context, tx *sql.Tx, rules []CasbinRule) error {
	if len(rules) == 0 {
		return nil
	}
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO casbin_rule (ptype, v0, v1, v2)
		VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`)
	if err != nil {
		return err
	}
	defer stmt.Close()
	for _, r := range rules {
		if _, err := stmt.ExecContext(ctx, r.PType, r.V0, r.V1, r.V2); err != nil {
			return err
		}
	}
	return nil
}

func deleteCasbinRules(ctx context.Context, tx *sql.Tx, rules []CasbinRule) error {
	if len(rules) == 0 {
		return nil
	}
	stmt, err := tx.PrepareContext(ctx, `DELETE FROM casbin_rule
		WHERE ptype = $1 AND v0 = $2 AND v1 = $3 AND v2 = $4`)
	if err != nil {
		return err
	}
	defer stmt.Close()
	for _, r := range rules {
		if _, err := stmt.ExecContext(ctx, r.PType, r.V0, r.V1, r.V2); err != nil {
			return err
		}
	}
	return nil
}

package pins

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"github.com/caddy-nomos/nomos/internal/sqlitefile"
)

const sqliteSchema = `
CREATE TABLE IF NOT EXISTS tool_pins (
	upstream TEXT NOT NULL,
	tool     TEXT NOT NULL,
	pin      TEXT NOT NULL, -- the Pin as JSON
	PRIMARY KEY (upstream, tool)
);
PRAGMA user_version = 1;
`

// sqliteStore keeps pins in a SQLite file in WAL mode. Updates run in
// BEGIN IMMEDIATE transactions, so a server and `nomos mcp pins` sharing the
// file never interleave a read-compare-write.
type sqliteStore struct{ db *sql.DB }

// OpenSQLite opens (creating if needed, mode 0600) the pin store at path.
func OpenSQLite(path string) (Store, error) {
	db, err := sqlitefile.Open(path)
	if err != nil {
		return nil, fmt.Errorf("pins: open sqlite %s: %w", path, err)
	}
	if _, err := db.Exec(sqliteSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("pins: create schema in %s: %w", path, err)
	}
	return &sqliteStore{db: db}, nil
}

func (s *sqliteStore) Update(ctx context.Context, upstream string, fn func(map[string]Pin) ([]Pin, error)) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("pins: begin: %w", err)
	}
	defer tx.Rollback()
	pins, err := queryPins(ctx, tx, upstream)
	if err != nil {
		return err
	}
	byTool := make(map[string]Pin, len(pins))
	for _, p := range pins {
		byTool[p.Tool] = p
	}
	writes, err := fn(byTool)
	if err != nil {
		return err
	}
	for _, p := range writes {
		data, err := json.Marshal(p)
		if err != nil {
			return fmt.Errorf("pins: encode %s/%s: %w", p.Upstream, p.Tool, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO tool_pins (upstream, tool, pin) VALUES (?, ?, ?)
			ON CONFLICT (upstream, tool) DO UPDATE SET pin = excluded.pin`, upstream, p.Tool, string(data)); err != nil {
			return fmt.Errorf("pins: write %s/%s: %w", upstream, p.Tool, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("pins: commit: %w", err)
	}
	return nil
}

func (s *sqliteStore) List(ctx context.Context, upstream string) ([]Pin, error) {
	return queryPins(ctx, s.db, upstream)
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func queryPins(ctx context.Context, q querier, upstream string) ([]Pin, error) {
	rows, err := q.QueryContext(ctx, `SELECT pin FROM tool_pins WHERE ? = '' OR upstream = ? ORDER BY upstream, tool`, upstream, upstream)
	if err != nil {
		return nil, fmt.Errorf("pins: read: %w", err)
	}
	defer rows.Close()
	var out []Pin
	for rows.Next() {
		var data string
		var p Pin
		if err := rows.Scan(&data); err != nil {
			return nil, fmt.Errorf("pins: read: %w", err)
		}
		if err := json.Unmarshal([]byte(data), &p); err != nil {
			return nil, fmt.Errorf("pins: decode stored pin: %w", err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

func (s *sqliteStore) Close() error { return s.db.Close() }

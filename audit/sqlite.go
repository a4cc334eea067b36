package audit

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// SQLiteSink stores every event as one row of the audit_events table. A
// row is committed before Write returns, so a decision recorded there
// survives a crash of the process that acts on it.
type SQLiteSink struct {
	db *sql.DB
}

// auditSchema is append-only by convention. seq is AUTOINCREMENT so a
// deleted last row leaves a trace in sqlite_sequence that VerifySQLite
// checks.
func auditSchema() []string {
	return []string{
		`CREATE TABLE IF NOT EXISTS audit_events (
		seq INTEGER PRIMARY KEY AUTOINCREMENT,
		event_id TEXT NOT NULL UNIQUE,
		event_type TEXT NOT NULL,
		trace_id TEXT NOT NULL,
		action_id TEXT NOT NULL,
		timestamp TEXT NOT NULL,
		json TEXT NOT NULL,
		prev_event_hash TEXT NOT NULL,
		event_hash TEXT NOT NULL
	)`,
		`CREATE INDEX IF NOT EXISTS audit_events_trace_id ON audit_events(trace_id)`,
		`CREATE INDEX IF NOT EXISTS audit_events_action_id ON audit_events(action_id)`,
	}
}

// OpenSQLite opens or creates the audit database at path, creating its
// directory.
func OpenSQLite(path string) (*SQLiteSink, error) {
	db, err := openWritable(path)
	if err != nil {
		return nil, fmt.Errorf("audit: open sqlite %q: %w", path, err)
	}
	// Bounded because each connection carries its own page cache, and the
	// UI's queries must not pile up without limit behind a slow disk.
	db.SetMaxOpenConns(maxSQLiteConns)
	if err := execAll(db, auditSchema()...); err != nil {
		db.Close()
		return nil, fmt.Errorf("audit: open sqlite %q: create schema: %w", path, err)
	}
	return &SQLiteSink{db: db}, nil
}

// Name implements Sink.
func (s *SQLiteSink) Name() string { return "sqlite" }

// Write implements Sink. Writing an event that is already stored is a
// no-op; reusing its event_id for different content is an error, because
// silently keeping the old row would hide the new one from the chain.
func (s *SQLiteSink) Write(ctx context.Context, e *Event, line []byte) error {
	// The insert happens only if the event links to the file's current
	// last row, checked in the same statement (SQLite holds the write lock
	// for it), so two processes appending to one file cannot fork the
	// chain: the one that lost the race gets ErrStaleHead and relinks.
	res, err := s.db.ExecContext(ctx, `INSERT INTO audit_events
		(event_id, event_type, trace_id, action_id, timestamp, json, prev_event_hash, event_hash)
		SELECT ?, ?, ?, ?, ?, ?, ?, ?
		WHERE COALESCE((SELECT event_hash FROM audit_events ORDER BY seq DESC LIMIT 1), '') = ?
		ON CONFLICT(event_id) DO NOTHING`,
		e.EventID, e.EventType, e.TraceID, e.ActionID, formatTimestamp(e.Timestamp),
		string(line), e.PrevEventHash, e.EventHash, e.PrevEventHash)
	if err != nil {
		return fmt.Errorf("insert event: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 1 {
		return err
	}
	return s.checkSameEvent(ctx, e)
}

// checkSameEvent explains an insert that did nothing: the event is already
// stored (a replay, fine), or another writer appended first (stale head).
func (s *SQLiteSink) checkSameEvent(ctx context.Context, e *Event) error {
	var stored string
	err := s.db.QueryRowContext(ctx,
		`SELECT event_hash FROM audit_events WHERE event_id = ?`, e.EventID).Scan(&stored)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrStaleHead
	}
	if err != nil {
		return fmt.Errorf("check duplicate event: %w", err)
	}
	if stored != e.EventHash {
		return fmt.Errorf("event_id %s is already stored with different content", e.EventID)
	}
	return nil
}

// LastEventHash implements Head.
func (s *SQLiteSink) LastEventHash(ctx context.Context) (string, error) {
	var h string
	err := s.db.QueryRowContext(ctx,
		`SELECT event_hash FROM audit_events ORDER BY seq DESC LIMIT 1`).Scan(&h)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return h, err
}

// Close implements Sink.
func (s *SQLiteSink) Close() error { return s.db.Close() }

// Filter selects events for Query. Empty fields match everything.
type Filter struct {
	TraceID   string
	ActionID  string
	EventType string
	// Limit caps the result to the most recent matching events.
	// Default: 100; at most 10000.
	Limit int
}

const maxSQLiteConns = 4

const (
	defaultQueryLimit = 100
	maxQueryLimit     = 10000
)

// Query returns the most recent events matching f, oldest first, decoded
// from the stored (redacted) JSON.
func (s *SQLiteSink) Query(ctx context.Context, f Filter) ([]Event, error) {
	where, args := f.where()
	q := `SELECT json FROM (SELECT seq, json FROM audit_events` + where +
		` ORDER BY seq DESC LIMIT ?) ORDER BY seq ASC`
	rows, err := s.db.QueryContext(ctx, q, append(args, f.limit())...)
	if err != nil {
		return nil, fmt.Errorf("audit: query: %w", err)
	}
	defer rows.Close()
	var events []Event
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return nil, fmt.Errorf("audit: query: %w", err)
		}
		var e Event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			return nil, fmt.Errorf("audit: query: decode stored event: %w", err)
		}
		events = append(events, e)
	}
	return events, rows.Err()
}

func (f Filter) where() (string, []any) {
	var conds []string
	var args []any
	for _, c := range []struct{ col, val string }{
		{"trace_id", f.TraceID}, {"action_id", f.ActionID}, {"event_type", f.EventType},
	} {
		if c.val != "" {
			conds = append(conds, c.col+" = ?")
			args = append(args, c.val)
		}
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

func (f Filter) limit() int {
	if f.Limit <= 0 {
		return defaultQueryLimit
	}
	return min(f.Limit, maxQueryLimit)
}

func formatTimestamp(t time.Time) string {
	return t.UTC().Format(time.RFC3339Nano)
}

// Interface guards
var (
	_ Sink = (*SQLiteSink)(nil)
	_ Head = (*SQLiteSink)(nil)
)

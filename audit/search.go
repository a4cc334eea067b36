package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// SearchQuery selects events for a reader such as the operator UI. Empty
// fields match everything.
type SearchQuery struct {
	TraceID   string
	Principal string
	// Decision matches the event's decision (ALLOW, DENY, REQUIRE_APPROVAL,
	// or an approval's APPROVED and DENIED).
	Decision  string
	EventType string
	// ActionTypePrefix keeps events whose action type starts with it
	// ("mcp." for every MCP action).
	ActionTypePrefix string
	Since, Until     time.Time
	// Before is the cursor of the next page: only events recorded before
	// the event with this sequence number. Default: 0 (the newest).
	Before int64
	// Limit caps a page. Default: 50; at most 1000.
	Limit int
}

// StoredEvent is an event with its position in the log.
type StoredEvent struct {
	Seq int64 `json:"seq"`
	Event
}

// SearchPage is one page of events, newest first. Next is the cursor of
// the following page, 0 when there is none.
type SearchPage struct {
	Events []StoredEvent `json:"events"`
	Next   int64         `json:"next,omitempty"`
}

const (
	defaultSearchLimit = 50
	maxSearchLimit     = 1000
)

// OpenSQLiteReader opens an existing audit database read-only, for
// queries next to the writer (which may be another process).
func OpenSQLiteReader(path string) (*SQLiteSink, error) {
	db, err := openReadOnly(path)
	if err != nil {
		return nil, fmt.Errorf("audit: open sqlite %q read-only: %w", path, err)
	}
	db.SetMaxOpenConns(maxSQLiteConns)
	return &SQLiteSink{db: db}, nil
}

// Search returns one page of events matching q, newest first.
func (s *SQLiteSink) Search(ctx context.Context, q SearchQuery) (SearchPage, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = defaultSearchLimit
	}
	limit = min(limit, maxSearchLimit)
	where, args := q.where()
	rows, err := s.db.QueryContext(ctx, `SELECT seq, json FROM audit_events`+where+
		` ORDER BY seq DESC LIMIT ?`, append(args, limit+1)...)
	if err != nil {
		return SearchPage{}, fmt.Errorf("audit: search: %w", err)
	}
	defer rows.Close()
	var page SearchPage
	for rows.Next() {
		var ev StoredEvent
		var line string
		if err := rows.Scan(&ev.Seq, &line); err != nil {
			return SearchPage{}, fmt.Errorf("audit: search: %w", err)
		}
		if err := json.Unmarshal([]byte(line), &ev.Event); err != nil {
			return SearchPage{}, fmt.Errorf("audit: search: decode stored event: %w", err)
		}
		page.Events = append(page.Events, ev)
	}
	if len(page.Events) > limit {
		page.Events = page.Events[:limit]
		page.Next = page.Events[limit-1].Seq
	}
	return page, rows.Err()
}

func (q SearchQuery) where() (string, []any) {
	var conds []string
	var args []any
	add := func(cond string, v any) {
		conds = append(conds, cond)
		args = append(args, v)
	}
	for _, c := range []struct{ cond, val string }{
		{"trace_id = ?", q.TraceID},
		{"event_type = ?", q.EventType},
		{"json_extract(json, '$.principal') = ?", q.Principal},
		{"json_extract(json, '$.decision') = ?", q.Decision},
	} {
		if c.val != "" {
			add(c.cond, c.val)
		}
	}
	if q.ActionTypePrefix != "" {
		add("substr(json_extract(json, '$.action_type'), 1, ?) = ?", len(q.ActionTypePrefix))
		args = append(args, q.ActionTypePrefix)
	}
	// julianday, not string order: RFC 3339 with trimmed fractions does
	// not sort as text.
	if !q.Since.IsZero() {
		add("julianday(timestamp) >= julianday(?)", formatTimestamp(q.Since))
	}
	if !q.Until.IsZero() {
		add("julianday(timestamp) <= julianday(?)", formatTimestamp(q.Until))
	}
	if q.Before > 0 {
		add("seq < ?", q.Before)
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

package audit

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
)

// VerifyReport is the outcome of VerifySQLite.
type VerifyReport struct {
	// Events is the number of rows that verified, in seq order, before the
	// first problem; all rows when OK.
	Events int `json:"events"`
	// OK is true when every row verified and none is missing.
	OK bool `json:"ok"`
	// FirstBadSeq is the seq of the first row that failed, or of the first
	// missing row. Zero when OK.
	FirstBadSeq int64 `json:"first_bad_seq,omitempty"`
	// Problem says what is wrong with FirstBadSeq. Empty when OK.
	Problem string `json:"problem,omitempty"`
	// LastEventHash is the hash of the last verified row. Comparing it with
	// a copy kept elsewhere (a collector) is the only way to detect a file
	// rewritten from scratch.
	LastEventHash string `json:"last_event_hash,omitempty"`
}

// VerifySQLite checks the audit database at path without modifying it. It
// recomputes every event hash, checks each row links to the row before it,
// that seq has no gap from 1 to the last value ever assigned, and that the
// indexed columns match the stored JSON. An error means the file could not
// be read; tampering is reported in the VerifyReport.
func VerifySQLite(ctx context.Context, path string) (*VerifyReport, error) {
	db, err := openReadOnly(path)
	if err != nil {
		return nil, fmt.Errorf("audit: verify: open %q: %w", path, err)
	}
	defer db.Close()
	rep, lastSeq, err := walkChain(ctx, db)
	if err != nil || !rep.OK {
		return rep, err
	}
	return rep, checkTail(ctx, db, rep, lastSeq)
}

// storedRow is one audit_events row as read from disk.
type storedRow struct {
	seq                                          int64
	eventID, eventType, traceID, actionID, stamp string
	line, prev, hash                             string
}

func walkChain(ctx context.Context, db *sql.DB) (*VerifyReport, int64, error) {
	rows, err := db.QueryContext(ctx, `SELECT seq, event_id, event_type, trace_id, action_id,
		timestamp, json, prev_event_hash, event_hash FROM audit_events ORDER BY seq`)
	if err != nil {
		return nil, 0, fmt.Errorf("audit: verify: read rows: %w", err)
	}
	defer rows.Close()
	rep := &VerifyReport{OK: true}
	var lastSeq int64
	for rows.Next() {
		var r storedRow
		if err := rows.Scan(&r.seq, &r.eventID, &r.eventType, &r.traceID, &r.actionID,
			&r.stamp, &r.line, &r.prev, &r.hash); err != nil {
			return nil, 0, fmt.Errorf("audit: verify: read row after seq %d: %w", lastSeq, err)
		}
		if problem := checkRow(r, lastSeq, rep.LastEventHash); problem != "" {
			rep.OK, rep.FirstBadSeq, rep.Problem = false, r.seq, problem
			return rep, lastSeq, nil
		}
		rep.Events++
		lastSeq, rep.LastEventHash = r.seq, r.hash
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("audit: verify: read rows: %w", err)
	}
	return rep, lastSeq, nil
}

// checkRow returns what is wrong with r given the row before it, or "".
func checkRow(r storedRow, lastSeq int64, lastHash string) string {
	if p := checkSeq(r.seq, lastSeq); p != "" {
		return p
	}
	hash, err := Hash([]byte(r.line))
	if err != nil {
		return "the stored json is not a valid event: " + err.Error()
	}
	if hash != r.hash {
		return "event_hash does not match the row's content: the row was edited"
	}
	var e Event
	if err := json.Unmarshal([]byte(r.line), &e); err != nil {
		return "the stored json does not fit the event schema: " + err.Error()
	}
	if p := checkColumns(r, &e); p != "" {
		return p
	}
	return checkLink(r.prev, lastSeq, lastHash)
}

func checkSeq(seq, lastSeq int64) string {
	switch {
	case seq == lastSeq+1:
		return ""
	case lastSeq == 0:
		return fmt.Sprintf("the first row has seq %d, not 1: earlier rows were deleted", seq)
	default:
		return fmt.Sprintf("seq %d follows %d: %d row(s) were deleted", seq, lastSeq, seq-lastSeq-1)
	}
}

// checkColumns catches an edit of the indexed copy of a field, which the
// hash of the json alone would not see.
func checkColumns(r storedRow, e *Event) string {
	for _, c := range []struct{ name, column, inJSON string }{
		{"event_hash", r.hash, e.EventHash},
		{"prev_event_hash", r.prev, e.PrevEventHash},
		{"event_id", r.eventID, e.EventID},
		{"event_type", r.eventType, e.EventType},
		{"trace_id", r.traceID, e.TraceID},
		{"action_id", r.actionID, e.ActionID},
		{"timestamp", r.stamp, formatTimestamp(e.Timestamp)},
	} {
		if c.column != c.inJSON {
			return fmt.Sprintf("column %s differs from the stored json: the row was edited", c.name)
		}
	}
	return ""
}

func checkLink(prev string, lastSeq int64, lastHash string) string {
	switch {
	case prev == lastHash:
		return ""
	case lastSeq == 0:
		return "the first row links to an event that is not in this file: earlier rows were removed, or the file joined an existing chain"
	default:
		return fmt.Sprintf("prev_event_hash does not match the event_hash of seq %d: rows were reordered, replaced or inserted", lastSeq)
	}
}

// checkTail catches deleted last rows: AUTOINCREMENT remembers the highest
// seq ever assigned in sqlite_sequence. Someone who edits that table too can
// hide a truncation; only an external copy of the head can catch that.
func checkTail(ctx context.Context, db *sql.DB, rep *VerifyReport, lastSeq int64) error {
	var maxSeq int64
	err := db.QueryRowContext(ctx,
		`SELECT seq FROM sqlite_sequence WHERE name = 'audit_events'`).Scan(&maxSeq)
	if errors.Is(err, sql.ErrNoRows) {
		maxSeq = 0
	} else if err != nil {
		return fmt.Errorf("audit: verify: read sqlite_sequence: %w", err)
	}
	if maxSeq > lastSeq {
		rep.OK, rep.FirstBadSeq = false, lastSeq+1
		rep.Problem = fmt.Sprintf("the last %d row(s) were deleted: seq reached %d", maxSeq-lastSeq, maxSeq)
	}
	return nil
}

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
	// rewritten from scratch, or cut back to an earlier commit.
	LastEventHash string `json:"last_event_hash,omitempty"`
	// Checkpoints is the number of checkpoint rows that verified.
	Checkpoints int `json:"checkpoints,omitempty"`
	// LastCheckpointSeq is the seq the last verified checkpoint signs.
	LastCheckpointSeq int64 `json:"last_checkpoint_seq,omitempty"`
	// KeyID names the key the signatures were checked with; empty when
	// verified without a key, in which case signatures were not checked.
	KeyID string `json:"key_id,omitempty"`
}

// VerifyOption configures VerifySQLite.
type VerifyOption func(*verifier)

// VerifyWithKey checks every checkpoint's signature with k, and requires
// the file to be signed up to its last row.
func VerifyWithKey(k *CheckpointKey) VerifyOption {
	return func(v *verifier) { v.key = k }
}

type verifier struct {
	key   *CheckpointKey
	cps   []checkpoint
	next  int
	maxID int64
}

// VerifySQLite checks the audit database at path without modifying it. It
// recomputes every event hash, checks each row links to the row before it,
// that seq has no gap from 1 to the last value ever assigned, and that the
// indexed columns match the stored JSON. An error means the file could not
// be read; tampering is reported in the VerifyReport.
//
// Checkpoints are checked too: each must sign a row that exists with the
// hash it names, with seqs increasing, and none may have been deleted from
// the end. With VerifyWithKey every signature is checked and the last row
// must be covered by a checkpoint, so a log rewritten and rehashed without
// the key fails, as does one cut back past its last checkpoint. A file
// that holds checkpoints must end with one even without a key, since a
// writer without the key is refused.
func VerifySQLite(ctx context.Context, path string, opts ...VerifyOption) (*VerifyReport, error) {
	v := &verifier{}
	for _, opt := range opts {
		opt(v)
	}
	db, err := openReadOnly(path)
	if err != nil {
		return nil, fmt.Errorf("audit: verify: open %q: %w", path, err)
	}
	defer db.Close()
	if err := v.load(ctx, db); err != nil {
		return nil, err
	}
	rep, lastSeq, err := v.walkChain(ctx, db)
	if err != nil || !rep.OK {
		return rep, err
	}
	if err := checkTail(ctx, db, rep, lastSeq); err != nil || !rep.OK {
		return rep, err
	}
	return rep, v.checkCoverage(ctx, db, rep, lastSeq)
}

// storedRow is one audit_events row as read from disk.
type storedRow struct {
	seq                                          int64
	eventID, eventType, traceID, actionID, stamp string
	line, prev, hash                             string
}

func (v *verifier) walkChain(ctx context.Context, db *sql.DB) (*VerifyReport, int64, error) {
	rows, err := db.QueryContext(ctx, `SELECT seq, event_id, event_type, trace_id, action_id,
		timestamp, json, prev_event_hash, event_hash FROM audit_events ORDER BY seq`)
	if err != nil {
		return nil, 0, fmt.Errorf("audit: verify: read rows: %w", err)
	}
	defer rows.Close()
	rep := &VerifyReport{OK: true}
	if v.key != nil {
		rep.KeyID = v.key.ID()
	}
	var lastSeq int64
	for rows.Next() {
		var r storedRow
		if err := rows.Scan(&r.seq, &r.eventID, &r.eventType, &r.traceID, &r.actionID,
			&r.stamp, &r.line, &r.prev, &r.hash); err != nil {
			return nil, 0, fmt.Errorf("audit: verify: read row after seq %d: %w", lastSeq, err)
		}
		problem := checkRow(r, lastSeq, rep.LastEventHash)
		bad := r.seq
		if problem == "" {
			problem, bad = v.checkpointsAt(r, rep)
		}
		if problem != "" {
			rep.OK, rep.FirstBadSeq, rep.Problem = false, bad, problem
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
	maxSeq, err := sequenceOf(ctx, db, "audit_events")
	if err != nil {
		return err
	}
	if maxSeq > lastSeq {
		rep.OK, rep.FirstBadSeq = false, lastSeq+1
		rep.Problem = fmt.Sprintf("the last %d row(s) were deleted: seq reached %d", maxSeq-lastSeq, maxSeq)
	}
	return nil
}

// load reads every checkpoint, in the order they were written.
func (v *verifier) load(ctx context.Context, db *sql.DB) error {
	// Files written before checkpoints existed have no such table.
	var tables int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_master
		WHERE type = 'table' AND name = 'audit_checkpoints'`).Scan(&tables); err != nil || tables == 0 {
		return err
	}
	rows, err := db.QueryContext(ctx, `SELECT id, seq, event_hash, signed_at, algorithm, key_id,
		signature FROM audit_checkpoints ORDER BY id`)
	if err != nil {
		return fmt.Errorf("audit: verify: read checkpoints: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var c checkpoint
		if err := rows.Scan(&c.id, &c.seq, &c.eventHash, &c.signedAt, &c.alg, &c.keyID, &c.signature); err != nil {
			return fmt.Errorf("audit: verify: read checkpoints: %w", err)
		}
		v.cps = append(v.cps, c)
		v.maxID = c.id
	}
	return rows.Err()
}

// checkpointsAt checks the checkpoints that sign row r. It returns the
// problem and the first seq it puts in doubt: everything after the last
// checkpoint that verified.
func (v *verifier) checkpointsAt(r storedRow, rep *VerifyReport) (string, int64) {
	for ; v.next < len(v.cps) && v.cps[v.next].seq <= r.seq; v.next++ {
		c := &v.cps[v.next]
		problem := ""
		switch {
		case c.seq < r.seq || c.seq <= rep.LastCheckpointSeq:
			problem = fmt.Sprintf("checkpoint %d signs seq %d out of order", c.id, c.seq)
		case c.eventHash != r.hash:
			problem = fmt.Sprintf("checkpoint %d signs another event_hash for seq %d: rows up to it were rewritten", c.id, c.seq)
		case v.key != nil:
			problem = v.key.verify(c)
		}
		if problem != "" {
			return problem, rep.LastCheckpointSeq + 1
		}
		rep.Checkpoints++
		rep.LastCheckpointSeq = c.seq
	}
	return "", 0
}

// checkCoverage runs after every row verified: no checkpoint may sign a row
// past the end, none may be missing at the end, and a signed file must be
// signed up to its last row.
func (v *verifier) checkCoverage(ctx context.Context, db *sql.DB, rep *VerifyReport, lastSeq int64) error {
	fail := func(seq int64, problem string) {
		rep.OK, rep.FirstBadSeq, rep.Problem = false, seq, problem
	}
	if v.next < len(v.cps) {
		c := v.cps[v.next]
		fail(lastSeq+1, fmt.Sprintf("checkpoint %d signs seq %d but the log ends at seq %d: the last rows were deleted", c.id, c.seq, lastSeq))
		return nil
	}
	maxID, err := sequenceOf(ctx, db, "audit_checkpoints")
	if err != nil {
		return err
	}
	if maxID > v.maxID {
		fail(rep.LastCheckpointSeq+1, fmt.Sprintf("the last %d checkpoint(s) were deleted: checkpoint ids reached %d", maxID-v.maxID, maxID))
		return nil
	}
	signed := v.key != nil || len(v.cps) > 0
	switch {
	case !signed || lastSeq == 0:
	case len(v.cps) == 0:
		fail(1, "the log holds no checkpoint: it was never signed with this key, or every checkpoint was removed")
	case rep.LastCheckpointSeq < lastSeq:
		fail(rep.LastCheckpointSeq+1, fmt.Sprintf("%d row(s) after seq %d are not signed by any checkpoint: they were appended or rewritten without the key",
			lastSeq-rep.LastCheckpointSeq, rep.LastCheckpointSeq))
	}
	return nil
}

// sequenceOf is the highest AUTOINCREMENT value table ever assigned.
func sequenceOf(ctx context.Context, db *sql.DB, table string) (int64, error) {
	var maxSeq int64
	err := db.QueryRowContext(ctx, `SELECT seq FROM sqlite_sequence WHERE name = ?`, table).Scan(&maxSeq)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("audit: verify: read sqlite_sequence: %w", err)
	}
	return maxSeq, nil
}

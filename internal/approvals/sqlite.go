package approvals

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/caddy-nomos/nomos/internal/sqlitefile"
)

// sqliteSchemaVersion 2 added params_preview; migrations upgrades older
// files in place.
const sqliteSchemaVersion = 2

const sqliteSchema = `
CREATE TABLE IF NOT EXISTS approvals (
	approval_id TEXT PRIMARY KEY,
	fingerprint TEXT NOT NULL,
	scope_type  TEXT NOT NULL,
	scope_key   TEXT NOT NULL,
	status      TEXT NOT NULL CHECK (status IN ('PENDING', 'APPROVED', 'DENIED')),
	trace_id    TEXT NOT NULL DEFAULT '',
	action_id   TEXT NOT NULL DEFAULT '',
	action_type TEXT NOT NULL DEFAULT '',
	resource    TEXT NOT NULL DEFAULT '',
	params_hash TEXT NOT NULL DEFAULT '',
	params_preview TEXT NOT NULL DEFAULT '',
	principal   TEXT NOT NULL,
	agent       TEXT NOT NULL DEFAULT '',
	environment TEXT NOT NULL DEFAULT '',
	decided_by  TEXT NOT NULL DEFAULT '',
	single_use  INTEGER NOT NULL DEFAULT 0,
	consumed    INTEGER NOT NULL DEFAULT 0,
	created_at  INTEGER NOT NULL, -- unix nanoseconds, UTC
	expires_at  INTEGER NOT NULL,
	updated_at  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS approvals_fingerprint ON approvals (fingerprint);
CREATE INDEX IF NOT EXISTS approvals_scope ON approvals (scope_type, scope_key, status);
CREATE INDEX IF NOT EXISTS approvals_created ON approvals (created_at);
`

const recordColumns = `approval_id, fingerprint, scope_type, scope_key, status, trace_id, action_id,
	action_type, resource, params_hash, params_preview, principal, agent, environment, decided_by, single_use, consumed,
	created_at, expires_at, updated_at`

// sqliteStore keeps approvals in a SQLite database in WAL mode. Every write
// runs in a BEGIN IMMEDIATE transaction, so read-check-write sequences are
// atomic across processes; busy_timeout makes a second process wait for the
// lock instead of failing.
type sqliteStore struct {
	db *sql.DB
}

// OpenSQLite opens (creating if needed, with mode 0600) the approvals
// database at path.
func OpenSQLite(path string) (Store, error) {
	db, err := sqlitefile.Open(path)
	if err != nil {
		return nil, fmt.Errorf("approvals: open sqlite %s: %w", path, err)
	}
	if err := migrate(db); err != nil {
		db.Close()
		return nil, fmt.Errorf("approvals: migrate sqlite %s: %w", path, err)
	}
	return &sqliteStore{db: db}, nil
}

// migrations upgrade a file from version i+1 to i+2 (version 0 is an
// empty file, which gets the whole current schema at once).
var migrations = []string{
	1: `ALTER TABLE approvals ADD COLUMN params_preview TEXT NOT NULL DEFAULT ''`,
}

// migrate creates or upgrades the schema in one transaction (one commit,
// one fsync).
func migrate(db *sql.DB) error {
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var version int
	if err := tx.QueryRow("PRAGMA user_version").Scan(&version); err != nil {
		return err
	}
	if version > sqliteSchemaVersion {
		return fmt.Errorf("schema version %d is newer than this nomos (%d)", version, sqliteSchemaVersion)
	}
	if version == sqliteSchemaVersion {
		return nil
	}
	if err := upgrade(tx, version); err != nil {
		return err
	}
	if _, err := tx.Exec(fmt.Sprintf("PRAGMA user_version = %d", sqliteSchemaVersion)); err != nil {
		return err
	}
	return tx.Commit()
}

func upgrade(tx *sql.Tx, version int) error {
	if version == 0 {
		_, err := tx.Exec(sqliteSchema)
		return err
	}
	for v := version; v < sqliteSchemaVersion; v++ {
		if _, err := tx.Exec(migrations[v]); err != nil {
			return fmt.Errorf("upgrade to version %d: %w", v+1, err)
		}
	}
	return nil
}

// inTx runs fn in an immediate transaction and commits if fn succeeds.
func (s *sqliteStore) inTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("approvals: begin: %w", err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("approvals: commit: %w", err)
	}
	return nil
}

func (s *sqliteStore) CreateOrGetPending(ctx context.Context, req Request, ttl time.Duration, now time.Time) (Record, bool, error) {
	if err := validateRequest(req, ttl); err != nil {
		return Record{}, false, err
	}
	var rec Record
	var created bool
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		rec, err = findPending(ctx, tx, req, now)
		if err == nil || !errors.Is(err, ErrNotFound) {
			return err
		}
		rec, created = newRecord(req, ttl, now), true
		return insertRecord(ctx, tx, rec)
	})
	if err != nil {
		return Record{}, false, err
	}
	return rec, created, nil
}

func findPending(ctx context.Context, tx *sql.Tx, req Request, now time.Time) (Record, error) {
	row := tx.QueryRowContext(ctx, `SELECT `+recordColumns+` FROM approvals
		WHERE status = 'PENDING' AND scope_type = ? AND scope_key = ? AND principal = ? AND agent = ?
		AND environment = ? AND expires_at > ? ORDER BY created_at DESC LIMIT 1`,
		req.ScopeType, req.ScopeKey, req.Principal, req.Agent, req.Environment, now.UnixNano())
	return scanRecord(row, "")
}

func insertRecord(ctx context.Context, tx *sql.Tx, r Record) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO approvals (`+recordColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.ID, r.Fingerprint, r.ScopeType, r.ScopeKey, r.Status, r.TraceID, r.ActionID,
		r.ActionType, r.Resource, r.ParamsHash, r.ParamsPreview, r.Principal, r.Agent, r.Environment, r.DecidedBy,
		r.SingleUse, r.Consumed, r.CreatedAt.UnixNano(), r.ExpiresAt.UnixNano(), r.UpdatedAt.UnixNano())
	if err != nil {
		return fmt.Errorf("approvals: insert: %w", err)
	}
	return nil
}

func (s *sqliteStore) Get(ctx context.Context, id string) (Record, error) {
	row := s.db.QueryRowContext(ctx, `SELECT `+recordColumns+` FROM approvals WHERE approval_id = ?`, id)
	return scanRecord(row, id)
}

func getTx(ctx context.Context, tx *sql.Tx, id string) (Record, error) {
	row := tx.QueryRowContext(ctx, `SELECT `+recordColumns+` FROM approvals WHERE approval_id = ?`, id)
	return scanRecord(row, id)
}

func (s *sqliteStore) Decide(ctx context.Context, id, decision, approver string, now time.Time) (Record, error) {
	var rec Record
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		if rec, err = getTx(ctx, tx, id); err != nil {
			return err
		}
		changed, err := decide(&rec, decision, approver, now)
		if err != nil || !changed {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE approvals SET status = ?, decided_by = ?, updated_at = ?
			WHERE approval_id = ? AND status = 'PENDING'`, rec.Status, rec.DecidedBy, rec.UpdatedAt.UnixNano(), id)
		return wrapExec("decide", err)
	})
	if err != nil {
		return Record{}, err
	}
	return rec, nil
}

func (s *sqliteStore) Use(ctx context.Context, id, scopeKey, principal, agent, environment string, now time.Time) (Record, error) {
	var rec Record
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		if rec, err = getTx(ctx, tx, id); err != nil {
			return err
		}
		changed, err := use(&rec, scopeKey, principal, agent, environment, now)
		if err != nil || !changed {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE approvals SET consumed = 1, updated_at = ?
			WHERE approval_id = ? AND consumed = 0`, rec.UpdatedAt.UnixNano(), id)
		return wrapExec("use", err)
	})
	if err != nil {
		return Record{}, err
	}
	return rec, nil
}

func wrapExec(step string, err error) error {
	if err != nil {
		return fmt.Errorf("approvals: %s: %w", step, err)
	}
	return nil
}

func (s *sqliteStore) List(ctx context.Context, f Filter) ([]Record, error) {
	if err := validateFilter(f); err != nil {
		return nil, err
	}
	limit := f.Limit
	if limit <= 0 {
		limit = -1 // SQLite: no limit
	}
	rows, err := s.db.QueryContext(ctx, `SELECT `+recordColumns+` FROM approvals
		WHERE (? = '' OR status = ?) ORDER BY created_at DESC, approval_id DESC LIMIT ?`, f.Status, f.Status, limit)
	if err != nil {
		return nil, fmt.Errorf("approvals: list: %w", err)
	}
	defer rows.Close()
	var out []Record
	for rows.Next() {
		rec, err := scanRecord(rows, "")
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	return out, wrapExec("list", rows.Err())
}

func (s *sqliteStore) Close() error { return s.db.Close() }

type scanner interface{ Scan(dest ...any) error }

func scanRecord(row scanner, id string) (Record, error) {
	var r Record
	var created, expires, updated int64
	err := row.Scan(&r.ID, &r.Fingerprint, &r.ScopeType, &r.ScopeKey, &r.Status, &r.TraceID, &r.ActionID,
		&r.ActionType, &r.Resource, &r.ParamsHash, &r.ParamsPreview, &r.Principal, &r.Agent, &r.Environment, &r.DecidedBy,
		&r.SingleUse, &r.Consumed, &created, &expires, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return Record{}, notFound(id)
	}
	if err != nil {
		return Record{}, fmt.Errorf("approvals: read: %w", err)
	}
	r.CreatedAt, r.ExpiresAt, r.UpdatedAt = fromNanos(created), fromNanos(expires), fromNanos(updated)
	return r, nil
}

func fromNanos(n int64) time.Time { return time.Unix(0, n).UTC() }

// Interface guards
var _ Store = (*sqliteStore)(nil)

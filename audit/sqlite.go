package audit

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// SQLiteSink stores every event as one row of the audit_events table. A
// batch of rows is committed before Write or WriteBatch returns, so a
// decision recorded there survives a crash of the process that acts on it.
type SQLiteSink struct {
	db   *sql.DB
	key  *CheckpointKey
	sync string
	now  func() time.Time
	// writable is false for a file opened to be read (search, verify).
	writable bool
	// mu serializes commits on w, the one connection that writes; w is
	// nil until the first commit after a failed one reopens it.
	mu sync.Mutex
	w  *sinkWriter
	// frames estimates the WAL frames committed since the checkpointer
	// was last asked to run (guarded by mu). kick asks it; stop and
	// stopped end it (nil for a file opened to be read).
	frames        int
	kick          chan struct{}
	stop, stopped chan struct{}
	stopOnce      sync.Once
}

// WAL checkpoints copy committed pages from the -wal file into the
// database file, so the WAL can start over instead of growing. SQLite runs
// one in the commit that crosses 1,000 WAL pages, which put a checkpoint
// (a burst of page writes and, in either synchronous mode, an fsync of the
// database file) on the path of about one decision in a hundred. The sink
// turns that off on its writer and runs checkpoints on a goroutine of its
// own instead, beside the commits.
//
// walCheckpointFrames is how many WAL pages (estimated) the commits may
// add before the checkpointer is asked to run: SQLite's default.
const walCheckpointFrames = 1000

// sinkWriter is the connection a sink commits on, with the statements of a
// commit prepared on it once. It is kept out of database/sql's pool and
// its transaction is driven by statements, not by sql.Tx: a commit is on
// the path of every decision, and sql.Tx (and a cancellable context)
// would start a goroutine per transaction and per statement to watch for
// cancellation. Lock waits are bounded by the busy timeout instead.
type sinkWriter struct {
	conn                                              *sql.Conn
	begin, commit, rollback                           *sql.Stmt
	lastRow, insertEvent, insertCheckpoint, eventHash *sql.Stmt
}

const (
	sqlBegin       = `BEGIN IMMEDIATE`
	sqlCommit      = `COMMIT`
	sqlRollback    = `ROLLBACK`
	sqlLastRow     = `SELECT event_hash, seq FROM audit_events ORDER BY seq DESC LIMIT 1`
	sqlInsertEvent = `INSERT INTO audit_events
		(event_id, event_type, trace_id, action_id, timestamp, json, prev_event_hash, event_hash)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`
	sqlInsertCheckpoint = `INSERT INTO audit_checkpoints
		(seq, event_hash, signed_at, algorithm, key_id, signature) VALUES (?, ?, ?, ?, ?, ?)`
	sqlEventHash = `SELECT event_hash FROM audit_events WHERE event_id = ?`
)

// openWriter takes a connection for writing and prepares the commit's
// statements on it; the schema must exist.
func openWriter(db *sql.DB) (*sinkWriter, error) {
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	w := &sinkWriter{conn: conn}
	// Checkpoints run beside the commits (see walCheckpointFrames). The
	// setting is the connection's own; readers never write.
	if _, err := conn.ExecContext(ctx, `PRAGMA wal_autocheckpoint=0`); err != nil {
		conn.Close()
		return nil, err
	}
	for _, p := range []struct {
		dst   **sql.Stmt
		query string
	}{{&w.begin, sqlBegin}, {&w.commit, sqlCommit}, {&w.rollback, sqlRollback},
		{&w.lastRow, sqlLastRow}, {&w.insertEvent, sqlInsertEvent},
		{&w.insertCheckpoint, sqlInsertCheckpoint}, {&w.eventHash, sqlEventHash}} {
		st, err := conn.PrepareContext(ctx, p.query)
		if err != nil {
			w.close()
			return nil, err
		}
		*p.dst = st
	}
	return w, nil
}

func (w *sinkWriter) close() {
	for _, st := range []*sql.Stmt{w.begin, w.commit, w.rollback, w.lastRow, w.insertEvent, w.insertCheckpoint, w.eventHash} {
		if st != nil {
			st.Close()
		}
	}
	w.conn.Close()
}

// auditSchema is append-only by convention. seq and id are AUTOINCREMENT so
// deleted last rows leave a trace in sqlite_sequence that VerifySQLite
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
		`CREATE TABLE IF NOT EXISTS audit_checkpoints (
		id INTEGER PRIMARY KEY AUTOINCREMENT,
		seq INTEGER NOT NULL,
		event_hash TEXT NOT NULL,
		signed_at TEXT NOT NULL,
		algorithm TEXT NOT NULL,
		key_id TEXT NOT NULL,
		signature TEXT NOT NULL
	)`,
	}
}

// SQLiteOption configures OpenSQLite.
type SQLiteOption func(*SQLiteSink)

// WithCheckpointKey signs every commit: the commit's last row is covered by
// a checkpoint row written in the same transaction. The key must be able
// to sign.
func WithCheckpointKey(k *CheckpointKey) SQLiteOption {
	return func(s *SQLiteSink) { s.key = k }
}

// WithSynchronous sets the file's synchronous mode, SyncFull or SyncNormal
// (see both). Default: SyncFull.
func WithSynchronous(mode string) SQLiteOption {
	return func(s *SQLiteSink) { s.sync = mode }
}

// OpenSQLite opens or creates the audit database at path, creating its
// directory. A file that already holds checkpoints is refused without a
// key: rows appended unsigned would make it fail verification.
func OpenSQLite(path string, opts ...SQLiteOption) (*SQLiteSink, error) {
	s := &SQLiteSink{now: time.Now, sync: SyncFull}
	for _, opt := range opts {
		opt(s)
	}
	if s.key != nil && !s.key.CanSign() {
		return nil, fmt.Errorf("audit: open sqlite %q: the checkpoint key cannot sign (a public key)", path)
	}
	db, err := openWritableSync(path, s.sync)
	if err != nil {
		return nil, fmt.Errorf("audit: open sqlite %q: %w", path, err)
	}
	// Bounded because each connection carries its own page cache, and the
	// UI's queries must not pile up without limit behind a slow disk.
	db.SetMaxOpenConns(maxSQLiteConns)
	s.db = db
	if err := execAll(db, auditSchema()...); err != nil {
		db.Close()
		return nil, fmt.Errorf("audit: open sqlite %q: create schema: %w", path, err)
	}
	if err := s.checkKeyed(); err != nil {
		db.Close()
		return nil, fmt.Errorf("audit: open sqlite %q: %w", path, err)
	}
	if s.w, err = openWriter(db); err != nil {
		db.Close()
		return nil, fmt.Errorf("audit: open sqlite %q: prepare: %w", path, err)
	}
	s.writable = true
	s.kick, s.stop, s.stopped = make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
	go s.checkpointer()
	return s, nil
}

// checkpointer runs a WAL checkpoint each time the commits ask for one,
// until Close.
func (s *SQLiteSink) checkpointer() {
	defer close(s.stopped)
	for {
		select {
		case <-s.stop:
			return
		case <-s.kick:
			s.checkpoint()
		}
	}
}

// checkpoint copies the WAL's committed pages into the database file.
// The bulk of the copy runs beside the commits (PASSIVE: it waits for no
// one and takes no write lock). The WAL only starts over at a commit that
// began after a checkpoint had copied all of it, which a commit in flight
// during the copy prevents; a WAL that keeps growing is appended to, and
// an append costs the fsync of every commit more than an overwrite. So a
// second pass runs with commits held: it copies what landed during the
// first (nothing, often, and then it neither writes nor syncs), and the
// next commit starts the WAL over. The second pass runs on the writer's
// own connection, which is idle while commits are held: waiting for a
// pool connection there (the UI's reads may hold them all) would hold up
// every commit. A checkpoint that fails loses nothing: the pages stay in
// the WAL and the next one copies them.
func (s *SQLiteSink) checkpoint() {
	ctx := context.Background()
	if _, err := s.db.ExecContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`); err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w != nil {
		_, _ = s.w.conn.ExecContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`)
	}
}

// committed counts a commit's WAL pages toward the next checkpoint and
// asks for it when they are enough. Each commit rewrites the sequence
// table's page and the last page of the table and of each index it
// touches, and each row adds about a page more; an estimate is enough.
// The caller holds s.mu.
func (s *SQLiteSink) committed(rows int) {
	if rows == 0 { // a replay of stored events writes nothing
		return
	}
	s.frames += 4 + 2*rows
	if s.frames < walCheckpointFrames || s.kick == nil {
		return
	}
	s.frames = 0
	select {
	case s.kick <- struct{}{}:
	default: // one is already asked for
	}
}

// checkKeyed refuses to append unsigned rows to a signed file.
func (s *SQLiteSink) checkKeyed() error {
	if s.key != nil {
		return nil
	}
	var n int
	if err := s.db.QueryRow(`SELECT COUNT(*) FROM audit_checkpoints`).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return errors.New("the file holds signed checkpoints: configure its checkpoint key to append to it")
	}
	return nil
}

// Name implements Sink.
func (s *SQLiteSink) Name() string { return "sqlite" }

// Write implements Sink.
func (s *SQLiteSink) Write(ctx context.Context, e *Event, line []byte) error {
	return s.WriteBatch(ctx, []Sealed{{Event: e, Line: line}})
}

// WriteBatch implements BatchSink: one transaction, one fsync. Writing an
// event that is already stored is a no-op; reusing its event_id for
// different content is an error, because silently keeping the old row
// would hide the new one from the chain.
//
// The transaction takes the write lock first (BEGIN IMMEDIATE), then reads
// the file's last row: an event is inserted only if it links to it, so two
// processes appending to one file cannot fork the chain. The one that lost
// the race gets ErrStaleHead and relinks. ctx's values are kept but not its
// deadline: a statement is not interrupted midway, and a wait for another
// writer's lock ends after the busy timeout (5 s).
func (s *SQLiteSink) WriteBatch(ctx context.Context, batch []Sealed) (err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.writable {
		return errors.New("the file is open for reading only")
	}
	if s.w == nil {
		if s.w, err = openWriter(s.db); err != nil {
			return fmt.Errorf("reopen: %w", err)
		}
	}
	ctx = context.WithoutCancel(ctx)
	w := s.w
	if _, err := w.begin.ExecContext(ctx); err != nil {
		s.dropWriter()
		return fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if err != nil {
			if _, rerr := w.rollback.ExecContext(ctx); rerr != nil {
				s.dropWriter()
			}
		}
	}()
	tail, lastSeq, err := lastRow(ctx, w.lastRow)
	if err != nil {
		return err
	}
	inserted := 0
	for _, b := range batch {
		e := b.Event
		if e.PrevEventHash != tail {
			if err := checkSameEvent(ctx, w.eventHash, e); err != nil {
				return err
			}
			continue
		}
		if lastSeq, err = insertEvent(ctx, w.insertEvent, e, b.Line); err != nil {
			return err
		}
		tail = e.EventHash
		inserted++
	}
	if inserted > 0 && s.key != nil {
		if err := s.insertCheckpoint(ctx, w.insertCheckpoint, lastSeq, tail); err != nil {
			return err
		}
	}
	if _, err := w.commit.ExecContext(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	s.committed(inserted)
	return nil
}

// dropWriter closes a writer whose connection may be inside a transaction
// it could not end; the next commit opens a fresh one. The caller holds
// s.mu.
func (s *SQLiteSink) dropWriter() {
	if s.w != nil {
		s.w.close()
		s.w = nil
	}
}

func lastRow(ctx context.Context, st *sql.Stmt) (string, int64, error) {
	var h string
	var seq int64
	err := st.QueryRowContext(ctx).Scan(&h, &seq)
	if errors.Is(err, sql.ErrNoRows) {
		return "", 0, nil
	}
	if err != nil {
		return "", 0, fmt.Errorf("read last row: %w", err)
	}
	return h, seq, nil
}

func insertEvent(ctx context.Context, st *sql.Stmt, e *Event, line []byte) (int64, error) {
	res, err := st.ExecContext(ctx,
		e.EventID, e.EventType, e.TraceID, e.ActionID, formatTimestamp(e.Timestamp),
		string(line), e.PrevEventHash, e.EventHash)
	if err != nil {
		return 0, fmt.Errorf("insert event %s: %w", e.EventID, err)
	}
	return res.LastInsertId()
}

func (s *SQLiteSink) insertCheckpoint(ctx context.Context, st *sql.Stmt, seq int64, hash string) error {
	c := &checkpoint{seq: seq, eventHash: hash, signedAt: formatTimestamp(s.now())}
	s.key.sign(c)
	_, err := st.ExecContext(ctx,
		c.seq, c.eventHash, c.signedAt, c.alg, c.keyID, c.signature)
	if err != nil {
		return fmt.Errorf("insert checkpoint: %w", err)
	}
	return nil
}

// checkSameEvent explains an event that does not link to the last row: it
// is already stored (a replay, fine), or another writer appended first
// (stale head).
func checkSameEvent(ctx context.Context, st *sql.Stmt, e *Event) error {
	var stored string
	err := st.QueryRowContext(ctx, e.EventID).Scan(&stored)
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
func (s *SQLiteSink) Close() error {
	if s.stop != nil {
		s.stopOnce.Do(func() { close(s.stop) })
		<-s.stopped
	}
	s.mu.Lock()
	s.dropWriter()
	s.writable = false
	s.mu.Unlock()
	return s.db.Close()
}

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
	_ Sink      = (*SQLiteSink)(nil)
	_ BatchSink = (*SQLiteSink)(nil)
	_ Head      = (*SQLiteSink)(nil)
)

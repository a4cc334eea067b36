package audit

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fiveRowAudit returns the path of a closed audit file holding 5 events.
func fiveRowAudit(t *testing.T) string {
	t.Helper()
	path, db := openTestSQLite(t)
	r := newTestRecorder(t, []Sink{db})
	recordN(t, r, 0, 5)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestVerifySQLiteDetectsTampering(t *testing.T) {
	tests := []struct {
		name    string
		tamper  []string
		badSeq  int64
		problem string
	}{
		{name: "intact"},
		{
			name:    "edited json",
			tamper:  []string{`UPDATE audit_events SET json = replace(json, '"decision":"ALLOW"', '"decision":"DENY"') WHERE seq = 3`},
			badSeq:  3,
			problem: "edited",
		},
		{
			name:    "edited column",
			tamper:  []string{`UPDATE audit_events SET trace_id = 'other' WHERE seq = 2`},
			badSeq:  2,
			problem: "column trace_id",
		},
		{
			name: "edited row with its hash recomputed",
			tamper: []string{
				`UPDATE audit_events SET json = replace(json, '"alice"', '"mallory"') WHERE seq = 2`,
				`-- rehash 2`,
			},
			badSeq:  3,
			problem: "prev_event_hash",
		},
		{
			name:    "deleted middle row",
			tamper:  []string{`DELETE FROM audit_events WHERE seq = 3`},
			badSeq:  4,
			problem: "deleted",
		},
		{
			name:    "deleted first row",
			tamper:  []string{`DELETE FROM audit_events WHERE seq = 1`},
			badSeq:  2,
			problem: "earlier rows",
		},
		{
			name:    "deleted last row",
			tamper:  []string{`DELETE FROM audit_events WHERE seq = 5`},
			badSeq:  5,
			problem: "last 1 row",
		},
		{
			name: "swapped rows",
			tamper: []string{
				`UPDATE audit_events SET seq = -1 WHERE seq = 2`,
				`UPDATE audit_events SET seq = 2 WHERE seq = 3`,
				`UPDATE audit_events SET seq = 3 WHERE seq = -1`,
			},
			badSeq:  2,
			problem: "reordered",
		},
		{
			name: "deleted row with seq renumbered",
			tamper: []string{
				`DELETE FROM audit_events WHERE seq = 3`,
				`UPDATE audit_events SET seq = seq - 1 WHERE seq > 3`,
				`UPDATE sqlite_sequence SET seq = 4 WHERE name = 'audit_events'`,
			},
			badSeq:  3,
			problem: "prev_event_hash",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := fiveRowAudit(t)
			tamper(t, path, tt.tamper)
			rep := mustVerify(t, path)
			if tt.tamper == nil {
				if !rep.OK || rep.Events != 5 || rep.LastEventHash == "" {
					t.Fatalf("intact file failed: %+v", rep)
				}
				return
			}
			if rep.OK || rep.FirstBadSeq != tt.badSeq || !strings.Contains(rep.Problem, tt.problem) {
				t.Fatalf("got %+v, want first bad seq %d mentioning %q", rep, tt.badSeq, tt.problem)
			}
		})
	}
}

// tamper edits the file directly. "-- rehash N" recomputes row N's hash the
// way a careful forger would, so only the link to the next row betrays it.
func tamper(t *testing.T, path string, stmts []string) {
	t.Helper()
	db := rawDB(t, path)
	for _, s := range stmts {
		if seq, ok := strings.CutPrefix(s, "-- rehash "); ok {
			rehash(t, db, seq)
			continue
		}
		if _, err := db.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	db.Close()
}

func rehash(t *testing.T, db *sql.DB, seq string) {
	t.Helper()
	var line string
	if err := db.QueryRow(`SELECT json FROM audit_events WHERE seq = ?`, seq).Scan(&line); err != nil {
		t.Fatal(err)
	}
	h, err := Hash([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	fixed, err := withEventHash([]byte(line), h)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE audit_events SET json = ?, event_hash = ? WHERE seq = ?`,
		string(fixed), h, seq); err != nil {
		t.Fatal(err)
	}
}

func TestVerifySQLiteMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "absent.db")
	if _, err := VerifySQLite(context.Background(), path); err == nil {
		t.Fatal("verify of a missing file succeeded")
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatal("verify created the file it was asked to check")
	}
}

func TestVerifySQLiteEmptyDatabase(t *testing.T) {
	path, db := openTestSQLite(t)
	db.Close()
	if rep := mustVerify(t, path); !rep.OK || rep.Events != 0 {
		t.Fatalf("empty audit: %+v", rep)
	}
}

func TestSQLiteFileIsPrivateAndWAL(t *testing.T) {
	path, db := openTestSQLite(t)
	defer db.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	var mode string
	if err := db.db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode %q, %v", mode, err)
	}
}

func TestSQLiteWriteIsIdempotentPerEventID(t *testing.T) {
	_, db := openTestSQLite(t)
	defer db.Close()
	e := &Event{EventID: "e1", EventType: EventTraceStart, TraceID: "t", EventHash: "h1"}
	ctx := context.Background()
	for range 2 {
		if err := db.Write(ctx, e, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	if evs, _ := db.Query(ctx, Filter{}); len(evs) != 1 {
		t.Fatalf("%d rows after writing the same event twice", len(evs))
	}
	other := *e
	other.EventHash = "h2"
	if err := db.Write(ctx, &other, []byte(`{}`)); err == nil {
		t.Fatal("a reused event_id with different content was silently dropped")
	}
}

func TestQueryFiltersAndLimits(t *testing.T) {
	_, db := openTestSQLite(t)
	r := newTestRecorder(t, []Sink{db})
	defer r.Close()
	recordN(t, r, 0, 7) // traces: 0,0,0,1,1,1,2
	end := &Event{EventType: EventTraceEnd, TraceID: "trace-1"}
	if err := r.Record(context.Background(), end); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tests := []struct {
		f    Filter
		want []string // action ids, oldest first
	}{
		{Filter{TraceID: "trace-1"}, []string{"act-3", "act-4", "act-5", ""}},
		{Filter{TraceID: "trace-1", EventType: EventActionDecision}, []string{"act-3", "act-4", "act-5"}},
		{Filter{ActionID: "act-6"}, []string{"act-6"}},
		{Filter{Limit: 2}, []string{"act-6", ""}},
	}
	for _, tt := range tests {
		evs, err := db.Query(ctx, tt.f)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range evs {
			got = append(got, e.ActionID)
		}
		if strings.Join(got, ",") != strings.Join(tt.want, ",") {
			t.Errorf("Query(%+v) = %v, want %v", tt.f, got, tt.want)
		}
	}
}

// A commit that fails midway is rolled back on the sink's writer, which
// keeps working: the next batch is stored and nothing of the failed one is.
// A writer that was dropped (its connection in an unknown state) is
// reopened by the next commit.
func TestSQLiteWriterRecoversAfterAFailedCommit(t *testing.T) {
	_, db := openTestSQLite(t)
	defer db.Close()
	ctx := context.Background()
	first := &Event{EventID: "e1", EventType: EventTraceStart, TraceID: "t", EventHash: "h1"}
	if err := db.Write(ctx, first, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	good := Sealed{Event: &Event{EventID: "e2", EventType: EventActionDecision, TraceID: "t", PrevEventHash: "h1", EventHash: "h2"}, Line: []byte(`{}`)}
	clash := Sealed{Event: &Event{EventID: "e1", EventType: EventTraceEnd, TraceID: "t", PrevEventHash: "x", EventHash: "other"}, Line: []byte(`{}`)}
	if err := db.WriteBatch(ctx, []Sealed{good, clash}); err == nil {
		t.Fatal("a batch reusing an event_id for other content was stored")
	}
	if evs, _ := db.Query(ctx, Filter{}); len(evs) != 1 {
		t.Fatalf("%d rows after a failed batch, want the first event only", len(evs))
	}
	if err := db.WriteBatch(ctx, []Sealed{good}); err != nil {
		t.Fatalf("the writer did not recover: %v", err)
	}
	db.mu.Lock()
	db.dropWriter()
	db.mu.Unlock()
	third := Sealed{Event: &Event{EventID: "e3", EventType: EventTraceEnd, TraceID: "t", PrevEventHash: "h2", EventHash: "h3"}, Line: []byte(`{}`)}
	if err := db.WriteBatch(ctx, []Sealed{third}); err != nil {
		t.Fatalf("a dropped writer was not reopened: %v", err)
	}
	if evs, _ := db.Query(ctx, Filter{}); len(evs) != 3 {
		t.Fatalf("%d rows, want 3", len(evs))
	}
}

// The writer never checkpoints in a commit; the sink's own checkpointer
// keeps the WAL from growing without bound beside a steady stream of
// commits (without it, this test's WAL would hold every page it wrote).
func TestSQLiteCheckpointsBesideTheCommits(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.db")
	s, err := OpenSQLite(path, WithSynchronous(SyncNormal))
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewRecorder([]Sink{s})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx := context.Background()
	var auto int
	if err := s.w.conn.QueryRowContext(ctx, `PRAGMA wal_autocheckpoint`).Scan(&auto); err != nil || auto != 0 {
		t.Fatalf("the writer's wal_autocheckpoint is %d (%v), want 0", auto, err)
	}
	const commits = 3000
	for range commits {
		start, decision := toolCallEvent(), toolCallEvent()
		start.EventType = EventTraceStart
		if err := r.RecordAll(ctx, start, decision); err != nil {
			t.Fatal(err)
		}
	}
	var busy, frames, copied int
	if err := s.db.QueryRowContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &frames, &copied); err != nil {
		t.Fatal(err)
	}
	// Without checkpoints the WAL would hold several frames per commit;
	// with them it starts over after each.
	if limit := 2 * walCheckpointFrames; frames > limit {
		t.Fatalf("the WAL holds %d frames after %d commits, want at most %d", frames, commits, limit)
	}
	t.Logf("%d frames in the WAL after %d commits", frames, commits)
	if n, err := s.Query(ctx, Filter{Limit: maxQueryLimit}); err != nil || len(n) != 2*commits {
		t.Fatalf("%d rows (%v), want %d", len(n), err, 2*commits)
	}
}

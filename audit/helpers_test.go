package audit

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// stepClock returns a clock that advances one millisecond per call, so
// timestamps are distinct and deterministic.
func stepClock() func() time.Time {
	var mu sync.Mutex
	t := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t = t.Add(time.Millisecond)
		return t
	}
}

func testEvent(i int) *Event {
	return &Event{
		EventType:   EventActionDecision,
		TraceID:     fmt.Sprintf("trace-%d", i/3),
		ActionID:    fmt.Sprintf("act-%d", i),
		Principal:   "alice",
		Agent:       "retail-agent",
		Environment: "dev",
		ActionType:  "fs.read",
		Decision:    "ALLOW",
		Reason:      "allow_by_rule",
		ExecutorMetadata: map[string]any{
			"latency_ms": 1.5,
			"big_id":     int64(9007199254740993),
		},
	}
}

func openTestSQLite(t *testing.T) (string, *SQLiteSink) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "nested", "audit.db")
	s, err := OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, s
}

func newTestRecorder(t *testing.T, sinks []Sink, opts ...Option) *Recorder {
	t.Helper()
	r, err := NewRecorder(sinks, append([]Option{WithClock(stepClock())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func recordN(t *testing.T, r *Recorder, from, n int) []*Event {
	t.Helper()
	var out []*Event
	for i := from; i < from+n; i++ {
		e := testEvent(i)
		if err := r.Record(context.Background(), e); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		out = append(out, e)
	}
	return out
}

// rawDB opens the file directly, the way someone tampering with it would.
func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func mustVerify(t *testing.T, path string) *VerifyReport {
	t.Helper()
	rep, err := VerifySQLite(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// lineCollector is a FuncSink target that keeps every line.
type lineCollector struct {
	mu    sync.Mutex
	lines [][]byte
	fail  bool
}

func (c *lineCollector) write(line []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail {
		return fmt.Errorf("collector down")
	}
	c.lines = append(c.lines, append([]byte(nil), line...))
	return nil
}

func (c *lineCollector) setFail(v bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fail = v
}

func (c *lineCollector) events(t *testing.T) []Event {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Event, len(c.lines))
	for i, l := range c.lines {
		if err := jsonUnmarshal(l, &out[i]); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// assertLinear checks that events form one chain, each hash recomputable.
func assertLinear(t *testing.T, lines [][]byte) {
	t.Helper()
	prev := ""
	for i, l := range lines {
		var e Event
		if err := jsonUnmarshal(l, &e); err != nil {
			t.Fatal(err)
		}
		if e.PrevEventHash != prev {
			t.Fatalf("line %d: prev_event_hash %q, want %q", i, e.PrevEventHash, prev)
		}
		h, err := Hash(l)
		if err != nil || h != e.EventHash {
			t.Fatalf("line %d: Hash = %q, %v; event_hash %q", i, h, err, e.EventHash)
		}
		prev = e.EventHash
	}
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

package audit

import (
	"bytes"
	"context"
	"errors"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRecordFillsIdentityAndChains(t *testing.T) {
	_, db := openTestSQLite(t)
	var out lineCollector
	r := newTestRecorder(t, []Sink{NewFuncSink("stdout", out.write), db})
	defer r.Close()
	events := recordN(t, r, 0, 3)

	hexID := regexp.MustCompile(`^[0-9a-f]{32}$`)
	for i, e := range events {
		if e.SchemaVersion != SchemaVersion || !hexID.MatchString(e.EventID) {
			t.Errorf("event %d: schema_version %q, event_id %q", i, e.SchemaVersion, e.EventID)
		}
		if e.Timestamp.IsZero() || e.Timestamp.Location().String() != "UTC" {
			t.Errorf("event %d: timestamp %v, want UTC from the clock", i, e.Timestamp)
		}
	}
	if events[0].PrevEventHash != "" || events[1].PrevEventHash != events[0].EventHash {
		t.Fatalf("chain not linked: %+v", events)
	}
	assertLinear(t, out.lines)

	stored, err := db.Query(context.Background(), Filter{})
	if err != nil || len(stored) != 3 {
		t.Fatalf("query: %d events, %v", len(stored), err)
	}
	if stored[2].EventHash != events[2].EventHash {
		t.Errorf("sqlite and caller disagree on the last hash")
	}
}

func TestRecordKeepsLargeIntegersExact(t *testing.T) {
	var out lineCollector
	r := newTestRecorder(t, []Sink{NewFuncSink("stdout", out.write)})
	recordN(t, r, 0, 1)
	if !bytes.Contains(out.lines[0], []byte(`"big_id":9007199254740993`)) {
		t.Fatalf("big integer changed: %s", out.lines[0])
	}
}

func TestChainContinuesAcrossReopen(t *testing.T) {
	path, db := openTestSQLite(t)
	r := newTestRecorder(t, []Sink{db})
	first := recordN(t, r, 0, 3)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}

	db2, err := OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	r2 := newTestRecorder(t, []Sink{db2})
	second := recordN(t, r2, 3, 2)
	if err := r2.Close(); err != nil {
		t.Fatal(err)
	}

	if second[0].PrevEventHash != first[2].EventHash {
		t.Fatalf("after reopen prev_event_hash = %q, want the last stored hash %q",
			second[0].PrevEventHash, first[2].EventHash)
	}
	if rep := mustVerify(t, path); !rep.OK || rep.Events != 5 {
		t.Fatalf("verify after reopen: %+v", rep)
	}
}

func TestRedactorRunsBeforeHashingAndWriting(t *testing.T) {
	path, db := openTestSQLite(t)
	var out lineCollector
	redact := func(b []byte) []byte {
		return bytes.ReplaceAll(b, []byte("sk-live-123"), []byte("[REDACTED]"))
	}
	r := newTestRecorder(t, []Sink{NewFuncSink("stdout", out.write), db}, WithRedactor(redact))
	e := testEvent(0)
	e.ParamsRedactedSummary = `{"token":"sk-live-123"}`
	if err := r.Record(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	r.Close()

	line := out.lines[0]
	if bytes.Contains(line, []byte("sk-live-123")) || !bytes.Contains(line, []byte("[REDACTED]")) {
		t.Fatalf("sink saw an unredacted event: %s", line)
	}
	if h, _ := Hash(line); h != e.EventHash {
		t.Fatalf("hash %q does not cover the redacted line (event_hash %q)", h, e.EventHash)
	}
	raw := rawDB(t, path)
	var stored string
	if err := raw.QueryRow(`SELECT json FROM audit_events`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(stored, "sk-live-123") {
		t.Fatalf("sqlite holds the secret: %s", stored)
	}
	if rep := mustVerify(t, path); !rep.OK {
		t.Fatalf("verify: %+v", rep)
	}
}

// The redactor sees the event before it is linked, so a pattern that takes
// a 64-hex hash for a secret cannot mangle the chain; one that rewrites an
// identity field is refused.
func TestRedactorCannotBreakChainOrIdentity(t *testing.T) {
	var out lineCollector
	r := newTestRecorder(t, []Sink{NewFuncSink("stdout", out.write)})
	first := recordN(t, r, 0, 1)[0]
	hexRun := regexp.MustCompile(`[0-9a-f]{64}`)
	r.redact = func(b []byte) []byte { return hexRun.ReplaceAll(b, []byte("[REDACTED]")) }
	e := testEvent(1)
	if err := r.Record(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	if e.PrevEventHash != first.EventHash {
		t.Fatalf("prev_event_hash %q, want %q", e.PrevEventHash, first.EventHash)
	}
	assertLinear(t, out.lines)
	r.redact = func(b []byte) []byte { return bytes.ReplaceAll(b, []byte(`"act-2"`), []byte(`"x"`)) }
	if err := r.Record(context.Background(), testEvent(2)); err == nil {
		t.Fatal("a redactor that rewrote action_id was accepted")
	}
}

func TestRecordFailsWhenAnySinkFails(t *testing.T) {
	path, db := openTestSQLite(t)
	var out lineCollector
	r := newTestRecorder(t, []Sink{NewFuncSink("stdout", out.write), db})
	defer r.Close()
	recordN(t, r, 0, 1)

	out.setFail(true)
	e := testEvent(1)
	if err := r.Record(context.Background(), e); err == nil {
		t.Fatal("Record succeeded with a failing sink")
	}
	// sqlite stored it, so the chain moved on; stdout still owes it.
	if err := r.Record(context.Background(), testEvent(2)); err == nil {
		t.Fatal("Record succeeded while a sink still missed an earlier event")
	}
	out.setFail(false)
	recordN(t, r, 3, 1)

	assertLinear(t, out.lines)
	if len(out.lines) != 3 {
		t.Fatalf("stdout got %d events, want 3 (0, 1 replayed, 3)", len(out.lines))
	}
	if rep := mustVerify(t, path); !rep.OK || rep.Events != 3 {
		t.Fatalf("verify: %+v", rep)
	}
}

// flakyDurable is a durable sink that fails its next write on demand.
type flakyDurable struct {
	*SQLiteSink
	mu      sync.Mutex
	failing bool
}

func (f *flakyDurable) WriteBatch(ctx context.Context, batch []Sealed) error {
	f.mu.Lock()
	fail := f.failing
	f.failing = false
	f.mu.Unlock()
	if fail {
		return errors.New("disk full")
	}
	return f.SQLiteSink.WriteBatch(ctx, batch)
}

func TestHeadDoesNotAdvancePastAnUnstoredRow(t *testing.T) {
	path, db := openTestSQLite(t)
	durable := &flakyDurable{SQLiteSink: db}
	var out lineCollector
	r := newTestRecorder(t, []Sink{NewFuncSink("stdout", out.write), durable})
	defer r.Close()
	before := recordN(t, r, 0, 1)[0]

	durable.failing = true
	lost := testEvent(1)
	if err := r.Record(context.Background(), lost); err == nil {
		t.Fatal("Record succeeded although the durable sink failed")
	}
	after := recordN(t, r, 2, 1)[0]
	if after.PrevEventHash != before.EventHash {
		t.Fatalf("next event links to %q, want the last stored %q", after.PrevEventHash, before.EventHash)
	}
	if rep := mustVerify(t, path); !rep.OK || rep.Events != 2 {
		t.Fatalf("verify: %+v", rep)
	}
	// stdout shows the failed attempt as an orphan sharing its parent.
	if evs := out.events(t); len(evs) != 3 || evs[1].PrevEventHash != evs[2].PrevEventHash {
		t.Fatalf("stdout: %+v", evs)
	}
}

func TestConcurrentRecordsFormOneLinearChain(t *testing.T) {
	path, db := openTestSQLite(t)
	var out lineCollector
	r := newTestRecorder(t, []Sink{NewFuncSink("stdout", out.write), db})
	const workers, each = 8, 15
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				errs <- r.Record(context.Background(), testEvent(w*each+i))
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	r.Close()
	assertLinear(t, out.lines)
	if rep := mustVerify(t, path); !rep.OK || rep.Events != workers*each {
		t.Fatalf("verify: %+v", rep)
	}
}

func TestRecorderRefusesNoSinksAndClosed(t *testing.T) {
	if _, err := NewRecorder(nil); err == nil {
		t.Fatal("a recorder without sinks was accepted")
	}
	var out lineCollector
	r := newTestRecorder(t, []Sink{NewFuncSink("stdout", out.write)})
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Record(context.Background(), testEvent(0)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Record after Close: %v", err)
	}
}

func TestRecordIgnoresCallerCancellation(t *testing.T) {
	_, db := openTestSQLite(t)
	r := newTestRecorder(t, []Sink{db})
	defer r.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r.Record(ctx, testEvent(0)); err != nil {
		t.Fatalf("a completion event was lost to a cancelled request: %v", err)
	}
}

func TestHashIgnoresEventHashField(t *testing.T) {
	a, err := Hash([]byte(`{"b":1,"a":"x","event_hash":"abc"}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Hash([]byte(`{"a":"x","b":1}`))
	c, _ := Hash([]byte(`{"a":"y","b":1}`))
	if a != b || a == c {
		t.Fatalf("Hash: %s %s %s", a, b, c)
	}
	for _, bad := range []string{`{"a":1} {}`, `{"a":1,"a":2}`, `[1]`, `{"a":"\ud800"}`} {
		if _, err := Hash([]byte(bad)); err == nil {
			t.Errorf("Hash accepted %s", bad)
		}
	}
}

func TestIsRetryable(t *testing.T) {
	for c, want := range map[string]bool{
		ResultSuccess: false, ResultDeniedPolicy: false, ResultSandboxViolation: false,
		ResultRequireApproval: true, ResultRateLimitExceeded: true, ResultUpstreamTimeout: true,
	} {
		if IsRetryable(c) != want {
			t.Errorf("IsRetryable(%s) = %v", c, !want)
		}
	}
}

// gateSink blocks its first batch until released, so events recorded
// meanwhile queue up for the next commit.
type gateSink struct {
	*SQLiteSink
	entered chan struct{}
	release chan struct{}
	once    sync.Once
	mu      sync.Mutex
	sizes   []int
}

func (g *gateSink) WriteBatch(ctx context.Context, batch []Sealed) error {
	g.once.Do(func() {
		close(g.entered)
		<-g.release
	})
	g.mu.Lock()
	g.sizes = append(g.sizes, len(batch))
	g.mu.Unlock()
	return g.SQLiteSink.WriteBatch(ctx, batch)
}

// TestGroupCommitSharesOneTransaction: events that arrive while a commit
// is in flight are committed together, each Record returns only after its
// own commit, and the chain stays linear.
func TestGroupCommitSharesOneTransaction(t *testing.T) {
	path, db := openTestSQLite(t)
	g := &gateSink{SQLiteSink: db, entered: make(chan struct{}), release: make(chan struct{})}
	r := newTestRecorder(t, []Sink{g})
	first := make(chan error)
	go func() { first <- r.Record(context.Background(), testEvent(0)) }()
	<-g.entered
	const waiting = 10
	var wg sync.WaitGroup
	returned := make(chan int, waiting)
	for i := 1; i <= waiting; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.Record(context.Background(), testEvent(i)); err != nil {
				t.Error(err)
			}
			returned <- i
		}()
	}
	// Every waiting event is queued behind the held commit before it ends.
	for {
		r.mu.Lock()
		n := len(r.pending)
		r.mu.Unlock()
		if n == waiting {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if len(returned) != 0 {
		t.Fatal("a Record returned before its event was committed")
	}
	close(g.release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	r.Close()
	if got := g.sizes; len(got) != 2 || got[0] != 1 || got[1] != waiting {
		t.Fatalf("batch sizes %v, want [1 %d]", got, waiting)
	}
	if st := r.Stats(); st.Events != waiting+1 || st.Dropped != 0 || st.Batches != 2 {
		t.Fatalf("stats %+v", st)
	}
	if rep := mustVerify(t, path); !rep.OK || rep.Events != waiting+1 {
		t.Fatalf("verify: %+v", rep)
	}
}

func TestStatsCountDroppedEvents(t *testing.T) {
	var out lineCollector
	r := newTestRecorder(t, []Sink{NewFuncSink("stdout", out.write)})
	recordN(t, r, 0, 2)
	out.setFail(true)
	if err := r.Record(context.Background(), testEvent(2)); err == nil {
		t.Fatal("Record succeeded although the only sink failed")
	}
	r.Close()
	if err := r.Record(context.Background(), testEvent(3)); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
	if st := r.Stats(); st.Events != 2 || st.Dropped != 2 {
		t.Fatalf("stats %+v, want 2 events and 2 dropped", st)
	}
}

// TestRecordAllIsOneCommitOfConsecutiveLinks: the events of one RecordAll
// reach the sink in one batch, in order, each linking to the one before,
// and the file verifies.
func TestRecordAllIsOneCommitOfConsecutiveLinks(t *testing.T) {
	path, db := openTestSQLite(t)
	g := &gateSink{SQLiteSink: db, entered: make(chan struct{}), release: make(chan struct{})}
	close(g.release)
	r := newTestRecorder(t, []Sink{g})
	recordN(t, r, 0, 1)
	events := []*Event{testEvent(1), testEvent(2), testEvent(3)}
	if err := r.RecordAll(context.Background(), events...); err != nil {
		t.Fatal(err)
	}
	r.Close()
	if got := g.sizes; len(got) != 2 || got[1] != len(events) {
		t.Fatalf("batch sizes %v, want [1 %d]", got, len(events))
	}
	for i := 1; i < len(events); i++ {
		if events[i].PrevEventHash != events[i-1].EventHash || events[i].EventHash == "" {
			t.Fatalf("event %d does not link to event %d", i, i-1)
		}
	}
	if rep := mustVerify(t, path); !rep.OK || rep.Events != 4 {
		t.Fatalf("verify: %+v", rep)
	}
}

// TestRecordAllFailsAsAWhole: a nil among the events refuses the call
// before any is linked; when the commit fails, RecordAll reports it and
// counts each of its events as dropped.
func TestRecordAllFailsAsAWhole(t *testing.T) {
	var out lineCollector
	r := newTestRecorder(t, []Sink{NewFuncSink("stdout", out.write)})
	defer r.Close()
	if err := r.RecordAll(context.Background(), testEvent(0), nil); err == nil {
		t.Fatal("RecordAll accepted a nil event")
	}
	out.setFail(true)
	if err := r.RecordAll(context.Background(), testEvent(1), testEvent(2)); err == nil {
		t.Fatal("RecordAll succeeded although the only sink failed")
	}
	if st := r.Stats(); st.Events != 0 || st.Dropped != 2 {
		t.Fatalf("stats %+v, want 0 events and 2 dropped", st)
	}
}

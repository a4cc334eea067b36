package audit

import (
	"context"
	"errors"
	"fmt"
	"github.com/caddy-nomos/nomos/internal/ids"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// ErrClosed is returned by Record after Close.
var ErrClosed = errors.New("audit: recorder closed")

// defaultWriteTimeout bounds one commit, replays included.
const defaultWriteTimeout = 10 * time.Second

// maxBatch caps the events committed together: enough to amortize an fsync
// under load, small enough that one slow commit delays few callers.
const maxBatch = 256

// Recorder seals events into one hash chain and writes each to every sink.
// It is safe for concurrent use. Events are encoded and redacted in their
// callers' goroutines, linked in arrival order, and written in batches
// (group commit): concurrent events share one transaction and one fsync of
// each durable sink. One batch is written at a time. A caller that finds
// no commit running writes the batch itself, so an uncontended event costs
// no hand-off between goroutines; events queued behind a running commit
// are written by the commit loop as the next batch. Record still returns
// only once its event is stored.
type Recorder struct {
	sinks   []Sink
	chain   []bool // chain[i]: sink i's copy of the chain must stay linear
	order   []int  // sink indexes, durable ones first
	redact  func([]byte) []byte
	now     func() time.Time
	timeout time.Duration
	batch   int // most events per commit

	encoders sync.Pool
	raws     rawCache

	mu      sync.Mutex
	cond    *sync.Cond
	head    string // the hash the next event links to
	stored  string // the hash of the last event a chain sink stored
	pending []*pendingEvent
	scratch []byte
	// committing is set while one batch is being written, by a caller or
	// by the commit loop: batches are written one at a time, in order.
	committing bool
	closed     bool
	exited     chan struct{}

	// backlog is touched only by the one commit running (see committing).
	backlog []replay

	events, dropped, batches atomic.Uint64
}

// pendingEvent is one event between Record and its commit.
type pendingEvent struct {
	prep *prepared
	// sealed carries the identity and chain fields sinks key on; line is
	// the final JSON. Both change when the event is relinked.
	sealed Event
	line   []byte
	err    error
	done   chan struct{}
}

// replay is a batch that advanced the head but that one sink failed to
// write. It is written again before any later batch, so that sink's copy
// of the chain has no gap.
type replay struct {
	sink  int
	batch []Sealed
}

// Sealed is one event as the sinks receive it.
type Sealed struct {
	// Event holds the identity fields (schema_version, event_id,
	// timestamp, event_type, trace_id, action_id) and both chain fields;
	// every other field is only in Line.
	Event *Event
	// Line is the final JSON: redacted, chain fields set.
	Line []byte
}

// RecorderStats are counters for metrics.
type RecorderStats struct {
	// Events is the number of events every sink stored.
	Events uint64
	// Dropped is the number of events Record returned an error for: some
	// sink does not hold them. Anything but 0 needs attention.
	Dropped uint64
	// Batches is the number of group commits.
	Batches uint64
}

// Option configures a Recorder.
type Option func(*Recorder)

// WithRedactor sets the function applied to each event's JSON before it is
// hashed and written, so no sink ever sees an unredacted event and the hash
// covers exactly what was stored. It must return JSON and must leave
// event_id, event_type, trace_id, action_id and both chain fields
// unchanged. It is called concurrently and must not keep its argument.
func WithRedactor(redact func([]byte) []byte) Option {
	return func(r *Recorder) { r.redact = redact }
}

// WithClock sets the clock used for event timestamps. Default: time.Now.
func WithClock(now func() time.Time) Option {
	return func(r *Recorder) { r.now = now }
}

// NewRecorder returns a Recorder writing to sinks, in order, and starts its
// commit loop; Close stops it. The chain continues from the last event of
// the first sink that implements Head; with no such sink every process
// starts a new chain.
func NewRecorder(sinks []Sink, opts ...Option) (*Recorder, error) {
	if len(sinks) == 0 {
		return nil, errors.New("audit: new recorder: no sinks: events would be lost")
	}
	if slices.Contains(sinks, nil) {
		return nil, errors.New("audit: new recorder: nil sink")
	}
	r := &Recorder{sinks: slices.Clone(sinks), now: time.Now, timeout: defaultWriteTimeout, batch: maxBatch}
	for _, opt := range opts {
		opt(r)
	}
	if r.now == nil {
		r.now = time.Now
	}
	if r.timeout <= 0 {
		r.timeout = defaultWriteTimeout
	}
	r.chain = chainSinks(r.sinks)
	r.order = durableFirst(r.sinks)
	head, err := resumeHead(r.sinks, r.timeout)
	if err != nil {
		return nil, err
	}
	r.head, r.stored = head, head
	r.cond = sync.NewCond(&r.mu)
	r.encoders.New = func() any { return &encoder{rawCache: &r.raws} }
	r.exited = make(chan struct{})
	go r.run()
	return r, nil
}

// chainSinks marks the sinks whose copy of the chain must never fork: the
// durable ones (those with a Head), or every sink when none is durable.
func chainSinks(sinks []Sink) []bool {
	chain := make([]bool, len(sinks))
	anyDurable := false
	for i, s := range sinks {
		_, chain[i] = s.(Head)
		anyDurable = anyDurable || chain[i]
	}
	if !anyDurable {
		for i := range chain {
			chain[i] = true
		}
	}
	return chain
}

// durableFirst orders sink indexes with the Head sinks first, each group
// in configured order.
func durableFirst(sinks []Sink) []int {
	var durable, rest []int
	for i, s := range sinks {
		if _, ok := s.(Head); ok {
			durable = append(durable, i)
		} else {
			rest = append(rest, i)
		}
	}
	return append(durable, rest...)
}

func resumeHead(sinks []Sink, timeout time.Duration) (string, error) {
	for _, s := range sinks {
		h, ok := s.(Head)
		if !ok {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		head, err := h.LastEventHash(ctx)
		if err != nil {
			return "", fmt.Errorf("audit: resume chain from %s: %w", s.Name(), err)
		}
		return head, nil
	}
	return "", nil
}

// Record seals e and writes it to every sink, returning only once all of
// them accepted it. It fills e.SchemaVersion, e.EventID (when empty),
// e.Timestamp (when zero), e.PrevEventHash and e.EventHash.
//
// A non-nil error means at least one sink does not hold the event: the
// caller must treat the action as not audited and deny it. The chain head
// advances only when a durable sink stored the event; durable sinks that
// missed it get it replayed before the next event. Cancelling ctx does not
// abort the write (an executed action must still get its completion event);
// the write timeout bounds each commit instead.
func (r *Recorder) Record(ctx context.Context, e *Event) error {
	return r.RecordAll(ctx, e)
}

// RecordAll is Record for several events of one action that may be stored
// together: they become consecutive links of the chain, in order, and are
// normally committed in one transaction (one fsync), so an action's
// trace.start and action.decision cost one durable commit, not two. It
// returns once every event is stored; a non-nil error means some event may
// not be, and the caller must treat all of them as not audited.
func (r *Recorder) RecordAll(ctx context.Context, events ...*Event) error {
	if len(events) == 0 || slices.Contains(events, nil) {
		return errors.New("audit: record: nil event")
	}
	ps, lead, err := r.enqueue(events)
	if err != nil {
		r.dropped.Add(uint64(len(events)))
		return err
	}
	if lead {
		r.lead()
	}
	var errs []error
	for i, p := range ps {
		<-p.done
		events[i].PrevEventHash, events[i].EventHash = p.sealed.PrevEventHash, p.sealed.EventHash
		if p.err != nil {
			r.dropped.Add(1)
			errs = append(errs, p.err)
			continue
		}
		r.events.Add(1)
	}
	if len(errs) > 0 {
		return errs[0]
	}
	return nil
}

// enqueue prepares events and links them to the head one after the other.
// lead reports that no commit was running: the caller writes the next
// batch itself (lead). Otherwise the commit loop writes them once the
// running commit ends.
func (r *Recorder) enqueue(events []*Event) (ps []*pendingEvent, lead bool, err error) {
	ps = make([]*pendingEvent, len(events))
	for i, e := range events {
		p, err := r.pend(e)
		if err != nil {
			return nil, false, err
		}
		ps[i] = p
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, false, ErrClosed
	}
	head := r.head
	for _, p := range ps {
		if err := r.link(p, head); err != nil {
			return nil, false, err
		}
		head = p.sealed.EventHash
	}
	r.head = head
	r.pending = append(r.pending, ps...)
	if r.committing {
		return ps, false, nil
	}
	r.committing = true
	return ps, true, nil
}

// lead writes one batch, the oldest pending events, in the caller's
// goroutine, then leaves what queued meanwhile to the commit loop.
func (r *Recorder) lead() {
	r.mu.Lock()
	batch := r.takeLocked()
	r.mu.Unlock()
	if batch != nil {
		r.commitSafely(batch)
	}
	r.endCommit()
}

// endCommit lets the next batch be written: the commit loop wakes when
// events queued behind this commit, or when Close waits for it.
func (r *Recorder) endCommit() {
	r.mu.Lock()
	r.committing = false
	if len(r.pending) > 0 || r.closed {
		r.cond.Signal()
	}
	r.mu.Unlock()
}

// pend stamps and prepares one event, outside the lock.
func (r *Recorder) pend(e *Event) (*pendingEvent, error) {
	r.stamp(e)
	prep, err := r.prepare(e)
	if err != nil {
		return nil, err
	}
	p := &pendingEvent{prep: prep, done: make(chan struct{})}
	p.sealed = Event{SchemaVersion: e.SchemaVersion, EventID: e.EventID, Timestamp: e.Timestamp,
		EventType: e.EventType, TraceID: e.TraceID, ActionID: e.ActionID}
	return p, nil
}

// stamp fills the fields the Recorder owns. The caller's prev/event hashes
// are cleared: only the Recorder knows the head.
func (r *Recorder) stamp(e *Event) {
	e.SchemaVersion = SchemaVersion
	if e.EventID == "" { // time-ordered: cheap to index in the sqlite sink
		e.EventID = ids.New()
	}
	if e.Timestamp.IsZero() {
		e.Timestamp = r.now()
	}
	e.Timestamp = e.Timestamp.UTC()
	e.PrevEventHash, e.EventHash = "", ""
}

// link seals p onto prev. The caller holds r.mu.
func (r *Recorder) link(p *pendingEvent, prev string) error {
	line, hash, err := link(p.prep, prev, &r.scratch)
	if err != nil {
		return err
	}
	p.line, p.sealed.PrevEventHash, p.sealed.EventHash = line, prev, hash
	return nil
}

// relink re-seals events onto prev, in order, then every pending event
// after them, and moves the head. Linking is one hash per event, so a
// writer that lost a race with another process, or a batch no durable sink
// stored, costs little to redo.
func (r *Recorder) relink(prev string, batch []*pendingEvent) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, list := range [][]*pendingEvent{batch, r.pending} {
		for _, p := range list {
			if err := r.link(p, prev); err != nil {
				return err
			}
			prev = p.sealed.EventHash
		}
	}
	r.head = prev
	return nil
}

// run is the commit loop: it writes the events that queued while another
// commit ran, every pending event (up to maxBatch) as one batch.
func (r *Recorder) run() {
	defer close(r.exited)
	for {
		batch := r.take()
		if batch == nil {
			return
		}
		r.commitSafely(batch)
		r.endCommit()
	}
}

// take waits until events are pending and no commit runs, and claims the
// next batch; nil means closed with nothing left.
func (r *Recorder) take() []*pendingEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	for r.committing || len(r.pending) == 0 && !r.closed {
		r.cond.Wait()
	}
	batch := r.takeLocked()
	if batch != nil {
		r.committing = true
	}
	return batch
}

// takeLocked removes the oldest pending events (up to the batch size) for
// one commit. The caller holds r.mu.
func (r *Recorder) takeLocked() []*pendingEvent {
	n := min(len(r.pending), r.batch)
	if n == 0 {
		return nil
	}
	batch := slices.Clone(r.pending[:n])
	r.pending = slices.Delete(r.pending, 0, n)
	return batch
}

// commitSafely answers every caller of the batch even if a sink panics: a
// caller left waiting would hold its request forever.
func (r *Recorder) commitSafely(batch []*pendingEvent) {
	var err error
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("audit: commit panicked: %v", p)
			r.unstored()
		}
		for _, p := range batch {
			p.err = err
			close(p.done)
		}
	}()
	err = r.commit(batch)
}

// commit writes one batch to every sink.
func (r *Recorder) commit(batch []*pendingEvent) error {
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	r.batches.Add(1)
	if err := r.replayBacklog(ctx); err != nil {
		r.unstored()
		return err
	}
	for attempt := 0; ; attempt++ {
		stored, err := r.writeAll(ctx, batch)
		if stored {
			r.mu.Lock()
			r.stored = batch[len(batch)-1].sealed.EventHash
			r.mu.Unlock()
			return err
		}
		if !errors.Is(err, ErrStaleHead) || attempt == maxRelinks {
			r.unstored()
			return err
		}
		// Another process appended to a shared durable sink: link to its
		// last event and try again, after a jittered pause so two busy
		// writers do not keep colliding.
		time.Sleep(time.Duration(rand.Int64N(int64(attempt+1) * int64(time.Millisecond))))
		head, err := resumeHead(r.sinks, r.timeout)
		if err != nil {
			r.unstored()
			return err
		}
		if err := r.relink(head, batch); err != nil {
			r.unstored()
			return err
		}
	}
}

// unstored relinks the events queued behind a batch that no durable sink
// stored onto the last stored event, so the chain never links past a gap.
func (r *Recorder) unstored() {
	r.mu.Lock()
	prev := r.stored
	r.mu.Unlock()
	_ = r.relink(prev, nil)
}

// maxRelinks bounds how often one batch is relinked after losing a race
// with another writer of the same durable sink.
const maxRelinks = 32

// writeAll writes durable sinks first, so a batch that lost the race for a
// shared durable sink (ErrStaleHead) reaches no sink at all before it is
// relinked. stored reports whether a chain sink holds the batch.
func (r *Recorder) writeAll(ctx context.Context, batch []*pendingEvent) (bool, error) {
	sealed := make([]Sealed, len(batch))
	events := make([]Event, len(batch)) // one allocation for the batch
	for i, p := range batch {
		events[i] = p.sealed
		sealed[i] = Sealed{Event: &events[i], Line: p.line}
	}
	var errs []error
	var failed []int
	stored := false
	for _, i := range r.order {
		s := r.sinks[i]
		err := writeBatch(ctx, s, sealed)
		if errors.Is(err, ErrStaleHead) && !stored {
			return false, err
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("audit: sink %s: %w", s.Name(), err))
			failed = append(failed, i)
			continue
		}
		stored = stored || r.chain[i]
	}
	if stored {
		for _, i := range failed {
			r.backlog = append(r.backlog, replay{sink: i, batch: sealed})
		}
	}
	// Without a durable copy, non-durable sinks that did write the batch
	// keep orphans sharing their prev_event_hash with the next event.
	return stored, errors.Join(errs...)
}

// writeBatch hands a batch to a sink in one call when it can take one.
func writeBatch(ctx context.Context, s Sink, batch []Sealed) error {
	if b, ok := s.(BatchSink); ok {
		return b.WriteBatch(ctx, batch)
	}
	for _, e := range batch {
		if err := s.Write(ctx, e.Event, e.Line); err != nil {
			return err
		}
	}
	return nil
}

// replayBacklog writes pending batches to the sinks that missed them.
// While any remains, nothing new is committed: it would link past rows
// those sinks do not have.
func (r *Recorder) replayBacklog(ctx context.Context) error {
	for len(r.backlog) > 0 {
		p := r.backlog[0]
		s := r.sinks[p.sink]
		if err := writeBatch(ctx, s, p.batch); err != nil {
			return fmt.Errorf("audit: sink %s: replay %d event(s) from %s: %w",
				s.Name(), len(p.batch), p.batch[0].Event.EventID, err)
		}
		r.backlog = r.backlog[1:]
	}
	return nil
}

// Stats returns the Recorder's counters.
func (r *Recorder) Stats() RecorderStats {
	return RecorderStats{Events: r.events.Load(), Dropped: r.dropped.Load(), Batches: r.batches.Load()}
}

// Close commits what is pending, replays what it can of the backlog and
// closes every sink. Record fails with ErrClosed afterwards.
func (r *Recorder) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.cond.Broadcast()
	r.mu.Unlock()
	<-r.exited
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	var errs []error
	if err := r.replayBacklog(ctx); err != nil {
		errs = append(errs, fmt.Errorf("audit: close: %d batch(es) never replayed: %w", len(r.backlog), err))
	}
	for _, s := range r.sinks {
		if err := s.Close(); err != nil {
			errs = append(errs, fmt.Errorf("audit: close sink %s: %w", s.Name(), err))
		}
	}
	return errors.Join(errs...)
}

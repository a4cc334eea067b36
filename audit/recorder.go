package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// ErrClosed is returned by Record after Close.
var ErrClosed = errors.New("audit: recorder closed")

// defaultWriteTimeout bounds one Record call, replays included.
const defaultWriteTimeout = 10 * time.Second

// Recorder seals events into one hash chain and writes each to every sink.
// It is safe for concurrent use; Record calls are serialized because each
// event links to the one before it.
type Recorder struct {
	mu      sync.Mutex
	sinks   []Sink
	chain   []bool // chain[i]: sink i's copy of the chain must stay linear
	order   []int  // sink indexes, durable ones first
	redact  func([]byte) []byte
	now     func() time.Time
	timeout time.Duration
	head    string
	backlog []replay
	closed  bool
	// events and dropped feed Stats without taking mu, which a slow
	// sink may hold for the write timeout.
	events, dropped atomic.Uint64
}

// replay is an event that advanced the head but that one sink failed to
// write. It is written again before any later event, so that sink's copy
// of the chain has no gap.
type replay struct {
	sink  int
	event *Event
	line  []byte
}

// Option configures a Recorder.
type Option func(*Recorder)

// WithRedactor sets the function applied to each event's JSON before it is
// hashed and written, so no sink ever sees an unredacted event and the hash
// covers exactly what was stored. It must return JSON and must leave
// event_id, event_type and prev_event_hash unchanged.
func WithRedactor(redact func([]byte) []byte) Option {
	return func(r *Recorder) { r.redact = redact }
}

// WithClock sets the clock used for event timestamps. Default: time.Now.
func WithClock(now func() time.Time) Option {
	return func(r *Recorder) { r.now = now }
}

// WithWriteTimeout bounds one Record call, including the replay of earlier
// failed writes. Default: 10s.
func WithWriteTimeout(d time.Duration) Option {
	return func(r *Recorder) { r.timeout = d }
}

// NewRecorder returns a Recorder writing to sinks, in order. The chain
// continues from the last event of the first sink that implements Head;
// with no such sink every process starts a new chain.
func NewRecorder(sinks []Sink, opts ...Option) (*Recorder, error) {
	if len(sinks) == 0 {
		return nil, errors.New("audit: new recorder: no sinks: events would be lost")
	}
	if slices.Contains(sinks, nil) {
		return nil, errors.New("audit: new recorder: nil sink")
	}
	r := &Recorder{sinks: slices.Clone(sinks), now: time.Now, timeout: defaultWriteTimeout}
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
	r.head = head
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
			return "", fmt.Errorf("audit: new recorder: resume chain from %s: %w", s.Name(), err)
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
// the write timeout bounds it instead.
func (r *Recorder) Record(ctx context.Context, e *Event) error {
	if e == nil {
		return errors.New("audit: record: nil event")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		r.dropped.Add(1)
		return ErrClosed
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.timeout)
	defer cancel()
	err := r.record(ctx, e)
	if err != nil {
		r.dropped.Add(1)
	} else {
		r.events.Add(1)
	}
	return err
}

func (r *Recorder) record(ctx context.Context, e *Event) error {
	if err := r.replayBacklog(ctx); err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		err := r.recordOnce(ctx, e)
		if !errors.Is(err, ErrStaleHead) || attempt == maxRelinks {
			return err
		}
		// Another process appended to a shared durable sink: link to
		// its last event and try again, after a jittered pause so two
		// busy writers do not keep colliding.
		time.Sleep(time.Duration(rand.Int64N(int64(attempt+1) * int64(time.Millisecond))))
		if r.head, err = resumeHead(r.sinks, r.timeout); err != nil {
			return err
		}
	}
}

// maxRelinks bounds how often one event is relinked after losing a race
// with another writer of the same durable sink.
const maxRelinks = 32

func (r *Recorder) recordOnce(ctx context.Context, e *Event) error {
	if err := r.stamp(e); err != nil {
		return err
	}
	sealed, line, err := r.seal(e)
	if err != nil {
		return err
	}
	e.EventHash = sealed.EventHash
	return r.writeAll(ctx, sealed, line)
}

// stamp fills the fields the Recorder owns. The caller's prev/event hashes
// are overwritten: only the Recorder knows the head.
func (r *Recorder) stamp(e *Event) error {
	e.SchemaVersion = SchemaVersion
	if e.EventID == "" {
		id, err := newEventID()
		if err != nil {
			return err
		}
		e.EventID = id
	}
	if e.Timestamp.IsZero() {
		e.Timestamp = r.now()
	}
	e.Timestamp = e.Timestamp.UTC()
	e.PrevEventHash = r.head
	e.EventHash = ""
	return nil
}

// seal redacts, hashes and re-decodes e, so sinks get the event exactly as
// stored and never the unredacted original.
func (r *Recorder) seal(e *Event) (*Event, []byte, error) {
	raw, err := json.Marshal(e)
	if err != nil {
		return nil, nil, fmt.Errorf("audit: record: encode event: %w", err)
	}
	if r.redact != nil {
		raw = r.redact(raw)
	}
	hash, err := Hash(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("audit: record: redacted event: %w", err)
	}
	line, err := withEventHash(raw, hash)
	if err != nil {
		return nil, nil, fmt.Errorf("audit: record: %w", err)
	}
	var sealed Event
	if err := json.Unmarshal(line, &sealed); err != nil {
		return nil, nil, fmt.Errorf("audit: record: redacted event does not fit the schema: %w", err)
	}
	if err := checkIdentityKept(e, &sealed); err != nil {
		return nil, nil, err
	}
	return &sealed, line, nil
}

// checkIdentityKept refuses an event whose redactor rewrote the fields the
// chain and the sinks key on; a 64-hex hash can look like a secret to a
// pattern-based redactor, and storing a mangled link would break the chain.
func checkIdentityKept(before, after *Event) error {
	if before.EventID != after.EventID || before.EventType != after.EventType ||
		before.PrevEventHash != after.PrevEventHash || before.TraceID != after.TraceID ||
		before.ActionID != after.ActionID {
		return errors.New("audit: record: the redactor altered event_id, event_type, trace_id, action_id or prev_event_hash")
	}
	return nil
}

// writeAll writes durable sinks first, so an event that lost the race for
// a shared durable sink (ErrStaleHead) reaches no sink at all before it is
// relinked.
func (r *Recorder) writeAll(ctx context.Context, e *Event, line []byte) error {
	var errs []error
	var failed []int
	stored := false
	for _, i := range r.order {
		s := r.sinks[i]
		err := s.Write(ctx, e, line)
		if errors.Is(err, ErrStaleHead) && !stored {
			return err
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("audit: sink %s: %w", s.Name(), err))
			failed = append(failed, i)
			continue
		}
		stored = stored || r.chain[i]
	}
	if !stored {
		// No durable copy exists, so linking the next event to this one
		// would put a gap in every durable sink. Non-durable sinks that did
		// write it keep an orphan sharing its prev_event_hash with the next
		// event.
		return errors.Join(errs...)
	}
	r.head = e.EventHash
	for _, i := range failed {
		r.backlog = append(r.backlog, replay{sink: i, event: e, line: line})
	}
	return errors.Join(errs...)
}

// replayBacklog writes pending events to the sinks that missed them. While
// any remains, no new event is recorded: the new event would link past a
// row those sinks do not have.
func (r *Recorder) replayBacklog(ctx context.Context) error {
	for len(r.backlog) > 0 {
		p := r.backlog[0]
		s := r.sinks[p.sink]
		if err := s.Write(ctx, p.event, p.line); err != nil {
			return fmt.Errorf("audit: sink %s: replay event %s: %w", s.Name(), p.event.EventID, err)
		}
		r.backlog = r.backlog[1:]
	}
	return nil
}

// Close replays what it can of the backlog and closes every sink. Record
// fails with ErrClosed afterwards.
func (r *Recorder) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	var errs []error
	if err := r.replayBacklog(ctx); err != nil {
		errs = append(errs, fmt.Errorf("audit: close: %d write(s) never replayed: %w", len(r.backlog), err))
	}
	for _, s := range r.sinks {
		if err := s.Close(); err != nil {
			errs = append(errs, fmt.Errorf("audit: close sink %s: %w", s.Name(), err))
		}
	}
	return errors.Join(errs...)
}

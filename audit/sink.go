package audit

import (
	"context"
	"errors"
)

// Sink stores or forwards sealed events.
type Sink interface {
	// Name identifies the sink in errors, e.g. "sqlite" or "webhook".
	Name() string
	// Write stores one event. line is the final JSON of the event:
	// redacted, with both chain fields set; e carries the identity and
	// chain fields of the same event (see Sealed). Write must return only once the event is as durable as
	// the sink promises, and must accept the same event twice (same
	// event_id) without storing it twice: the Recorder replays an event to
	// a sink that failed it.
	Write(ctx context.Context, e *Event, line []byte) error
	// Close releases the sink. The Recorder calls it once.
	Close() error
}

// BatchSink is implemented by sinks that store several events at once: the
// Recorder's group commit hands them every event of a commit in one call,
// in chain order. WriteBatch stores all of them or reports an error; it
// has Write's idempotency rule.
type BatchSink interface {
	WriteBatch(ctx context.Context, batch []Sealed) error
}

// Head is implemented by durable sinks. It lets a new Recorder continue the
// chain where the previous process stopped instead of starting a new one.
type Head interface {
	// LastEventHash returns the event_hash of the last stored event, or ""
	// when the sink holds none.
	LastEventHash(ctx context.Context) (string, error)
}

// NewFuncSink returns a sink that hands every line to write. It is not
// durable and keeps no head. The Caddy glue uses it to log events through
// the zap logger "nomos.audit"; write must not keep line after returning.
func NewFuncSink(name string, write func(line []byte) error) Sink {
	return funcSink{name: name, write: write}
}

type funcSink struct {
	name  string
	write func(line []byte) error
}

func (s funcSink) Name() string { return s.name }

func (s funcSink) Write(_ context.Context, _ *Event, line []byte) error {
	return s.write(line)
}

func (s funcSink) Close() error { return nil }

// ErrStaleHead is returned by a durable sink when another writer appended
// to it since the Recorder last read its head; the Recorder relinks the
// event to the new head and writes it again.
var ErrStaleHead = errors.New("audit: another writer appended to the chain first")

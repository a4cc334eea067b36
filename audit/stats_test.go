package audit

import (
	"context"
	"errors"
	"testing"
)

// TestRecorderStats: every stored event and every refused one is counted,
// including events offered after Close.
func TestRecorderStats(t *testing.T) {
	fail := false
	sink := NewFuncSink("test", func([]byte) error {
		if fail {
			return errors.New("disk full")
		}
		return nil
	})
	r, err := NewRecorder([]Sink{sink})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if err := r.Record(ctx, &Event{EventType: EventTraceStart, TraceID: "t"}); err != nil {
			t.Fatal(err)
		}
	}
	fail = true
	if err := r.Record(ctx, &Event{EventType: EventTraceStart, TraceID: "t"}); err == nil {
		t.Fatal("failing sink accepted the event")
	}
	_ = r.Close()
	_ = r.Record(ctx, &Event{EventType: EventTraceStart, TraceID: "t"})
	if got := r.Stats(); got.Events != 3 || got.Dropped != 2 {
		t.Fatalf("stats %+v, want 3 events and 2 dropped", got)
	}
}

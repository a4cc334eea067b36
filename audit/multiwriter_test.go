package audit

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
)

// TestTwoWritersShareOneChain: two processes (here two recorders with
// their own connections) appending to one sqlite file keep a single linear
// chain, because a writer that lost the race relinks its event.
func TestTwoWritersShareOneChain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.db")
	var recs []*Recorder
	for i := 0; i < 2; i++ {
		s, err := OpenSQLite(path)
		if err != nil {
			t.Fatal(err)
		}
		r, err := NewRecorder([]Sink{s})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		recs = append(recs, r)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 80)
	for w, r := range recs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 40; i++ {
				errs <- r.Record(context.Background(), &Event{EventType: EventActionDecision, TraceID: fmt.Sprintf("w%d-%d", w, i)})
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	rep, err := VerifySQLite(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK || rep.Events != 80 {
		t.Fatalf("chain after two writers: %+v", rep)
	}
}

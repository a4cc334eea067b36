package caddymodule

import (
	"sync"
	"time"
)

// afterResponseWait bounds how long Cleanup waits for completions still
// being recorded: a few commits at the recorder's write timeout.
const afterResponseWait = 15 * time.Second

// afterResponse runs the work a front door does once its client has the
// answer: nomos_guard records an action's completion (action.completed and
// trace.end) there, so the upstream's response is not held back by an
// audit commit. The decision was committed before the request went on;
// only the completion moves. The work is tracked, and Cleanup waits for it
// before the recorder can be released, so a reload or shutdown loses none.
// Once closed, work runs in the caller. The zero value is ready.
type afterResponse struct {
	mu      sync.Mutex
	running int
	idle    *sync.Cond // signalled when running drops to 0
	closed  bool
}

// run starts fn in its own goroutine, or runs it now once closed.
func (a *afterResponse) run(fn func()) {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		fn()
		return
	}
	a.running++
	a.mu.Unlock()
	go func() {
		defer a.finished()
		fn()
	}()
}

func (a *afterResponse) finished() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.running--; a.running == 0 && a.idle != nil {
		a.idle.Broadcast()
	}
}

// wait waits up to timeout for the work started so far (and any started
// meanwhile) to finish; it reports whether it did.
func (a *afterResponse) wait(timeout time.Duration) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.idle == nil {
		a.idle = sync.NewCond(&a.mu)
	}
	expired := false
	t := time.AfterFunc(timeout, func() {
		a.mu.Lock()
		expired = true
		a.idle.Broadcast()
		a.mu.Unlock()
	})
	defer t.Stop()
	for a.running > 0 && !expired {
		a.idle.Wait()
	}
	return a.running == 0
}

// close stops new background work and waits up to timeout for what runs.
func (a *afterResponse) close(timeout time.Duration) bool {
	a.mu.Lock()
	a.closed = true
	a.mu.Unlock()
	return a.wait(timeout)
}

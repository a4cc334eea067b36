package caddymodule

import (
	"sync"
	"time"
)

// afterResponseWait bounds how long Cleanup waits for completions still
// being recorded: a few commits at the recorder's write timeout.
const afterResponseWait = 15 * time.Second

// afterResponseWorkers bounds the goroutines that run after-response
// work; more work waits in the queue. They are kept, so their stacks are
// grown once rather than for every request.
const afterResponseWorkers = 8

// afterResponseDelay is how long queued work waits before a worker takes
// it. The client is still reading its response when the work is queued;
// on a busy host the work would take the CPU the client's own process (or
// the next request) needs at that moment. Waiting a moment moves it off
// that instant and lets work queued meanwhile start together.
const afterResponseDelay = time.Millisecond

// afterResponse runs the work a front door does once its client has the
// answer: nomos_guard records an action's completion (action.completed and
// trace.end) there, so the upstream's response is not held back by an
// audit commit. The decision was committed before the request went on;
// only the completion moves. The work is queued (never dropped) for a few
// long-lived workers, and Cleanup waits for it before the recorder can be
// released, so a reload or shutdown loses none. Once closed, work runs in
// the caller. The zero value is ready.
type afterResponse struct {
	mu      sync.Mutex
	work    sync.Cond // a worker waits here for queued work
	idle    sync.Cond // wait waits here for pending to reach 0
	queue   []func()
	pending int // queued or running
	workers int
	waiting int  // workers waiting for work
	armed   bool // a kick is scheduled
	closed  bool
}

func (a *afterResponse) init() {
	if a.work.L == nil {
		a.work.L, a.idle.L = &a.mu, &a.mu
	}
}

// run queues fn for a worker, or runs it now once closed.
func (a *afterResponse) run(fn func()) {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		fn()
		return
	}
	a.init()
	a.pending++
	a.queue = append(a.queue, fn)
	if !a.armed {
		a.armed = true
		time.AfterFunc(afterResponseDelay, a.kick)
	}
	a.mu.Unlock()
}

// kick hands the queue to the workers, starting more (up to the bound)
// when every worker is busy.
func (a *afterResponse) kick() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.armed = false
	a.wakeLocked()
}

// wakeLocked wakes a waiting worker per queued piece, and starts workers
// (up to the bound) for the rest. A worker drains the whole queue before
// it waits again, so no piece is left behind. The caller holds a.mu.
func (a *afterResponse) wakeLocked() {
	n := len(a.queue)
	for w := a.waiting; n > 0 && w > 0; n, w = n-1, w-1 {
		a.work.Signal()
	}
	for ; n > 0 && a.workers < afterResponseWorkers; n-- {
		a.workers++
		go a.worker()
	}
}

// worker runs queued work until the queue is closed and empty.
func (a *afterResponse) worker() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for {
		for len(a.queue) == 0 && !a.closed {
			a.waiting++
			a.work.Wait()
			a.waiting--
		}
		if len(a.queue) == 0 {
			a.workers--
			return
		}
		fn := a.queue[0]
		a.queue[0] = nil
		a.queue = a.queue[1:]
		a.mu.Unlock()
		fn()
		a.mu.Lock()
		if a.pending--; a.pending == 0 {
			a.idle.Broadcast()
		}
	}
}

// wait waits up to timeout for the work queued so far (and any queued
// meanwhile) to finish; it reports whether it did.
func (a *afterResponse) wait(timeout time.Duration) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.init()
	expired := false
	t := time.AfterFunc(timeout, func() {
		a.mu.Lock()
		expired = true
		a.idle.Broadcast()
		a.mu.Unlock()
	})
	defer t.Stop()
	for a.pending > 0 && !expired {
		a.idle.Wait()
	}
	return a.pending == 0
}

// close stops queueing (later work runs in its caller), lets the workers
// finish the queue and exit, and waits up to timeout for it.
func (a *afterResponse) close(timeout time.Duration) bool {
	a.mu.Lock()
	a.init()
	a.closed = true
	a.work.Broadcast()
	a.wakeLocked() // work still waiting for its kick
	a.mu.Unlock()
	return a.wait(timeout)
}

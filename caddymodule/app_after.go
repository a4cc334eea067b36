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

// afterResponseDelay is how long queued work waits, at least, before a
// worker takes it, and the period of the clock that hands it over. The
// client is still reading its response when the work is queued; on a busy
// host the work would take the CPU the client's own process (or the next
// request) needs at that moment. Waiting a moment moves it off that
// instant and lets work queued meanwhile start together.
const afterResponseDelay = time.Millisecond

// afterResponseIdleTicks is how many empty ticks the clock runs before it
// stops: 100 ms without traffic. While it runs, queueing work costs no
// system call (no timer to arm, no thread to wake), which is the point:
// the work is queued on the request's own path.
const afterResponseIdleTicks = 100

// afterResponse runs the work a front door does once its client has the
// answer: nomos_guard records an action's completion (action.completed and
// trace.end) there, so the upstream's response is not held back by an
// audit commit. The decision was committed before the request went on;
// only the completion moves. The work is queued (never dropped); a clock
// goroutine hands it to a few long-lived workers once it is at least
// afterResponseDelay old, and Cleanup waits for it before the recorder can
// be released, so a reload or shutdown loses none. Once closed, work runs
// in the caller. The zero value is ready.
type afterResponse struct {
	mu      sync.Mutex
	work    sync.Cond // a worker waits here for handed-over work
	idle    sync.Cond // wait waits here for pending to reach 0
	resume  sync.Cond // a stopped clock waits here for work
	queue   []func()  // handed over to the workers
	held    []held    // queued, not yet handed over
	pending int       // held, queued or running
	workers int
	waiting int  // workers waiting for work
	clock   bool // the clock goroutine exists
	stopped bool // ... and waits on resume
	closed  bool
}

// held is work queued at a time, waiting for its delay.
type held struct {
	at time.Time
	fn func()
}

func (a *afterResponse) init() {
	if a.work.L == nil {
		a.work.L, a.idle.L, a.resume.L = &a.mu, &a.mu, &a.mu
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
	a.held = append(a.held, held{at: time.Now(), fn: fn})
	switch {
	case !a.clock:
		a.clock = true
		go a.tick()
	case a.stopped:
		a.resume.Signal()
	}
	a.mu.Unlock()
}

// tick is the clock: every afterResponseDelay it hands the work that has
// waited long enough to the workers. After afterResponseIdleTicks ticks
// with nothing held it stops until run resumes it, so an idle server does
// not wake up. It ends once closed.
func (a *afterResponse) tick() {
	t := time.NewTicker(afterResponseDelay)
	defer t.Stop()
	empty := 0
	for {
		a.mu.Lock()
		for len(a.held) == 0 && empty >= afterResponseIdleTicks && !a.closed {
			a.stopped = true
			t.Stop()
			a.resume.Wait()
			a.stopped = false
			empty = 0
			t.Reset(afterResponseDelay)
		}
		if a.closed {
			a.clock = false
			a.mu.Unlock()
			return
		}
		if len(a.held) == 0 {
			empty++
		} else {
			empty = 0
			a.handOverLocked(time.Now().Add(-afterResponseDelay))
		}
		a.mu.Unlock()
		<-t.C
	}
}

// handOverLocked moves the work held since before cutoff (all of it when
// cutoff is zero) to the workers' queue and wakes them. The caller holds
// a.mu.
func (a *afterResponse) handOverLocked(cutoff time.Time) {
	n := 0
	for n < len(a.held) && (cutoff.IsZero() || !a.held[n].at.After(cutoff)) {
		a.queue = append(a.queue, a.held[n].fn)
		a.held[n] = held{}
		n++
	}
	a.held = append(a.held[:0], a.held[n:]...)
	if n > 0 {
		a.wakeLocked()
	}
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

// close stops queueing (later work runs in its caller) and the clock,
// hands everything held to the workers, lets them finish the queue and
// exit, and waits up to timeout for it.
func (a *afterResponse) close(timeout time.Duration) bool {
	a.mu.Lock()
	a.init()
	a.closed = true
	a.resume.Broadcast()
	a.work.Broadcast()
	a.handOverLocked(time.Time{})
	a.mu.Unlock()
	return a.wait(timeout)
}

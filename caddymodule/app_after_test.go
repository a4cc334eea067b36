package caddymodule

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Every piece of after-response work runs exactly once, whether it was
// queued before close (the workers finish the queue) or after (it runs in
// its caller), and wait only returns true once all of it has finished.
func TestAfterResponseRunsEveryPieceOnce(t *testing.T) {
	var a afterResponse
	var ran atomic.Int64
	var wg sync.WaitGroup
	const senders, each = 16, 200
	for s := 0; s < senders; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				a.run(func() {
					if i%50 == 0 {
						time.Sleep(time.Millisecond)
					}
					ran.Add(1)
				})
			}
		}()
	}
	wg.Wait()
	if !a.wait(10 * time.Second) {
		t.Fatal("wait timed out")
	}
	if got := ran.Load(); got != senders*each {
		t.Fatalf("ran %d pieces, want %d", got, senders*each)
	}
	a.mu.Lock()
	workers := a.workers
	a.mu.Unlock()
	if workers > afterResponseWorkers {
		t.Fatalf("%d workers, want at most %d", workers, afterResponseWorkers)
	}

	release := make(chan struct{})
	a.run(func() { <-release; ran.Add(1) })
	if a.wait(20 * time.Millisecond) {
		t.Fatal("wait returned true while work was still running")
	}
	go func() { time.Sleep(20 * time.Millisecond); close(release) }()
	if !a.close(10 * time.Second) {
		t.Fatal("close timed out")
	}
	a.run(func() { ran.Add(1) }) // after close: runs in the caller
	if got := ran.Load(); got != senders*each+2 {
		t.Fatalf("ran %d pieces, want %d", got, senders*each+2)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		a.mu.Lock()
		left := a.workers
		a.mu.Unlock()
		if left == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d workers left after close", left)
		}
	}
}

// The clock stops once nothing has been queued for a while, and work
// queued then still runs: run resumes it. close ends a stopped clock.
func TestAfterResponseClockStopsAndResumes(t *testing.T) {
	var a afterResponse
	var ran atomic.Int64
	a.run(func() { ran.Add(1) })
	if !a.wait(10 * time.Second) {
		t.Fatal("wait timed out")
	}
	stopped := func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.stopped
	}
	for deadline := time.Now().Add(10 * time.Second); !stopped(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the clock still runs with nothing queued")
		}
	}
	a.run(func() { ran.Add(1) })
	if !a.wait(10*time.Second) || ran.Load() != 2 {
		t.Fatalf("work queued to a stopped clock: ran %d pieces, want 2", ran.Load())
	}
	for deadline := time.Now().Add(10 * time.Second); !stopped(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the clock did not stop again")
		}
	}
	if !a.close(10 * time.Second) {
		t.Fatal("close timed out")
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		a.mu.Lock()
		clock := a.clock
		a.mu.Unlock()
		if !clock {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the clock goroutine outlived close")
		}
	}
}

package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddy-nomos/nomos/policy/action"
)

// initialBackoff is the wait after the first failed delivery; it doubles
// with each further failure up to MaxBackoff.
const initialBackoff = 100 * time.Millisecond

// maxResponseDrain is how much of a collector's answer is read, only so the
// connection can be reused.
const maxResponseDrain = 64 << 10

func (w *WebhookSink) run(ctx context.Context) {
	defer w.done.Done()
	ticker := time.NewTicker(w.cfg.FlushInterval)
	defer ticker.Stop()
	for {
		// Deliver first so a restart sends what the last process left.
		w.drainSafely(ctx)
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		case <-w.wake:
		}
	}
}

// drainSafely keeps the loop alive through a panic: a dead loop would let
// the outbox grow silently while Write keeps succeeding.
func (w *WebhookSink) drainSafely(ctx context.Context) {
	defer func() {
		if p := recover(); p != nil {
			w.report(fmt.Errorf("audit: webhook: delivery panicked: %v", p))
		}
	}()
	w.drain(ctx)
}

// drain delivers batches until the outbox is empty or ctx ends, backing off
// after each failure.
func (w *WebhookSink) drain(ctx context.Context) {
	w.unsent.Store(0)
	failures := 0
	for ctx.Err() == nil {
		n, err := w.deliverBatch(ctx)
		if err != nil && ctx.Err() != nil {
			return // stopping; Close makes the final attempt
		}
		if err != nil {
			failures++
			w.report(err)
			sleep(ctx, w.backoff(failures))
			continue
		}
		if n == 0 {
			return
		}
		failures = 0
	}
}

// deliverBatch posts the oldest pending events and removes them once
// acknowledged. It returns how many were delivered.
func (w *WebhookSink) deliverBatch(ctx context.Context) (int, error) {
	batch, err := w.nextBatch(ctx)
	if err != nil {
		return 0, fmt.Errorf("audit: webhook: read outbox: %w", err)
	}
	if len(batch) == 0 {
		return 0, nil
	}
	if err := w.post(ctx, batch); err != nil {
		return 0, err
	}
	if err := w.remove(context.WithoutCancel(ctx), batch); err != nil {
		// The collector has them; they will be sent again, which
		// at-least-once delivery allows.
		return 0, fmt.Errorf("audit: webhook: remove delivered events: %w", err)
	}
	return len(batch), nil
}

func (w *WebhookSink) post(ctx context.Context, batch []outboxEvent) error {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.cfg.URL, bytes.NewReader(batchBody(batch)))
	if err != nil {
		return fmt.Errorf("audit: webhook: build request: %w", err)
	}
	for _, h := range w.headers {
		req.Header.Set(h[0], h[1])
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", batchKey(batch))
	resp, err := w.cfg.Client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			// The collector's URL may carry a token in its query; errors
			// are logged, so they name the URL without it.
			if u, perr := url.Parse(ue.URL); perr == nil {
				u.RawQuery, u.User, u.Fragment = "", nil, ""
				ue.URL = u.String()
			}
		}
		return fmt.Errorf("audit: webhook: post %d event(s): %w", len(batch), err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseDrain))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("audit: webhook: post %d event(s): collector answered %s", len(batch), resp.Status)
	}
	return nil
}

// batchBody is {"events":[...]}; each line is already a JSON object.
func batchBody(batch []outboxEvent) []byte {
	var b bytes.Buffer
	b.WriteString(`{"events":[`)
	for i, ev := range batch {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(ev.line)
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

// batchKey derives the Idempotency-Key from the event ids, so a retry of
// the same batch carries the same key.
func batchKey(batch []outboxEvent) string {
	ids := make([]string, len(batch))
	for i, ev := range batch {
		ids[i] = ev.eventID
	}
	return action.SHA256Hex([]byte(strings.Join(ids, "\n")))
}

// backoff is exponential with jitter in [d/2, d], so many replicas that
// lost the same collector do not retry in lockstep.
func (w *WebhookSink) backoff(failures int) time.Duration {
	d := w.cfg.MaxBackoff
	if failures <= 20 {
		d = min(initialBackoff<<(failures-1), d)
	}
	return d/2 + rand.N(d/2+1)
}

// finalFlush makes one bounded attempt, without backoff, to deliver what is
// pending when the sink closes.
func (w *WebhookSink) finalFlush() {
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.Timeout)
	defer cancel()
	for ctx.Err() == nil {
		n, err := w.deliverBatch(ctx)
		if err != nil {
			w.report(err)
			return
		}
		if n == 0 {
			return
		}
	}
}

func (w *WebhookSink) report(err error) {
	if w.cfg.OnError != nil {
		w.cfg.OnError(err)
	}
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

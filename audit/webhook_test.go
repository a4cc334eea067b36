package audit

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// collector is a loopback webhook receiver that can fail on demand.
type collector struct {
	srv      *httptest.Server
	requests atomic.Int64
	failOdd  bool // fail the 1st, 3rd, 5th... request

	mu       sync.Mutex
	received map[string]int // event_id -> times received
	bodies   []map[string]json.RawMessage
	headers  []http.Header
}

func newCollector(t *testing.T, failOdd bool) *collector {
	c := &collector{failOdd: failOdd, received: map[string]int{}}
	c.srv = httptest.NewServer(http.HandlerFunc(c.serve))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *collector) serve(w http.ResponseWriter, r *http.Request) {
	n := c.requests.Add(1)
	body, _ := io.ReadAll(r.Body)
	if c.failOdd && n%2 == 1 {
		http.Error(w, "flaky", http.StatusServiceUnavailable)
		return
	}
	var batch struct{ Events []Event }
	var raw map[string]json.RawMessage
	if json.Unmarshal(body, &batch) != nil || json.Unmarshal(body, &raw) != nil {
		http.Error(w, "bad batch", http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range batch.Events {
		c.received[e.EventID]++
	}
	c.bodies = append(c.bodies, raw)
	c.headers = append(c.headers, r.Header.Clone())
	w.WriteHeader(http.StatusAccepted)
}

func (c *collector) ids() map[string]bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]bool{}
	for id := range c.received {
		out[id] = true
	}
	return out
}

func fastWebhook(t *testing.T, url, outbox string) *WebhookSink {
	t.Helper()
	w, err := NewWebhookSink(WebhookConfig{
		URL: url, OutboxPath: outbox, BatchSize: 7,
		FlushInterval: 5 * time.Millisecond, MaxBackoff: 5 * time.Millisecond,
		Timeout: 2 * time.Second, Headers: map[string]string{"Authorization": "Bearer test"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// waitDelivered polls until the outbox is empty, failing after a deadline.
func waitDelivered(t *testing.T, w *WebhookSink) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := w.Pending(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d events still pending after the deadline", n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func idSet(events []*Event) map[string]bool {
	out := map[string]bool{}
	for _, e := range events {
		out[e.EventID] = true
	}
	return out
}

func assertSameIDs(t *testing.T, got, want map[string]bool) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("collector has %d distinct events, recorded %d", len(got), len(want))
	}
	for id := range want {
		if !got[id] {
			t.Fatalf("event %s never delivered", id)
		}
	}
}

func TestWebhookDeliversEverythingThroughAFlakyCollector(t *testing.T) {
	c := newCollector(t, true)
	w := fastWebhook(t, c.srv.URL, filepath.Join(t.TempDir(), "outbox.db"))
	var failures atomic.Int64
	w.cfg.OnError = func(error) { failures.Add(1) }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w.Start(ctx)
	r := newTestRecorder(t, []Sink{w})
	recorded := recordN(t, r, 0, 60)
	waitDelivered(t, w)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	assertSameIDs(t, c.ids(), idSet(recorded))
	if failures.Load() == 0 {
		t.Fatal("the collector never failed; the test proves nothing")
	}
}

func TestWebhookBatchFormat(t *testing.T) {
	c := newCollector(t, false)
	w := fastWebhook(t, c.srv.URL, filepath.Join(t.TempDir(), "outbox.db"))
	r := newTestRecorder(t, []Sink{w})
	recorded := recordN(t, r, 0, 3)
	w.Start(context.Background())
	waitDelivered(t, w)
	r.Close()

	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.bodies) != 1 || len(c.bodies[0]) != 1 {
		t.Fatalf("want one batch with only an events key, got %v", c.bodies)
	}
	var events []map[string]any
	if err := json.Unmarshal(c.bodies[0]["events"], &events); err != nil || len(events) != 3 {
		t.Fatalf("events: %v %v", events, err)
	}
	for i, e := range events {
		if e["event_id"] != recorded[i].EventID || e["event_hash"] != recorded[i].EventHash {
			t.Errorf("event %d out of order or altered: %v", i, e)
		}
	}
	h := c.headers[0]
	want := batchKey([]outboxEvent{{eventID: recorded[0].EventID}, {eventID: recorded[1].EventID}, {eventID: recorded[2].EventID}})
	if h.Get("Idempotency-Key") != want || h.Get("Authorization") != "Bearer test" ||
		h.Get("Content-Type") != "application/json" {
		t.Fatalf("headers: %v", h)
	}
}

func TestWebhookOutboxSurvivesCloseAndReopen(t *testing.T) {
	down := httptest.NewServer(http.NotFoundHandler())
	downURL := down.URL
	down.Close() // connection refused from now on
	outbox := filepath.Join(t.TempDir(), "state", "outbox.db")

	w := fastWebhook(t, downURL, outbox)
	w.Start(context.Background())
	r := newTestRecorder(t, []Sink{w})
	recorded := recordN(t, r, 0, 5)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}

	c := newCollector(t, false)
	w2 := fastWebhook(t, c.srv.URL, outbox)
	if n, _ := w2.Pending(context.Background()); n != 5 {
		t.Fatalf("%d events in the reopened outbox, want 5", n)
	}
	r2 := newTestRecorder(t, []Sink{w2})
	more := recordN(t, r2, 5, 1)
	if more[0].PrevEventHash != recorded[4].EventHash {
		t.Fatal("the webhook head did not continue the chain after reopen")
	}
	w2.Start(context.Background())
	waitDelivered(t, w2)
	r2.Close()
	assertSameIDs(t, c.ids(), idSet(append(recorded, more...)))
}

func TestWebhookCloseIsBounded(t *testing.T) {
	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer hang.Close()
	defer close(release)

	w, err := NewWebhookSink(WebhookConfig{URL: hang.URL, OutboxPath: filepath.Join(t.TempDir(), "o.db"),
		FlushInterval: time.Millisecond, Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	w.Start(context.Background())
	if err := w.Write(context.Background(), &Event{EventID: "e1", EventHash: "h"}, []byte(`{"event_id":"e1"}`)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Close took %v against a hanging collector", d)
	}
}

func TestWebhookConfigValidation(t *testing.T) {
	dir := t.TempDir()
	for name, cfg := range map[string]WebhookConfig{
		"no outbox":    {URL: "http://127.0.0.1:1/"},
		"relative url": {URL: "/events", OutboxPath: filepath.Join(dir, "a.db")},
		"ftp":          {URL: "ftp://127.0.0.1/", OutboxPath: filepath.Join(dir, "b.db")},
		"header":       {URL: "http://127.0.0.1:1/", OutboxPath: filepath.Join(dir, "c.db"), Headers: map[string]string{"X": "a\r\nb"}},
		"batch":        {URL: "http://127.0.0.1:1/", OutboxPath: filepath.Join(dir, "d.db"), BatchSize: 5000},
	} {
		if _, err := NewWebhookSink(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestWebhookBackoffIsCappedAndJittered(t *testing.T) {
	w := &WebhookSink{cfg: WebhookConfig{MaxBackoff: time.Second}}
	for failures := 1; failures < 100; failures++ {
		d := w.backoff(failures)
		if d <= 0 || d > time.Second {
			t.Fatalf("backoff(%d) = %v", failures, d)
		}
	}
	if d := w.backoff(1); d < initialBackoff/2 || d > initialBackoff {
		t.Fatalf("first backoff %v, want within [%v, %v]", d, initialBackoff/2, initialBackoff)
	}
}

package audit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// WebhookConfig configures a WebhookSink.
type WebhookConfig struct {
	// URL receives the batches by POST; http or https. Put credentials in
	// Headers, not in the URL, which can appear in errors.
	URL string
	// OutboxPath is the SQLite file that holds events until the collector
	// acknowledges them. Required.
	OutboxPath string
	// BatchSize is the most events one POST carries. Default: 50; at most
	// 1000.
	BatchSize int
	// FlushInterval is how long an event may wait for its batch to fill
	// before it is sent. Default: 1s.
	FlushInterval time.Duration
	// Timeout bounds one POST, and the whole final flush in Close.
	// Default: 5s.
	Timeout time.Duration
	// MaxBackoff caps the wait between failed deliveries. Default: 30s.
	MaxBackoff time.Duration
	// Headers are set on every POST, e.g. Authorization.
	Headers map[string]string
	// Client sends the POSTs. Default: a client that does not follow
	// redirects, so events never go to a host that was not configured.
	Client *http.Client
	// OnError, when set, is called from the delivery goroutine with each
	// failed delivery, for logging. It must not block.
	OnError func(error)
}

const (
	defaultBatchSize     = 50
	maxBatchSize         = 1000
	defaultFlushInterval = time.Second
	defaultTimeout       = 5 * time.Second
	defaultMaxBackoff    = 30 * time.Second
)

// WebhookSink forwards events to a collector at least once. Write only
// commits the event to a local outbox; a goroutine started by Start posts
// batches and deletes events once the collector answered 2xx, retrying with
// exponential backoff otherwise. Undelivered events survive a restart.
type WebhookSink struct {
	cfg     WebhookConfig
	headers [][2]string // cfg.Headers, sorted by name
	db      *sql.DB
	wake    chan struct{}
	unsent  atomic.Int64 // events written since the last drain started

	mu      sync.Mutex
	started bool
	closed  bool
	cancel  context.CancelFunc
	done    sync.WaitGroup
}

// NewWebhookSink validates cfg, applies defaults and opens the outbox.
// Nothing is sent until Start.
func NewWebhookSink(cfg WebhookConfig) (*WebhookSink, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("audit: webhook: %w", err)
	}
	cfg.applyDefaults()
	db, err := openOutbox(cfg.OutboxPath)
	if err != nil {
		return nil, fmt.Errorf("audit: webhook: open outbox %q: %w", cfg.OutboxPath, err)
	}
	return &WebhookSink{cfg: cfg, headers: sortedHeaders(cfg.Headers), db: db,
		wake: make(chan struct{}, 1)}, nil
}

func (c *WebhookConfig) validate() error {
	u, err := url.Parse(c.URL)
	if err != nil {
		return fmt.Errorf("url: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("url %q: want an absolute http or https URL", u.Redacted())
	}
	if c.OutboxPath == "" {
		return errors.New("outbox path is required: without it a collector outage loses events")
	}
	if c.BatchSize < 0 || c.BatchSize > maxBatchSize {
		return fmt.Errorf("batch size %d: want 1 to %d", c.BatchSize, maxBatchSize)
	}
	if c.FlushInterval < 0 || c.Timeout < 0 || c.MaxBackoff < 0 {
		return errors.New("negative duration")
	}
	for k, v := range c.Headers {
		if k == "" || strings.ContainsAny(k+v, "\r\n") {
			return fmt.Errorf("header %q: empty name or a line break", k)
		}
	}
	return nil
}

func (c *WebhookConfig) applyDefaults() {
	c.BatchSize = orDefault(c.BatchSize, defaultBatchSize)
	c.FlushInterval = orDefault(c.FlushInterval, defaultFlushInterval)
	c.Timeout = orDefault(c.Timeout, defaultTimeout)
	c.MaxBackoff = orDefault(c.MaxBackoff, defaultMaxBackoff)
	if c.Client == nil {
		c.Client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}}
	}
}

// orDefault returns v, or def when v is the zero value.
func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

func sortedHeaders(h map[string]string) [][2]string {
	out := make([][2]string, 0, len(h))
	for k, v := range h {
		out = append(out, [2]string{k, v})
	}
	slices.SortFunc(out, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) })
	return out
}

// Name implements Sink.
func (w *WebhookSink) Name() string { return "webhook" }

// Write implements Sink: the event is committed to the outbox, not yet
// delivered. It also records the event as the chain head, so a restart
// continues the chain even when no other durable sink is configured.
func (w *WebhookSink) Write(ctx context.Context, e *Event, line []byte) error {
	return w.WriteBatch(ctx, []Sealed{{Event: e, Line: line}})
}

// WriteBatch implements BatchSink: a group commit is one outbox
// transaction.
func (w *WebhookSink) WriteBatch(ctx context.Context, batch []Sealed) error {
	if len(batch) == 0 {
		return nil
	}
	if err := w.enqueue(ctx, batch); err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	if w.unsent.Add(int64(len(batch))) >= int64(w.cfg.BatchSize) {
		w.notify()
	}
	return nil
}

// notify wakes the delivery loop without ever blocking the writer.
func (w *WebhookSink) notify() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Start starts the delivery goroutine. It stops when ctx ends or on Close.
// Calling Start again, or after Close, does nothing.
func (w *WebhookSink) Start(ctx context.Context) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.started || w.closed {
		return
	}
	w.started = true
	ctx, w.cancel = context.WithCancel(ctx)
	w.done.Add(1)
	go w.run(ctx)
}

// Pending returns the number of events not yet acknowledged by the
// collector.
func (w *WebhookSink) Pending(ctx context.Context) (int, error) {
	var n int
	err := w.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM outbox`).Scan(&n)
	return n, err
}

// Close stops the delivery goroutine and waits for it, then tries once more
// to deliver what is pending, for at most Timeout, and closes the outbox.
// What is still undelivered is sent after the next Start.
func (w *WebhookSink) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	started, cancel := w.started, w.cancel
	w.mu.Unlock()
	if started {
		cancel()
		w.done.Wait()
		w.finalFlush()
	}
	return w.db.Close()
}

// Interface guards
var (
	_ Sink      = (*WebhookSink)(nil)
	_ BatchSink = (*WebhookSink)(nil)
	_ Head      = (*WebhookSink)(nil)
)

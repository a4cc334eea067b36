package audit

import (
	"context"
	"database/sql"
	"errors"
	"strings"
)

// outboxEvent is one undelivered event.
type outboxEvent struct {
	seq     int64
	eventID string
	line    string
}

func outboxSchema() []string {
	return []string{
		`CREATE TABLE IF NOT EXISTS outbox (
			seq INTEGER PRIMARY KEY AUTOINCREMENT,
			event_id TEXT NOT NULL UNIQUE,
			line TEXT NOT NULL
		)`,
		`CREATE TABLE IF NOT EXISTS outbox_meta (
			key TEXT PRIMARY KEY,
			value TEXT NOT NULL
		)`,
	}
}

// openOutbox uses a single connection: the writer and the delivery loop
// then queue in Go instead of contending for SQLite's lock, and the loop
// never holds the connection across an HTTP request.
func openOutbox(path string) (*sql.DB, error) {
	db, err := openWritable(path)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	if err := execAll(db, outboxSchema()...); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// enqueue stores the event and the new head in one transaction, so the
// head never names an event the outbox did not accept.
func (w *WebhookSink) enqueue(ctx context.Context, batch []Sealed) error {
	tx, err := w.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, b := range batch {
		if _, err := tx.ExecContext(ctx, `INSERT INTO outbox (event_id, line) VALUES (?, ?)
			ON CONFLICT(event_id) DO NOTHING`, b.Event.EventID, string(b.Line)); err != nil {
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO outbox_meta (key, value) VALUES ('last_event_hash', ?)
		ON CONFLICT(key) DO UPDATE SET value = excluded.value`, batch[len(batch)-1].Event.EventHash); err != nil {
		return err
	}
	return tx.Commit()
}

// LastEventHash implements Head. It survives delivery: delivered events
// leave the outbox but the head stays.
func (w *WebhookSink) LastEventHash(ctx context.Context) (string, error) {
	var h string
	err := w.db.QueryRowContext(ctx,
		`SELECT value FROM outbox_meta WHERE key = 'last_event_hash'`).Scan(&h)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return h, err
}

// nextBatch returns the oldest undelivered events, oldest first, so the
// collector receives the chain in order whenever nothing fails.
func (w *WebhookSink) nextBatch(ctx context.Context) ([]outboxEvent, error) {
	rows, err := w.db.QueryContext(ctx,
		`SELECT seq, event_id, line FROM outbox ORDER BY seq LIMIT ?`, w.cfg.BatchSize)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var batch []outboxEvent
	for rows.Next() {
		var ev outboxEvent
		if err := rows.Scan(&ev.seq, &ev.eventID, &ev.line); err != nil {
			return nil, err
		}
		batch = append(batch, ev)
	}
	return batch, rows.Err()
}

// remove deletes exactly the acknowledged events.
func (w *WebhookSink) remove(ctx context.Context, batch []outboxEvent) error {
	args := make([]any, len(batch))
	for i, ev := range batch {
		args[i] = ev.seq
	}
	marks := strings.TrimSuffix(strings.Repeat("?,", len(batch)), ",")
	_, err := w.db.ExecContext(ctx, `DELETE FROM outbox WHERE seq IN (`+marks+`)`, args...)
	return err
}

// Package audit owns Nomos's evidence trail: the v1 event schema, the
// Recorder that seals events into a SHA-256 hash chain, the sinks that
// store them (a function sink for the zap logger, an embedded SQLite
// database, and a webhook with a durable local outbox), and the signed
// checkpoints that key the SQLite chain.
//
// The Recorder is the single writer of the chain. Record is synchronous on
// purpose: a decision is only acted on after every sink has accepted its
// event, and a sink failure is returned so the caller can deny the action.
// Events are encoded and redacted by their callers concurrently, linked in
// order, and committed in groups: concurrent events share one transaction
// and one fsync.
//
// VerifySQLite re-walks a SQLite audit file and reports the first row that
// was edited, dropped or moved; with the checkpoint key it also catches a
// file rewritten and rehashed, or cut back, without the key.
//
// The package is plain Go: it never imports Caddy or zap, so it can be
// tested and reused without a server.
package audit

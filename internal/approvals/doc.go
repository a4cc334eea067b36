// Package approvals owns the approval records behind REQUIRE_APPROVAL: their
// life cycle (pending, then approved or denied by a reviewer, then used by
// the agent's retry), their binding to an action fingerprint or a class
// scope and to the requesting identity, and their durable stores.
//
// Two stores implement Store: OpenSQLite (the default; WAL, safe when the
// nomos CLI decides while the server runs) and OpenFile (one JSON document,
// replaced atomically). Both run the same transition rules (see the
// unexported decide and use helpers), so they behave identically. Disabled
// is the store of stateless mode: every call fails with ErrDisabled.
//
// The package is plain Go: it never imports Caddy or zap. Callers pass the
// current time explicitly, so tests need no sleeps.
package approvals

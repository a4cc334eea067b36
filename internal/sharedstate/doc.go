// Package sharedstate connects Nomos replicas to one Redis (or Valkey)
// server, where they share what must not be multiplied by the number of
// replicas: approvals, rate-limit buckets, signature nonces, per-principal
// budgets and MCP session bindings.
//
// Failure is closed and visible. Every operation that cannot reach the
// server returns an error wrapping ErrUnavailable, which the decision path
// turns into a DENY with reason state_unavailable; nothing falls back to
// local state. A circuit breaker stops a dead server from being hammered:
// while it is open, calls fail at once.
package sharedstate

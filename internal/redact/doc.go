// Package redact owns secret redaction: the built-in credential patterns,
// operator and per-rule patterns, exact brokered secret values, and the
// UTF-8-safe output cap that runs after redaction.
//
// A Redactor is compiled once and is immutable, so one value serves every
// request concurrently. Redaction is deterministic: exact secret values first,
// then the built-in rules in a fixed order, then operator patterns in config
// order, then per-rule patterns in obligation order. Every rule replaces what
// it matches with Mask, and applying a Redactor twice changes nothing more.
package redact

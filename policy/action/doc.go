// Package action owns the v1 action model: the envelope an agent sends, its
// strict decoding, the normalization of resources into one canonical URI per
// target, canonical JSON and the hashes built on it (params hash and action
// fingerprint), and the risk flags derived from an action.
//
// Everything here is pure and deterministic: nothing touches the filesystem,
// the network or the clock, so the same input always gives the same Action
// and anything this package cannot interpret is an error (fail closed).
// Identity (principal, agent, environment) never comes from the envelope; the
// caller passes it to New from verified authentication and configuration.
//
// Errors wrap ErrValidation (the input is malformed or out of limits) or
// ErrNormalization (the resource cannot be normalized safely).
package action

// Package policy owns Nomos's policy language: it parses bundles (YAML or
// JSON, strictly), verifies their optional signatures, merges several bundles
// into one engine, compiles the rules into an indexed evaluator, and answers
// with a deny-wins decision, an explanation and lint findings.
//
// The package is plain Go. Parsing and compiling may be slow and allocate;
// Evaluate is the request path: it uses no regexp, no reflection and no map
// iteration, and it allocates at most one slice in the common case. Bundles
// are compiled once per load and evaluated many times, concurrently.
//
// An Engine is immutable after Load, so it is safe for concurrent use. The
// slices inside a returned Decision may alias the engine's compiled data and
// must be treated as read-only.
package policy

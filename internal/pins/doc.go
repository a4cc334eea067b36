// Package pins keeps the reviewed fingerprint of each upstream MCP tool's
// definition, so that a server approved once cannot change what a tool says
// or accepts behind the operator's back (the "rug pull").
//
// A definition's fingerprint is the sha256 of the canonical JSON of the
// parts a model reads or a call depends on: name, title, description, input
// and output schemas, and annotations. The first time an upstream is seen
// its tools are trusted as they are (trust on first use); afterwards a
// changed definition, or a tool that was not there before, is quarantined
// until an operator accepts it. The package decides and stores; the gateway
// hides quarantined tools and audits the changes it reports.
//
// Stores: OpenSQLite (the default, a file shared by the server and the
// CLI), OpenRedis (replicas sharing state) and NewMemory (stateless mode:
// pins reset when the process restarts, so its first listing is trusted
// again).
package pins

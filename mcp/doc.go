// Package mcp is the plain-Go core of the Nomos MCP gateway: a transparent,
// governed relay between downstream MCP clients (served over the Streamable
// HTTP transport by Gateway) and upstream MCP servers (reached over stdio,
// Streamable HTTP or legacy SSE with mark3labs/mcp-go's client transports).
//
// It owns JSON-RPC hardening (strict decoding, body caps, header checks),
// downstream sessions bound to an identity, upstream sessions and child
// processes (Upstream), tool naming across several upstreams, argument
// validation against each tool's inputSchema, per-upstream circuit breakers
// and timeouts, and the mapping of MCP requests to Nomos actions. Policy,
// approvals, rate limits and audit are not decided here: every governed
// request goes through Path, the one governed-call path of every MCP front
// door, which asks a Governor supplied by the caller.
//
// Replicas behind a load balancer share downstream sessions through a
// SessionRegistry (NewRedisRegistry): the replica that answers initialize
// owns the session and its upstream sessions; another replica forwards the
// session's requests to it, and answers 404 once it is gone.
//
// The package never imports Caddy or zap; it logs with log/slog. The Caddy
// handler nomos_mcp wraps Gateway, and the nomos app pools Upstream values by
// Key so that a reload keeps unchanged upstreams and their children alive.
package mcp

// Package mcpstdio serves the Model Context Protocol over stdio for local
// clients (Claude Code, Codex, SDK agents) that start Nomos as a child
// process: `nomos mcp stdio`.
//
// It owns the newline-delimited JSON-RPC loop on stdin and stdout, the
// dispatch of the governed built-in tools (internal/mcpbuiltins, the one
// implementation nomos_mcp uses too), and the in-process
// bridge that relays every other message to a governed MCP gateway (an
// http.Handler speaking Streamable HTTP, normally an mcp.Gateway over the
// configured upstreams). Policy, approvals, audit and redaction are not
// decided here: the Processor and the gateway do that.
//
// stdout carries protocol messages only; the package never writes anything
// else to the writer it serves on. It never imports Caddy or zap.
package mcpstdio

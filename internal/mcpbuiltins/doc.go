// Package mcpbuiltins owns the governed built-in MCP tools (nomos_fs_read,
// nomos_fs_write, nomos_apply_patch, nomos_exec, nomos_http_request and
// nomos_capabilities): their definitions, how their arguments become v1
// action envelopes, and the text a model reads about the outcome. Every MCP
// door that offers them (nomos mcp stdio, nomos_mcp with builtins) calls
// this one implementation, which runs each call through the Nomos pipeline
// (Processor, normally *service.Service). It never imports Caddy or zap.
package mcpbuiltins

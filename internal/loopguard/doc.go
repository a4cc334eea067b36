// Package loopguard owns the loop breakers: per-window caps on what one
// MCP session and one agent may do (calls, write-class calls, distinct
// tools, identical repeated calls). An agent stuck in a loop is stopped
// before policy is asked, and told how long to wait and what budget it has
// left. State sits in a bounded LRU pruned on use; no goroutine is started.
package loopguard

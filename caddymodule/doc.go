// Package caddymodule holds the Caddy glue of Nomos: the nomos app, its HTTP
// handlers, Caddyfile parsing and the nomos CLI subcommands. It is the only
// package besides cmd/ that imports Caddy.
package caddymodule

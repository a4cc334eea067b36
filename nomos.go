// Package nomos adds the Nomos execution firewall to Caddy. Importing it
// registers every Nomos module, Caddyfile directive and subcommand, which is
// what `xcaddy build --with github.com/caddy-nomos/nomos` does.
package nomos

import (
	// The Caddy glue registers itself in init.
	_ "github.com/caddy-nomos/nomos/caddymodule"
)

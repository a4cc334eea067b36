// Command nomos is Caddy with the standard modules and the Nomos modules.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddy-nomos/nomos"
)

func main() {
	caddycmd.Main()
}

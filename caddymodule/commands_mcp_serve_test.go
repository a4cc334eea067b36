package caddymodule

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestServeConfig: nomos mcp serve keeps the nomos app and admin, drops the
// config's own servers, and routes everything on the listener to one
// nomos_mcp over the upstreams, with builtins when there is an executor.
func TestServeConfig(t *testing.T) {
	const base = `{
	admin 127.0.0.1:2999
	nomos {
		%EXEC%
		upstream b {
			url http://127.0.0.1:1/mcp
		}
		upstream a {
			url http://127.0.0.1:2/mcp
		}
	}
}

:9999 {
	respond "not served"
}
`
	cases := []struct {
		name, exec string
		upstreams  []string
		want       string // handler JSON, or the error
	}{
		{"all upstreams and builtins", "executor {\n\t\t\tworkspace_root /srv\n\t\t}", nil,
			`{"builtins":true,"handler":"nomos_mcp","policy":"default","upstreams":["a","b"]}`},
		{"named upstream, no executor", "", []string{"b"},
			`{"handler":"nomos_mcp","policy":"default","upstreams":["b"]}`},
		{"unknown upstream", "", []string{"c"}, `unknown upstream "c"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "Caddyfile")
			if err := os.WriteFile(path, []byte(strings.Replace(base, "%EXEC%", c.exec, 1)), 0o644); err != nil {
				t.Fatal(err)
			}
			raw, err := serveConfig(serveOptions{http: true, listen: "127.0.0.1:8181", config: path, policy: "default", upstreams: c.upstreams})
			if err != nil {
				if !strings.Contains(err.Error(), c.want) {
					t.Fatalf("error %v, want %q", err, c.want)
				}
				return
			}
			var cfg struct {
				Admin json.RawMessage `json:"admin"`
				Apps  struct {
					Nomos json.RawMessage `json:"nomos"`
					HTTP  struct {
						Servers map[string]struct {
							Listen []string `json:"listen"`
							Routes []struct {
								Handle []json.RawMessage `json:"handle"`
							} `json:"routes"`
						} `json:"servers"`
					} `json:"http"`
				} `json:"apps"`
			}
			if err := json.Unmarshal(raw, &cfg); err != nil {
				t.Fatal(err)
			}
			srv, ok := cfg.Apps.HTTP.Servers["nomos_mcp"]
			if len(cfg.Apps.HTTP.Servers) != 1 || !ok || len(srv.Listen) != 1 || srv.Listen[0] != "127.0.0.1:8181" || len(srv.Routes) != 1 {
				t.Fatalf("servers: %s", raw)
			}
			if got := string(srv.Routes[0].Handle[0]); got != c.want {
				t.Fatalf("handler %s, want %s", got, c.want)
			}
			if !strings.Contains(string(cfg.Admin), "127.0.0.1:2999") || len(cfg.Apps.Nomos) == 0 {
				t.Fatalf("admin or nomos app lost: %s", raw)
			}
		})
	}
}

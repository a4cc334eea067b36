package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/signal"
	"slices"
	"syscall"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
)

// serveOptions are the flags of nomos mcp serve.
type serveOptions struct {
	http                    bool
	listen, config, adapter string
	policy                  string
	upstreams               []string
}

func newServeCommand() *cobra.Command {
	serve := &cobra.Command{
		Use:   "serve --http --listen <addr> --config <Caddyfile|JSON>",
		Short: "Serves the nomos app's built-in tools and upstreams as one governed MCP endpoint (Streamable HTTP) on a listener",
		Long: "Runs Caddy in process with the config's nomos app and one synthesized HTTP server on --listen whose only\n" +
			"route is nomos_mcp: every upstream of the app (or those named by --upstream) and, when the app has an\n" +
			"executor { } block, the built-in tools. The config's own HTTP servers are not started. Clients\n" +
			"authenticate with the app's identity { } sources. Stop it with SIGINT or SIGTERM.",
		Args: cobra.NoArgs,
		RunE: runCLI(runMCPServe),
	}
	f := serve.Flags()
	f.Bool("http", false, "serve Streamable HTTP (required; for stdio use nomos mcp stdio)")
	f.String("listen", "127.0.0.1:8080", "the address to listen on")
	addAppFlags(f, "Caddyfile or JSON config whose nomos app is served (required)")
	return serve
}

func serveFlags(cmd *cobra.Command) (serveOptions, error) {
	f := cmd.Flags()
	var o serveOptions
	o.http, _ = f.GetBool("http")
	o.listen, _ = f.GetString("listen")
	if !o.http {
		return o, errors.New("--http is required (for stdio, use nomos mcp stdio)")
	}
	app, err := readAppFlags(f)
	if err != nil {
		return o, err
	}
	o.config, o.adapter, o.policy, o.upstreams = app.config, app.adapter, app.policy, app.upstreams
	if _, _, err := net.SplitHostPort(o.listen); err != nil {
		return o, fmt.Errorf("--listen %q: %w", o.listen, err)
	}
	return o, nil
}

// runMCPServe loads the synthesized config into Caddy in process and
// serves until a signal arrives.
func runMCPServe(cmd *cobra.Command, _ []string) error {
	o, err := serveFlags(cmd)
	if err != nil {
		return &cliError{"VALIDATION_ERROR", err}
	}
	cfg, err := serveConfig(o)
	if err != nil {
		return &cliError{"CONFIG_ERROR", err}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := caddy.Load(cfg, true); err != nil {
		return &cliError{"CONFIG_ERROR", err}
	}
	caddy.Log().Named("nomos.mcp_serve").Info("serving MCP over Streamable HTTP", zap.String("listen", o.listen), zap.String("policy", o.policy))
	<-ctx.Done()
	return caddy.Stop()
}

// serveConfig adapts the config as nomos run would, keeps its nomos app,
// admin and logging, and replaces its HTTP servers with one server on the
// listen address whose only route is nomos_mcp.
func serveConfig(o serveOptions) ([]byte, error) {
	raw, _, _, err := caddycmd.LoadConfig(o.config, o.adapter)
	if err != nil {
		return nil, err
	}
	var cfg map[string]json.RawMessage
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	var apps map[string]json.RawMessage
	_ = json.Unmarshal(cfg["apps"], &apps)
	nomosRaw, ok := apps["nomos"]
	if !ok {
		return nil, fmt.Errorf("%s has no nomos app (a nomos { } global option)", o.config)
	}
	handler, err := serveHandler(nomosRaw, o)
	if err != nil {
		return nil, err
	}
	server := map[string]any{
		"listen":          []string{o.listen},
		"routes":          []any{map[string]any{"handle": []any{handler}}},
		"automatic_https": map[string]any{"disable": true},
	}
	out := map[string]any{"apps": map[string]any{
		"nomos": nomosRaw,
		"http":  map[string]any{"servers": map[string]any{"nomos_mcp": server}},
	}}
	for _, keep := range []string{"admin", "logging", "storage"} {
		if v, ok := cfg[keep]; ok {
			out[keep] = v
		}
	}
	return json.Marshal(out)
}

// serveHandler is the nomos_mcp route: the named (or all) upstreams and,
// with an executor, the built-in tools.
func serveHandler(nomosRaw json.RawMessage, o serveOptions) (map[string]any, error) {
	var app struct {
		Upstreams map[string]json.RawMessage `json:"upstreams"`
		Executor  json.RawMessage            `json:"executor"`
	}
	if err := json.Unmarshal(nomosRaw, &app); err != nil {
		return nil, fmt.Errorf("decoding the nomos app: %w", err)
	}
	names := o.upstreams
	if len(names) == 0 {
		names = slices.Sorted(maps.Keys(app.Upstreams))
	}
	for _, n := range names {
		if _, ok := app.Upstreams[n]; !ok {
			return nil, fmt.Errorf("unknown upstream %q (declare it with upstream %s { } in the nomos app)", n, n)
		}
	}
	builtins := len(app.Executor) > 0 && string(app.Executor) != "null"
	if len(names) == 0 && !builtins {
		return nil, errors.New("nothing to serve: the nomos app has no upstream and no executor { } block for the built-in tools")
	}
	h := map[string]any{"handler": "nomos_mcp", "policy": o.policy}
	if len(names) > 0 {
		h["upstreams"] = names
	}
	if builtins {
		h["builtins"] = true
	}
	return h, nil
}

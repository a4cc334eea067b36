package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.uber.org/zap"
	"go.uber.org/zap/exp/zapslog"

	"github.com/caddy-nomos/nomos/internal/executor"
	"github.com/caddy-nomos/nomos/internal/mcpbuiltins"
	"github.com/caddy-nomos/nomos/internal/mcpstdio"
	"github.com/caddy-nomos/nomos/internal/service"
	"github.com/caddy-nomos/nomos/mcp"
	"github.com/caddy-nomos/nomos/policy/action"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:      "mcp",
		Usage:     "stdio --config <Caddyfile|JSON> [--adapter caddyfile] [--policy default] [--principal P] [--agent A] [--upstream name...] | serve --http --listen <addr> --config <Caddyfile|JSON> [--policy default] [--upstream name...] | pins list|diff|accept|reject --config <Caddyfile> ...",
		Short:     "Serves governed MCP over stdio for local clients (Claude Code, Codex) or over Streamable HTTP on a listener; reviews pinned tool definitions",
		CobraFunc: mcpCommands,
	})
}

// stdioSessionTTL outlives any desktop session: the stdio process is the
// client's session, so the in-process gateway session must not expire.
const stdioSessionTTL = 365 * 24 * time.Hour

// stdioOptions are the flags of nomos mcp stdio.
type stdioOptions struct {
	config, adapter, policy, principal, agent string
	upstreams                                 []string
}

// appOptions are the flags nomos mcp stdio and serve share: the config
// whose nomos app is served, the policy set and the upstreams exposed.
type appOptions struct {
	config, adapter, policy string
	upstreams               []string
}

func addAppFlags(f *pflag.FlagSet, configHelp string) {
	f.String("config", "", configHelp)
	f.String("adapter", "", "config adapter, as for nomos run (caddyfile is inferred from the file name)")
	f.String("policy", "default", "policy set of the nomos app")
	f.StringArray("upstream", nil, "expose only this upstream of the nomos app (repeatable; default: all)")
}

func readAppFlags(f *pflag.FlagSet) (appOptions, error) {
	var o appOptions
	o.config, _ = f.GetString("config")
	o.adapter, _ = f.GetString("adapter")
	o.policy, _ = f.GetString("policy")
	o.upstreams, _ = f.GetStringArray("upstream")
	if o.config == "" {
		return o, errors.New("--config is required")
	}
	return o, nil
}

func mcpCommands(cmd *cobra.Command) {
	cmd.AddCommand(newStdioCommand(), newServeCommand(), pinsCommand())
}

func newStdioCommand() *cobra.Command {
	stdio := &cobra.Command{
		Use:   "stdio --config <Caddyfile|JSON>",
		Short: "Serves the nomos app's governed built-in tools and upstreams as one MCP server on stdin/stdout; logs go to stderr",
		Args:  cobra.NoArgs,
		RunE:  runCLI(runMCPStdio),
	}
	f := stdio.Flags()
	addAppFlags(f, "Caddyfile or JSON config whose nomos app is used (required; only apps.nomos is read)")
	f.String("principal", "local", "principal bound to every action")
	f.String("agent", "mcp-stdio", "agent bound to every action")
	return stdio
}

func stdioFlags(cmd *cobra.Command) (stdioOptions, error) {
	f := cmd.Flags()
	app, err := readAppFlags(f)
	o := stdioOptions{config: app.config, adapter: app.adapter, policy: app.policy, upstreams: app.upstreams}
	if err != nil {
		return o, err
	}
	o.principal, _ = f.GetString("principal")
	o.agent, _ = f.GetString("agent")
	switch {
	case o.config == "-":
		return o, errors.New("--config - is not possible: stdin carries the MCP protocol")
	case o.principal == "":
		return o, errors.New("--principal must not be empty")
	}
	return o, nil
}

// runMCPStdio provisions the nomos app in process (no HTTP server, no
// admin endpoint) and serves MCP on stdin and stdout until stdin closes or
// a signal arrives.
func runMCPStdio(cmd *cobra.Command, _ []string) error {
	o, err := stdioFlags(cmd)
	if err != nil {
		return &cliError{"VALIDATION_ERROR", err}
	}
	// stdout is the protocol stream. Everything else that would print to
	// os.Stdout (a library, a sink opened on "stdout") goes to stderr.
	protocol := os.Stdout
	os.Stdout = os.Stderr
	defer func() { os.Stdout = protocol }()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return serveMCPStdio(ctx, o, os.Stdin, protocol)
}

// serveMCPStdio loads the app, serves one stdio session and releases
// everything it provisioned.
func serveMCPStdio(ctx context.Context, o stdioOptions, in io.Reader, out io.Writer) error {
	cctx, cancel := caddy.NewContext(caddy.Context{Context: ctx})
	defer cancel()
	app, err := loadNomosApp(cctx, o.config, o.adapter, nil)
	if err != nil {
		return &cliError{"CONFIG_ERROR", err}
	}
	defer app.Cleanup()
	app.warnStdoutSinks()
	srv, closeGateway, err := newStdioServer(app, o)
	if err != nil {
		return &cliError{"CONFIG_ERROR", err}
	}
	defer closeGateway()
	stdioLog().Info("serving MCP on stdio", zap.String("policy", o.policy),
		zap.String("principal", o.principal), zap.String("agent", o.agent))
	if err := srv.Serve(service.WithFrontDoor(ctx, service.FrontDoorMCPStdio), in, out); err != nil {
		return &cliError{"MCP_STDIO_ERROR", err}
	}
	return nil
}

// loadNomosApp adapts the config exactly as nomos run would and provisions
// only its nomos app, after trim (if any) removed what the caller does not
// need. Several processes may share a sqlite audit file: the sink links each
// event to the file's real last row, so the chain stays linear.
func loadNomosApp(ctx caddy.Context, configFile, adapter string, trim func(*App)) (*App, error) {
	cfgJSON, _, _, err := caddycmd.LoadConfig(configFile, adapter)
	if err != nil {
		return nil, err
	}
	var cfg struct {
		Apps map[string]json.RawMessage `json:"apps"`
	}
	if err := json.Unmarshal(cfgJSON, &cfg); err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	raw, ok := cfg.Apps["nomos"]
	if !ok {
		return nil, fmt.Errorf("%s has no nomos app (a nomos { } global option)", configFile)
	}
	app := new(App)
	if err := caddy.StrictUnmarshalJSON(raw, app); err != nil {
		return nil, fmt.Errorf("decoding the nomos app: %w", err)
	}
	if trim != nil {
		trim(app)
	}
	app.applyDefaults()
	if err := app.Provision(ctx); err != nil {
		_ = app.Cleanup()
		return nil, err
	}
	return app, nil
}

// warnStdoutSinks says where a stdout audit sink goes in this mode: it
// writes through Caddy's default logger, which is stderr here.
func (a *App) warnStdoutSinks() {
	for _, s := range a.Audit.Sinks {
		if s.Type == "stdout" {
			stdioLog().Warn("audit sink stdout writes to stderr under nomos mcp stdio: stdout carries the MCP protocol")
		}
	}
}

// newStdioServer binds a stdio server to the app: the policy set's
// pipeline for the built-in tools and, when the app has upstreams, a
// gateway over them governed like nomos_mcp.
func newStdioServer(app *App, o stdioOptions) (*mcpstdio.Server, func(), error) {
	svc, err := app.Service(o.policy)
	if err != nil {
		return nil, nil, err
	}
	id := action.Identity{Principal: o.principal, Agent: o.agent}
	cfg := mcpstdio.Config{
		Processor: svc, Identity: id, ServerName: "nomos", Version: service.EngineVersion,
		MaxInFlight: app.Runtime.ConcurrencyLimit, Logger: stdioSlog(),
	}
	exe, _ := app.exec.(*executor.Executor)
	if exe != nil {
		cfg.ActionTypes = executorActionTypes(exe)
	}
	names, err := app.stdioUpstreams(o.upstreams)
	if err != nil {
		return nil, nil, err
	}
	closeGateway := func() {}
	if len(names) > 0 {
		gw, err := app.stdioGateway(svc, id, names)
		if err != nil {
			return nil, nil, err
		}
		cfg.Gateway, closeGateway = gw, func() { _ = gw.Close() }
	}
	cfg.Capabilities = func() map[string]any { return app.builtinCapabilities(svc, o.policy, exe, names) }
	srv, err := mcpstdio.New(cfg)
	if err != nil {
		closeGateway()
		return nil, nil, err
	}
	return srv, closeGateway, nil
}

// stdioUpstreams are the named upstreams, or all of the app's.
func (a *App) stdioUpstreams(named []string) ([]string, error) {
	if len(named) == 0 {
		return slices.Sorted(maps.Keys(a.upstreams)), nil
	}
	for _, n := range named {
		if _, ok := a.upstreams[n]; !ok {
			return nil, fmt.Errorf("unknown upstream %q (declare it with upstream %s { } in the nomos app)", n, n)
		}
	}
	return named, nil
}

// stdioGateway is the same governed relay as a nomos_mcp route, with the
// configured identity instead of request credentials.
func (a *App) stdioGateway(svc *service.Service, id action.Identity, names []string) (*mcp.Gateway, error) {
	ups := make(map[string]*mcp.Upstream, len(names))
	for _, n := range names {
		ups[n] = a.upstreams[n]
	}
	who := mcp.Identity{Principal: id.Principal, Agent: id.Agent}
	auth := func(*http.Request, []byte) (mcp.Identity, error) { return who, nil }
	route := mcp.RouteConfig{Upstreams: names, SessionTTL: stdioSessionTTL, Transport: mcp.DownstreamStdio}
	return mcp.NewGateway(route, ups, &governor{svc: svc, red: a.red}, auth, stdioSlog(), mcp.WithRedactor(a.red.String))
}

// stdioLog is Caddy's default logger, which writes to stderr: without a
// loaded config the app's own context logger is a development logger.
func stdioLog() *zap.Logger { return caddy.Log().Named("nomos.mcp_stdio") }

func stdioSlog() *slog.Logger {
	return slog.New(zapslog.NewHandler(stdioLog().Core(), zapslog.WithName("nomos.mcp_stdio")))
}

// executorActionTypes are the built-in action types exe runs.
func executorActionTypes(exe *executor.Executor) []string {
	types, _ := exe.Capabilities()["action_types"].([]string)
	return types
}

// builtinTools are the built-in tools of a nomos_mcp route: the policy
// set's pipeline and the app's executor, which they need.
func (a *App) builtinTools(svc *service.Service, policyName string, upstreams []string) (*mcpbuiltins.Set, error) {
	exe, _ := a.exec.(*executor.Executor)
	if exe == nil {
		return nil, errors.New("the built-in tools need the nomos app's executor { } block (workspace_root, ...); none is configured")
	}
	return mcpbuiltins.New(mcpbuiltins.Config{
		Processor: svc, ActionTypes: executorActionTypes(exe), UpstreamsRelayed: len(upstreams) > 0,
		Capabilities: func() map[string]any { return a.builtinCapabilities(svc, policyName, exe, upstreams) },
	})
}

// builtinCapabilities is what nomos_capabilities reports (both doors): configuration and
// limits, never keys, secrets or credential values.
func (a *App) builtinCapabilities(svc *service.Service, policyName string, exe *executor.Executor, upstreams []string) map[string]any {
	caps := map[string]any{
		"environment":        svc.Environment(),
		"assurance_level":    a.assurance,
		"deployment_mode":    a.Runtime.DeploymentMode,
		"policy":             policyName,
		"policy_bundle_hash": svc.PolicyHash(),
		"approvals_enabled":  a.approvals != nil,
		"upstreams":          append([]string{}, upstreams...),
		"executor":           nil,
	}
	if exe != nil {
		caps["executor"] = exe.Capabilities()
	}
	return caps
}

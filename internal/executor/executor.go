package executor

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/caddy-nomos/nomos/internal/credentials"
	"github.com/caddy-nomos/nomos/internal/redact"
	"github.com/caddy-nomos/nomos/policy"
	"github.com/caddy-nomos/nomos/policy/action"
)

// Defaults applied by New.
const (
	DefaultMaxOutputBytes = 64 << 10
	DefaultMaxOutputLines = 200
	DefaultExecTimeout    = 5 * time.Second
	DefaultHTTPTimeout    = 5 * time.Second
)

// lookahead is how far past the output cap the executors read, so that a
// secret straddling the cut is still whole when redaction runs.
const lookahead = 4 << 10

// Resolver looks up host addresses; *net.Resolver satisfies it.
type Resolver interface {
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
}

// Config configures an Executor.
type Config struct {
	// WorkspaceRoot confines every file path and exec working directory. It
	// must be an existing directory; symlinks in it are resolved once by New.
	// Default: the current directory.
	WorkspaceRoot string
	// MaxOutputBytes caps fs.read output, exec stdout and stderr each, and
	// HTTP response bodies, after redaction. It also caps fs.write content.
	// Default: 65536.
	MaxOutputBytes int64
	// MaxOutputLines caps the lines of each output, after redaction.
	// Default: 200.
	MaxOutputLines int64
	// ExecTimeout bounds a process.exec run; the process group is killed
	// when it expires. Default: 5s.
	ExecTimeout time.Duration
	// HTTPTimeout bounds a whole net.http_request, redirects and body
	// included. Default: 5s.
	HTTPTimeout time.Duration
	// EnvAllowlist names the parent environment variables process.exec may
	// copy into a child, when the action's env_allowlist_keys asks for them.
	// Default: none.
	EnvAllowlist []string
	// SandboxProfile is what this host provides: "none", "local",
	// "landlock" or "container" (see docs/executors.md). "landlock" and
	// "container" confine each process.exec child with Landlock and are
	// refused unless the launcher proves at start-up that the kernel
	// enforces it; "container" also needs the container evidence.
	// Default: "none".
	SandboxProfile string
	// SandboxReadPaths are absolute paths a landlock-confined child may
	// also read and execute, beyond the workspace and the system paths.
	// Default: none.
	SandboxReadPaths []string
	// Launcher is the command that starts the landlock launcher, which
	// confines itself and then execs the program; the executor appends its
	// arguments. The nomos binary provides it as "/proc/self/exe
	// sandbox-exec" (see LauncherCommand and RunLauncher). Default: none,
	// and the landlock and container profiles are refused.
	Launcher []string
	// AllowedPrivateCIDRs lets net.http_request reach addresses in these
	// prefixes although they are loopback, private, link-local or otherwise
	// non-public. Default: none.
	AllowedPrivateCIDRs []string
	// Resolver resolves HTTP hosts. Default: net.DefaultResolver.
	Resolver Resolver
	// DialContext dials the vetted "ip:port" of an HTTP request; it never
	// receives a host name. Default: a net.Dialer that checks the address
	// again at connect time.
	DialContext func(ctx context.Context, network, address string) (net.Conn, error)
	// TLSClientConfig is the TLS client configuration for HTTPS, for
	// example to trust a private CA. Default: the system roots.
	TLSClientConfig *tls.Config
	// Logger receives what clients are not told: the resolver, network,
	// file system and sandbox details behind a failed action. Default:
	// discard.
	Logger *slog.Logger
	// InsecureHTTP maps url:// to http:// instead of https://. It exists for
	// loopback tests only and must never be set in production. Default: false.
	InsecureHTTP bool
}

// workspaceLocks holds one write lock per workspace root, for the life of
// the process (roots are few: one per configured workspace).
var workspaceLocks sync.Map

// workspaceLock is root's write lock. Roots are compared as resolved
// paths, exactly: nested roots (/w and /w/sub) do not share one.
func workspaceLock(root string) *sync.Mutex {
	mu, _ := workspaceLocks.LoadOrStore(root, new(sync.Mutex))
	return mu.(*sync.Mutex)
}

// Executor runs allowed built-in actions. It is immutable after New and
// safe for concurrent use.
type Executor struct {
	cfg     Config
	root    string // absolute, symlinks resolved
	profile sandboxProfile
	// landlockABI is the Landlock rule set version the probe enforced.
	landlockABI int
	broker      *credentials.Broker
	red         *redact.Redactor
	allowed     []netip.Prefix
	client      *http.Transport
	runs        map[string]run
	files       map[string]fileRun
	hooks       testHooks
	// writeMu makes checking what the workspace will hold and writing it
	// one step: two writes that each look harmless alone (HEAD, then
	// refs/x beside an objects/) cannot both pass before either lands. It
	// is the workspace root's (workspaceLock), shared by the executors a
	// reload leaves side by side. Replicas sharing a workspace directory
	// are not covered.
	writeMu *sync.Mutex
}

// testHooks let tests change the filesystem at the worst moment.
type testHooks struct {
	// beforeCommit runs after a file is staged and before it is renamed
	// into place.
	beforeCommit func(rel string)
	// probeContainer replaces the container evidence probe.
	probeContainer func() error
	// afterStart runs once a child has started and its limits are set.
	afterStart func(pid int)
}

var envKeyPattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// New validates cfg, applies its defaults and prepares the executors.
// broker may be nil (secrets.checkout is then refused); red may be nil for
// the built-in patterns only.
func New(cfg Config, broker *credentials.Broker, red *redact.Redactor) (*Executor, error) {
	return newExecutor(cfg, broker, red, testHooks{})
}

func newExecutor(cfg Config, broker *credentials.Broker, red *redact.Redactor, hooks testHooks) (*Executor, error) {
	if err := applyDefaults(&cfg); err != nil {
		return nil, err
	}
	e := &Executor{cfg: cfg, broker: broker, hooks: hooks}
	steps := []func() error{e.setRoot, e.setReadPaths, e.setProfile, e.setAllowedNets, e.setEnvAllowlist, e.setRuns}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, err
		}
	}
	if err := e.setRedactor(red); err != nil {
		return nil, err
	}
	e.client = e.newTransport()
	return e, nil
}

func applyDefaults(cfg *Config) error {
	if cfg.MaxOutputBytes < 0 || cfg.MaxOutputLines < 0 || cfg.ExecTimeout < 0 || cfg.HTTPTimeout < 0 {
		return errors.New("executor: limits and timeouts must not be negative")
	}
	cfg.MaxOutputBytes = cmp.Or(cfg.MaxOutputBytes, DefaultMaxOutputBytes)
	cfg.MaxOutputLines = cmp.Or(cfg.MaxOutputLines, DefaultMaxOutputLines)
	cfg.ExecTimeout = cmp.Or(cfg.ExecTimeout, DefaultExecTimeout)
	cfg.HTTPTimeout = cmp.Or(cfg.HTTPTimeout, DefaultHTTPTimeout)
	cfg.SandboxProfile = cmp.Or(cfg.SandboxProfile, profileNone.String())
	if cfg.Resolver == nil {
		cfg.Resolver = net.DefaultResolver
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

func (e *Executor) setRoot() error {
	root := e.cfg.WorkspaceRoot
	if root == "" {
		root = "."
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return fmt.Errorf("executor: workspace root: %w", err)
	}
	if abs, err = filepath.EvalSymlinks(abs); err != nil {
		return fmt.Errorf("executor: workspace root: %w", err)
	}
	if fi, err := os.Stat(abs); err != nil || !fi.IsDir() {
		return fmt.Errorf("executor: workspace root %q is not a directory", abs)
	}
	e.root, e.writeMu = abs, workspaceLock(abs)
	return nil
}

// setReadPaths refuses a sandbox read path that is relative, unclean or the
// whole file system (which would undo the read confinement).
func (e *Executor) setReadPaths() error {
	for _, p := range e.cfg.SandboxReadPaths {
		if !filepath.IsAbs(p) || filepath.Clean(p) != p || p == "/" {
			return fmt.Errorf("executor: sandbox read path %q must be a clean absolute path other than /", p)
		}
	}
	return nil
}

func (e *Executor) setAllowedNets() error {
	for _, c := range e.cfg.AllowedPrivateCIDRs {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return fmt.Errorf("executor: allowed private cidr %q: %w", c, err)
		}
		e.allowed = append(e.allowed, p.Masked())
	}
	return nil
}

func (e *Executor) setEnvAllowlist() error {
	for _, k := range e.cfg.EnvAllowlist {
		if !envKeyPattern.MatchString(k) {
			return fmt.Errorf("executor: env allowlist: invalid name %q", k)
		}
	}
	e.cfg.EnvAllowlist = slices.Compact(slices.Sorted(slices.Values(e.cfg.EnvAllowlist)))
	return nil
}

// setRedactor adds the broker's values to red, so a brokered secret is
// masked wherever it shows up, whoever printed it.
func (e *Executor) setRedactor(red *redact.Redactor) error {
	var err error
	if red == nil {
		if red, err = redact.New(nil); err != nil {
			return err
		}
	}
	if e.broker != nil {
		if red, err = red.With(nil, e.broker.Values()); err != nil {
			return fmt.Errorf("executor: redaction: %w", err)
		}
	}
	e.red = red
	return nil
}

// run is one executor's work on an allowed action. Its Result is raw: Execute
// redacts and caps it.
type run func(ctx context.Context, a *action.Action, d policy.Decision) (*Result, *Error)

// fileRun is a run that opens workspace files: it opens the resolved paths
// that were decided, and only those.
type fileRun func(ctx context.Context, a *action.Action, ts []Target) (*Result, *Error)

// Execute runs an action policy allowed. decided are the Targets policy
// decided on; if the workspace resolves differently now, the action is
// refused. Every output in the Result, and the
// message of a returned *Error, is already redacted (built-in, operator and
// per-rule patterns and brokered values) and capped (config caps, then
// obligation caps). A refusal or failure is an *Error.
func (e *Executor) Execute(ctx context.Context, a *action.Action, d policy.Decision, decided []Target) (*Result, error) {
	red, err := e.red.With(d.Obligations.Redact, nil)
	if err != nil {
		return nil, e.redactError(e.red, fail(CodeExecutionError, "redact obligation: %v", err))
	}
	res, xerr := e.dispatch(ctx, a, d, decided)
	if xerr != nil {
		xerr = e.redactError(red, xerr)
		e.logDetail(a, xerr)
		return nil, xerr
	}
	return e.finish(res, red, d.Obligations), nil
}

// dispatch checks what holds for every action, then runs its executor.
func (e *Executor) dispatch(ctx context.Context, a *action.Action, d policy.Decision, decided []Target) (*Result, *Error) {
	if a == nil {
		return nil, fail(CodeInvalidParams, "no action")
	}
	if d.Decision != policy.Allow {
		return nil, fail(CodeNotAllowed, "decision %q is not ALLOW", d.Decision)
	}
	if err := e.checkSandbox(d.Obligations.SandboxMode); err != nil {
		return nil, err
	}
	fn, isRun := e.runs[a.ActionType]
	ffn, isFile := e.files[a.ActionType]
	if !isRun && !isFile {
		return nil, fail(CodeUnsupportedAction, "no built-in executor for %q", a.ActionType)
	}
	if err := checkNormalized(a); err != nil {
		return nil, err
	}
	if a.ActionType == action.TypeFSWrite || a.ActionType == action.TypeRepoApplyPatch {
		// The check of what the workspace will hold (plantsRepository, in
		// checkDecided) and the write are one step for every writer.
		e.writeMu.Lock()
		defer e.writeMu.Unlock()
	}
	ts, xerr := e.checkDecided(a, decided)
	if xerr != nil {
		return nil, xerr
	}
	if isFile {
		return ffn(ctx, a, ts)
	}
	return fn(ctx, a, d)
}

func (e *Executor) setRuns() error {
	e.files = map[string]fileRun{
		action.TypeFSRead:         e.fsRead,
		action.TypeFSWrite:        e.fsWrite,
		action.TypeRepoApplyPatch: e.applyPatch,
	}
	e.runs = map[string]run{
		action.TypeProcessExec:     e.processExec,
		action.TypeNetHTTPRequest:  e.httpRequest,
		action.TypeSecretsCheckout: e.secretsCheckout,
	}
	return nil
}

// checkNormalized refuses a resource that is not in its one canonical form:
// what the executor acts on must be exactly what policy matched.
func checkNormalized(a *action.Action) *Error {
	n, err := action.NormalizeResource(a.ActionType, a.Resource)
	if err != nil || n != a.Resource {
		return fail(CodeInvalidResource, "resource is not normalized")
	}
	return nil
}

func (e *Executor) redactError(red *redact.Redactor, err *Error) *Error {
	out := *err
	out.Message = red.String(err.Message)
	out.detail = red.String(err.detail)
	return &out
}

// logDetail writes the host detail a client was not given to the server
// log, with the ids that tie it to the audit events.
func (e *Executor) logDetail(a *action.Action, xerr *Error) {
	if xerr.detail == "" || a == nil {
		return
	}
	e.cfg.Logger.Warn("executor: action failed", "trace_id", a.TraceID, "action_id", a.ActionID,
		"action_type", a.ActionType, "code", xerr.Code, "detail", xerr.detail)
}

// Capabilities describes this executor for nomos_capabilities and doctor.
func (e *Executor) Capabilities() map[string]any {
	return map[string]any{
		"action_types":          e.actionTypes(),
		"workspace_root":        e.root,
		"sandbox_profile":       e.profile.String(),
		"sandbox_profiles":      e.profile.available(),
		"sandbox_guarantees":    e.profile.guarantees(),
		"landlock_abi":          e.landlockABI,
		"sandbox_read_paths":    slices.Clone(e.cfg.SandboxReadPaths),
		"max_output_bytes":      e.cfg.MaxOutputBytes,
		"max_output_lines":      e.cfg.MaxOutputLines,
		"exec_timeout_ms":       e.cfg.ExecTimeout.Milliseconds(),
		"http_timeout_ms":       e.cfg.HTTPTimeout.Milliseconds(),
		"env_allowlist":         slices.Clone(e.cfg.EnvAllowlist),
		"allowed_private_cidrs": prefixStrings(e.allowed),
		"credentials_enabled":   e.broker != nil,
		"http_scheme":           e.httpScheme(),
	}
}

func (e *Executor) actionTypes() []string {
	types := slices.Collect(maps.Keys(e.runs))
	types = append(types, slices.Collect(maps.Keys(e.files))...)
	slices.Sort(types)
	return types
}

func prefixStrings(ps []netip.Prefix) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}

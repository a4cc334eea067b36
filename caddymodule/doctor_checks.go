package caddymodule

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-nomos/nomos/internal/approvals"
	"github.com/caddy-nomos/nomos/mcp"
	"github.com/caddy-nomos/nomos/policy"
)

// minSecretBytes is the shortest API key or agent secret doctor accepts.
const minSecretBytes = 16

// demoSecrets are the values this repository publishes (the Makefile's
// `make run` defaults): a server using one is a demo, not a deployment.
var demoSecrets = []string{"dev-alice-key", "dev-reviewer-key", "dev-agent-secret"}

// placeholderSecrets are what people type when they mean "later"; they
// fail whatever their length.
var placeholderSecrets = []string{"changeme", "changethis", "secret", "password", "example", "test", "default"}

// upstreamStartTimeout bounds one upstream's start and tool listing.
const upstreamStartTimeout = 30 * time.Second

// doctorInput is what the checks look at: the nomos app's configuration,
// the HTTP servers' posture and, in the operator UI, the running app
// (live) whose stores and upstreams are already open.
type doctorInput struct {
	ctx     caddy.Context
	app     *App
	servers []serverPosture
	live    *App
	// raw is the nomos app's JSON, provisioned whole by config.provision.
	raw []byte
}

// run executes every check in a fixed order.
func (in *doctorInput) run(ctx context.Context) []doctorCheck {
	var out []doctorCheck
	out = append(out, in.checkBundles()...)
	out = append(out, in.checkSecrets()...)
	out = append(out, in.checkAnonymous())
	out = append(out, in.checkAuditSinks()...)
	out = append(out, in.checkState(ctx)...)
	out = append(out, in.checkApprovals(ctx)...)
	out = append(out, in.checkUpstreams(ctx)...)
	out = append(out, in.checkPins(ctx)...)
	out = append(out, in.checkTLS()...)
	out = append(out, in.checkMTLS())
	out = append(out, in.checkStateless())
	out = append(out, in.checkAssurance())
	if in.live == nil {
		out = append(out, in.checkProvision())
	}
	return out
}

// checkProvision provisions the whole nomos app as nomos run would (its
// upstreams left to mcp.upstream), catching what no single check covers:
// executor, redaction, credentials, rate limits.
func (in *doctorInput) checkProvision() doctorCheck {
	c := doctorCheck{ID: "config.provision"}
	app := new(App)
	if err := caddy.StrictUnmarshalJSON(in.raw, app); err != nil {
		return c.fail(err.Error(), "fix the nomos block")
	}
	app.Upstreams = nil
	app.applyDefaults()
	err := app.Provision(in.ctx)
	_ = app.Cleanup()
	if err != nil {
		return c.fail(err.Error(), "fix the nomos block; nomos run would refuse this config")
	}
	return c.pass("the nomos app provisions")
}

// checkBundles loads each policy set the way the server does.
func (in *doctorInput) checkBundles() []doctorCheck {
	c := doctorCheck{ID: "policy.bundles"}
	if len(in.app.Policies) == 0 {
		return []doctorCheck{c.fail("no policy set is configured", "add policy default { bundle <file> } to the nomos block")}
	}
	var out []doctorCheck
	for _, name := range in.app.policyNames() {
		c.Subject = name
		e, err := in.loadEngine(name)
		if err != nil {
			out = append(out, c.fail(err.Error(), "fix the bundle (nomos policy lint <bundle> explains rule problems) or its path"))
			continue
		}
		out = append(out, c.pass(fmt.Sprintf("%d bundle(s) load", len(in.app.Policies[name].Bundles)), bundleEvidence(in.app.Policies[name], e)...))
	}
	return out
}

func (in *doctorInput) loadEngine(name string) (*policy.Engine, error) {
	if in.live != nil {
		if e, ok := in.live.engines[name]; ok {
			return e, nil
		}
	}
	set := in.app.Policies[name]
	if set == nil || len(set.Bundles) == 0 {
		return nil, fmt.Errorf("at least one bundle is required")
	}
	sources, err := readBundles(set.Bundles)
	if err != nil {
		return nil, err
	}
	opts, _, err := in.app.policyOptions(set)
	if err != nil {
		return nil, err
	}
	return policy.Load(sources, opts)
}

// bundleEvidence names each bundle with its role and signature state and
// the merged hash: the provenance of what will decide.
func bundleEvidence(set *PolicySet, e *policy.Engine) []string {
	out := []string{"policy_bundle_hash " + e.Hash()}
	for _, b := range set.Bundles {
		sig := "unsigned"
		if b.Signature != "" {
			sig = "signed (" + b.Signature + ")"
		}
		role := b.Role
		if role == "" {
			role = "no role"
		}
		out = append(out, fmt.Sprintf("%s: %s, %s", b.Path, role, sig))
	}
	return out
}

// secretRef is one configured secret, named by its owner only.
type secretRef struct {
	owner, value string
}

// checkSecrets judges every API key and agent secret: a known demo value
// warns, a short one fails.
func (in *doctorInput) checkSecrets() []doctorCheck {
	c := doctorCheck{ID: "identity.secrets"}
	refs, err := in.secrets()
	if err != nil {
		return []doctorCheck{c.fail(err.Error(), "set the environment variable or fix api_keys_file")}
	}
	if len(refs) == 0 {
		if in.hasNonSecretIdentity() {
			return []doctorCheck{c.pass("no shared secrets configured (JWT, mTLS or trusted headers only)")}
		}
		return []doctorCheck{c.warn("no credentials are configured: every request fails authentication unless a route is anonymous",
			"add api_key, agent_secret, jwt or mtls to the identity block")}
	}
	out := make([]doctorCheck, 0, len(refs))
	for _, r := range refs {
		out = append(out, judgeSecret(c, r))
	}
	return out
}

func judgeSecret(c doctorCheck, r secretRef) doctorCheck {
	c.Subject = r.owner
	fix := fmt.Sprintf("generate one with `openssl rand -hex 32` and pass it through the environment (at least %d bytes)", minSecretBytes)
	for _, d := range demoSecrets {
		if strings.EqualFold(r.value, d) {
			return c.warn("a well-known demo value: anyone who read the README can use it", fix)
		}
	}
	if isPlaceholder(r.value) {
		return c.fail("a placeholder value, not a secret", fix)
	}
	if len(r.value) < minSecretBytes {
		return c.fail(fmt.Sprintf("%d bytes, shorter than %d", len(r.value), minSecretBytes), fix)
	}
	return c.pass(fmt.Sprintf("%d bytes, not a known demo value", len(r.value)))
}

// isPlaceholder matches a placeholder word, alone, repeated or decorated
// with digits and punctuation ("changeme-changeme", "Password123!").
func isPlaceholder(v string) bool {
	letters := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' {
			return r
		}
		return -1
	}, strings.ToLower(v))
	for _, p := range placeholderSecrets {
		if letters != "" && strings.ReplaceAll(letters, p, "") == "" {
			return true
		}
	}
	return false
}

// secrets resolves the configured secrets exactly as provisioning does.
func (in *doctorInput) secrets() ([]secretRef, error) {
	cfg, err := in.app.identityConfig()
	if err != nil {
		return nil, err
	}
	var out []secretRef
	for _, k := range cfg.APIKeys {
		out = append(out, secretRef{"api_key " + k.Principal, k.Key})
	}
	for _, s := range cfg.AgentSecrets {
		out = append(out, secretRef{"agent_secret " + s.AgentID, s.Secret})
	}
	return out, nil
}

func (in *doctorInput) hasNonSecretIdentity() bool {
	id := in.app.Identity
	return id != nil && (id.JWT != nil || id.MTLS != nil || id.TrustedHeaders != nil)
}

// checkAnonymous flags every route that turns missing credentials into a
// principal.
func (in *doctorInput) checkAnonymous() doctorCheck {
	c := doctorCheck{ID: "identity.anonymous"}
	var routes []string
	for _, s := range in.servers {
		for _, a := range s.Anonymous {
			routes = append(routes, s.Name+": "+a)
		}
	}
	if len(routes) == 0 {
		return c.pass("no route accepts anonymous requests")
	}
	return c.warn("routes accept requests without credentials as a fixed principal",
		"remove anonymous from these routes outside loopback development", routes...)
}

// checkAuditSinks opens each sink as the server would (creating a sqlite
// file and its schema, or a webhook's outbox) and closes it again.
func (in *doctorInput) checkAuditSinks() []doctorCheck {
	var out []doctorCheck
	for i, s := range in.app.Audit.Sinks {
		c := doctorCheck{ID: "audit.sinks", Subject: fmt.Sprintf("%d %s", i, s.Type)}
		ns, err := normalizeSink(s)
		if err != nil {
			out = append(out, c.fail(err.Error(), "fix the sink in the audit block"))
			continue
		}
		if err := in.probeSink(ns); err != nil {
			out = append(out, c.fail("not writable: "+err.Error(),
				"make the directory writable by the nomos user, or set a path under a writable directory"))
			continue
		}
		out = append(out, c.pass("writable", sinkEvidence(ns)))
	}
	return out
}

func sinkEvidence(s SinkConfig) string {
	switch s.Type {
	case "sqlite":
		return "path " + s.Path
	case "webhook":
		return "outbox " + s.Outbox
	}
	return "Caddy's log (logger nomos.audit)"
}

func (in *doctorInput) probeSink(s SinkConfig) error {
	if in.live != nil {
		return probeWritable(sinkFile(s))
	}
	if s.Type == "webhook" {
		return probeWritable(s.Outbox)
	}
	// The checkpoint key, if any: a keyed sqlite file refuses a writer
	// without it, as it would refuse the server.
	ck, err := loadCheckpointKey(in.app.Audit.Checkpoint, in.app.Audit.Sinks)
	if err != nil {
		return err
	}
	sink, err := openSink(s, ck)
	if err != nil {
		return err
	}
	return sink.Close()
}

func sinkFile(s SinkConfig) string {
	switch s.Type {
	case "sqlite":
		return s.Path
	case "webhook":
		return s.Outbox
	}
	return ""
}

// probeWritable checks that the file (or, before it exists, its
// directory) can be written, without changing it.
func probeWritable(path string) error {
	if path == "" {
		return nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err == nil {
		return f.Close()
	}
	if !os.IsNotExist(err) {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".nomos-doctor-*")
	if err != nil {
		return err
	}
	tmp.Close()
	return os.Remove(tmp.Name())
}

// checkApprovals opens the store and lists pending records; it also warns
// when nobody may decide.
func (in *doctorInput) checkApprovals(ctx context.Context) []doctorCheck {
	c := doctorCheck{ID: "approvals.store"}
	a := in.app.Approvals
	if a == nil {
		return []doctorCheck{c.pass("approvals are disabled: REQUIRE_APPROVAL decisions deny")}
	}
	st, closeStore, err := in.approvalStore()
	if err != nil {
		return []doctorCheck{c.fail(err.Error(), "make the store's directory writable, or set approvals { path <file> }")}
	}
	defer closeStore()
	pending, err := st.List(ctx, approvals.Filter{Status: approvals.Pending})
	if err != nil {
		return []doctorCheck{c.fail(err.Error(), "repair or move the approval store")}
	}
	where := "path " + a.Path
	if a.Store == "redis" {
		where = "on the shared state (state redis)"
	}
	out := []doctorCheck{c.pass(fmt.Sprintf("%s store opens; %d pending", a.Store, len(pending)), where)}
	ap := doctorCheck{ID: "approvals.approvers"}
	if len(a.Approvers) == 0 {
		return append(out, ap.warn("no approvers: nobody can approve, so every REQUIRE_APPROVAL waits until it expires",
			"list the principals who may decide: approvals { approvers <principal>... }"))
	}
	return append(out, ap.pass(fmt.Sprintf("%d approver(s)", len(a.Approvers)), "approvers "+strings.Join(a.Approvers, ", ")))
}

func (in *doctorInput) approvalStore() (approvals.Store, func(), error) {
	if in.live != nil && in.live.approvals != nil {
		return in.live.approvals, func() {}, nil
	}
	a := in.app.Approvals
	if a.Store == "redis" {
		c, closeClient, err := in.sharedClient()
		if err != nil {
			return nil, nil, err
		}
		return approvals.OpenRedis(c), closeClient, nil
	}
	if a.Store == "" {
		a.Store = "sqlite"
	}
	if a.Path == "" {
		a.Path = dataPath(map[string]string{"sqlite": "approvals.db", "file": "approvals.json"}[a.Store])
	}
	if a.Store != "sqlite" && a.Store != "file" {
		return nil, nil, fmt.Errorf("unknown store %q (want sqlite or file)", a.Store)
	}
	st, err := openApprovals(a.Store, a.Path)
	if err != nil {
		return nil, nil, err
	}
	return st, func() { _ = st.Close() }, nil
}

// checkUpstreams starts each upstream MCP server and lists its tools
// (offline), or reports the running session (live).
func (in *doctorInput) checkUpstreams(ctx context.Context) []doctorCheck {
	names := slices.Sorted(maps.Keys(in.app.Upstreams))
	out := make([]doctorCheck, 0, len(names))
	for _, n := range names {
		out = append(out, in.checkUpstream(ctx, n))
	}
	return out
}

func (in *doctorInput) checkUpstream(ctx context.Context, name string) doctorCheck {
	c := doctorCheck{ID: "mcp.upstream", Subject: name}
	fix := "run the upstream's command by hand (or curl its url) to see why it does not answer initialize and tools/list"
	if in.live != nil {
		if u := in.live.upstreams[name]; u != nil {
			return upstreamResult(c, u.ToolNames(), u.BreakerState(), fix)
		}
	}
	cfg, err := in.app.Upstreams[name].toMCP(name)
	if err != nil {
		return c.fail(err.Error(), "fix the upstream block")
	}
	u, err := mcp.NewUpstream(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		return c.fail(err.Error(), "fix the upstream block")
	}
	defer u.Close()
	sctx, cancel := context.WithTimeout(ctx, upstreamStartTimeout)
	defer cancel()
	if err := u.Start(sctx); err != nil {
		return c.fail(err.Error(), fix)
	}
	return upstreamResult(c, u.ToolNames(), u.BreakerState(), fix)
}

func upstreamResult(c doctorCheck, tools []string, breaker, fix string) doctorCheck {
	ev := []string{"breaker " + breaker, "tools " + strings.Join(tools, ", ")}
	if breaker == "open" {
		return c.fail("the breaker is open: calls fail fast", fix, ev...)
	}
	if len(tools) == 0 {
		return c.warn("started, but lists no tools", "check the upstream's tools/list answer", ev...)
	}
	return c.pass(fmt.Sprintf("started; %d tool(s)", len(tools)), ev...)
}

// checkTLS reports each HTTP server with a Nomos handler: TLS, or
// plaintext bound to loopback, pass; plaintext elsewhere fails, because
// bearer keys and agent signatures would cross the network in clear.
func (in *doctorInput) checkTLS() []doctorCheck {
	var out []doctorCheck
	for _, s := range in.servers {
		if !s.Nomos {
			continue
		}
		c := doctorCheck{ID: "tls.posture", Subject: s.Name}
		ev := "listen " + strings.Join(s.Listen, ", ")
		switch {
		case s.TLS:
			out = append(out, c.pass("served over TLS", ev))
		case s.loopbackOnly():
			out = append(out, c.pass("plaintext, bound to loopback only", ev))
		default:
			out = append(out, c.fail("plaintext HTTP on a non-loopback address: credentials cross the network in clear",
				"serve the site over https (a host name or tls directive), or bind 127.0.0.1", ev))
		}
	}
	if len(out) == 0 {
		out = append(out, doctorCheck{ID: "tls.posture"}.pass("no HTTP server routes to a Nomos handler"))
	}
	return out
}

// checkMTLS: identity mtls needs a server that asks for and verifies
// client certificates; otherwise it never sees one.
func (in *doctorInput) checkMTLS() doctorCheck {
	c := doctorCheck{ID: "tls.mtls"}
	if in.app.Identity == nil || in.app.Identity.MTLS == nil {
		return c.pass("mTLS identity is not configured")
	}
	var verifying []string
	for _, s := range in.servers {
		if s.Nomos && s.ClientAuthVerified {
			verifying = append(verifying, s.Name)
		}
	}
	if len(verifying) == 0 {
		return c.fail("identity mtls is configured but no server with a Nomos handler verifies client certificates",
			"add tls { client_auth { mode require_and_verify; trust_pool file <ca.pem> } } to the site")
	}
	return c.pass("client certificates are verified", "servers "+strings.Join(verifying, ", "))
}

// checkStateless applies the stateless-mode rules provisioning enforces.
func (in *doctorInput) checkStateless() doctorCheck {
	c := doctorCheck{ID: "runtime.stateless"}
	if err := in.app.validateRuntime(); err != nil {
		return c.fail(err.Error(), "use approvals { store redis } with state redis, remove sqlite sinks, or turn stateless off")
	}
	if in.app.Runtime.Stateless {
		return c.pass("stateless: no local state (no sqlite sink; approvals only in the shared redis store)")
	}
	return c.pass("stateful: local state allowed")
}

// checkAssurance reports the derived level and the evidence behind it.
func (in *doctorInput) checkAssurance() doctorCheck {
	c := doctorCheck{ID: "assurance.level"}
	level := in.assurance()
	ev := assuranceEvidence(in.app)
	msg := "assurance level " + level
	switch level {
	case AssuranceStrong, AssuranceGuarded:
		return c.pass(msg, ev...)
	}
	return c.warn(msg+": the deployment mode gives no isolation guarantee",
		"for a stronger level run under runtime { deployment_mode ci|k8s } with the evidence verified (docs/doctor.md)", ev...)
}

func (in *doctorInput) assurance() string {
	return assuranceLevel(in.app.Runtime, in.app.Audit, in.app.Identity, in.app.Executor)
}

func assuranceEvidence(a *App) []string {
	rt := a.Runtime
	ev := rt.Evidence
	if ev == nil {
		ev = new(EvidenceConfig)
	}
	sandbox := "none"
	if a.Executor != nil && a.Executor.SandboxProfile != "" {
		sandbox = a.Executor.SandboxProfile
	}
	return []string{
		"deployment_mode " + rt.DeploymentMode,
		fmt.Sprintf("strong_guarantee %v", rt.StrongGuarantee),
		fmt.Sprintf("runtime_isolation_verified %v (sandbox_profile %s)", ev.RuntimeIsolationVerified, sandbox),
		fmt.Sprintf("workload_identity_verified %v (jwt or mtls without api keys: %v)", ev.WorkloadIdentityVerified, workloadIdentity(a.Identity)),
		fmt.Sprintf("durable_audit_verified %v (durable sink: %v)", ev.DurableAuditVerified, durableAudit(a.Audit)),
	}
}

func workloadIdentity(id *IdentityConfig) bool {
	return id != nil && (id.JWT != nil || id.MTLS != nil) && len(id.APIKeys) == 0 && id.APIKeysFile == ""
}

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// A configuration is one way of reaching the everything-server's
// test_simple_text tool. Configurations that run nomos get a Caddyfile in
// their own directory with a private Caddy data dir.
type config struct {
	name   string
	what   string
	module string // a module the binary must have, or "" (skipped otherwise)
	// caddyfile renders the config; empty for the direct configuration.
	caddyfile func(e *bench, port, admin int) string
	auth      bool // the client sends the bench principal's API key
}

// benchAPIKey is the bench principal's key, and benchAuditKey the audit
// checkpoint key: throwaway values for loopback.
const (
	benchAPIKey   = "bench-principal-key-0123456789"
	benchAuditKey = "bench-audit-checkpoint-key-0123456789abcdef"
)

var configs = []config{
	{name: "A", what: "direct to the everything-server (stateless Streamable HTTP)"},
	{name: "B", what: "bare Caddy `reverse_proxy`", caddyfile: bareProxy},
	{name: "C", what: "`nomos_guard` allow-all + `reverse_proxy`, stdout audit", module: "http.handlers.nomos_guard", caddyfile: guardProxy, auth: true},
	{name: "G", what: "`nomos_guard` + `reverse_proxy`, 1,000 rules, sqlite audit with keyed checkpoints", module: "http.handlers.nomos_guard", caddyfile: guardFull, auth: true},
	{name: "H", what: "G with `synchronous normal` (durable against a crash of the process, not against power loss)", module: "http.handlers.nomos_guard", caddyfile: guardFullNormal, auth: true},
	{name: "D", what: "`nomos_mcp`, HTTP upstream, 1,000 rules, rate limits that never bind, breaker, sqlite audit with keyed checkpoints", caddyfile: fullPipeline, auth: true},
	{name: "E", what: "`nomos_mcp`, HTTP upstream, allow-all, stdout audit", caddyfile: gatewayStdout, auth: true},
	{name: "S", what: "E with sqlite audit (keyed checkpoints) and stdout", caddyfile: gatewaySqlite, auth: true},
	{name: "N", what: "S with `synchronous normal` (durable against a crash of the process, not against power loss)", caddyfile: gatewaySqliteNormal, auth: true},
	{name: "F", what: "`nomos_mcp`, stdio upstream, allow-all, stdout audit", caddyfile: gatewayStdio, auth: true},
}

var configByName = func() map[string]config {
	m := map[string]config{}
	for _, c := range configs {
		m[c.name] = c
	}
	return m
}()

func site(port int, body string) string {
	return fmt.Sprintf("http://:%d {\n\tbind 127.0.0.1\n%s}\n", port, body)
}

func global(admin int, nomos string) string {
	return fmt.Sprintf("{\n\tadmin 127.0.0.1:%d\n%s}\n\n", admin, nomos)
}

func bareProxy(e *bench, port, admin int) string {
	return global(admin, "") + site(port, fmt.Sprintf("\treverse_proxy %s\n", e.upstreamAddr))
}

// nomosApp is the app block every nomos configuration shares; extra goes
// inside it (upstreams, runtime limits).
func nomosApp(bundle string, sinks []string, extra string) string {
	var b strings.Builder
	b.WriteString("\tnomos {\n\t\tpolicy default {\n\t\t\tbundle " + bundle + "\n\t\t}\n")
	b.WriteString("\t\tidentity {\n\t\t\tapi_key " + benchAPIKey + " bench\n\t\t}\n")
	b.WriteString("\t\taudit {\n")
	for _, s := range sinks {
		b.WriteString("\t\t\tsink " + s + "\n")
		if strings.HasPrefix(s, "sqlite") { // the keyed chain, as a production deployment runs it
			b.WriteString("\t\t\tcheckpoint hmac-sha256 {\n\t\t\t\tkey {env.NOMOS_BENCH_AUDIT_KEY}\n\t\t\t}\n")
		}
	}
	b.WriteString("\t\t}\n" + extra + "\t}\n")
	return b.String()
}

func httpUpstream(e *bench) string {
	return fmt.Sprintf("\t\tupstream everything {\n\t\t\turl http://%s/mcp\n\t\t}\n", e.upstreamAddr)
}

func guardProxy(e *bench, port, admin int) string {
	return global(admin, nomosApp(e.allowAll, []string{"stdout"}, "")) +
		site(port, fmt.Sprintf("\tnomos_guard {\n\t\trequire_agent false\n\t}\n\treverse_proxy %s\n", e.upstreamAddr))
}

// guardFull is issue 10's second guard scenario: a 1,000-rule policy in
// which one rule allows the proxied requests, and durable sqlite audit.
func guardFull(e *bench, port, admin int) string {
	return global(admin, nomosApp(e.bigGuardPolicy, []string{"sqlite"}, "")) +
		site(port, fmt.Sprintf("\tnomos_guard {\n\t\trequire_agent false\n\t}\n\treverse_proxy %s\n", e.upstreamAddr))
}

// guardFullNormal is guardFull without an fsync per commit.
func guardFullNormal(e *bench, port, admin int) string {
	sqlite := "sqlite {\n\t\t\t\tsynchronous normal\n\t\t\t}"
	return global(admin, nomosApp(e.bigGuardPolicy, []string{sqlite}, "")) +
		site(port, fmt.Sprintf("\tnomos_guard {\n\t\trequire_agent false\n\t}\n\treverse_proxy %s\n", e.upstreamAddr))
}

func gatewayStdout(e *bench, port, admin int) string {
	return global(admin, nomosApp(e.allowAll, []string{"stdout"}, httpUpstream(e))) +
		site(port, "\tnomos_mcp everything\n")
}

func gatewaySqlite(e *bench, port, admin int) string {
	return global(admin, nomosApp(e.allowAll, []string{"stdout", "sqlite"}, httpUpstream(e))) +
		site(port, "\tnomos_mcp everything\n")
}

func gatewaySqliteNormal(e *bench, port, admin int) string {
	sqlite := "sqlite {\n\t\t\t\tsynchronous normal\n\t\t\t}"
	return global(admin, nomosApp(e.allowAll, []string{"stdout", sqlite}, httpUpstream(e))) +
		site(port, "\tnomos_mcp everything\n")
}

func gatewayStdio(e *bench, port, admin int) string {
	up := fmt.Sprintf("\t\tupstream everything {\n\t\t\tcommand %s\n\t\t}\n", e.everything)
	return global(admin, nomosApp(e.allowAll, []string{"stdout"}, up)) +
		site(port, "\tnomos_mcp everything\n")
}

// fullPipeline is the whole governed path: a large policy, rate limits set
// far above the offered load (so they are checked on every call but never
// bind), the upstream's breaker (on by default) and durable sqlite audit.
func fullPipeline(e *bench, port, admin int) string {
	limits := "\t\truntime {\n\t\t\trate_limit 1000000 1s burst 1000000\n\t\t}\n"
	return global(admin, nomosApp(e.bigPolicy, []string{"sqlite"}, httpUpstream(e)+limits)) +
		site(port, "\tnomos_mcp everything\n")
}

// writePolicies writes the allow-all bundle and a bundle of n rules in
// which exactly one rule allows the benchmarked tool and the rest, like a
// real deployment's, name other servers, tools, files, hosts and commands.
func (e *bench) writePolicies(n int) error {
	e.allowAll = filepath.Join(e.dir, "allow-all.yaml")
	allow := "version: v1\nrules:\n  - id: allow-all\n    action_type: \"*\"\n    resource: \"**\"\n    decision: ALLOW\n"
	if err := os.WriteFile(e.allowAll, []byte(allow), 0o644); err != nil {
		return err
	}
	e.bigPolicy = filepath.Join(e.dir, "policy-big.yaml")
	tool := "  - id: allow-bench-tool\n    action_type: mcp.call\n    resource: mcp://everything/test_simple_text\n    decision: ALLOW\n"
	if err := os.WriteFile(e.bigPolicy, []byte(bigPolicy(n, tool)), 0o644); err != nil {
		return err
	}
	e.bigGuardPolicy = filepath.Join(e.dir, "policy-big-guard.yaml")
	proxied := "  - id: allow-bench-proxy\n    action_type: net.http_request\n    resource: \"**\"\n    decision: ALLOW\n"
	return os.WriteFile(e.bigGuardPolicy, []byte(bigPolicy(n, proxied)), 0o644)
}

// bigPolicy is allow, the one rule that allows the benchmarked request,
// followed by n-1 generated rules.
func bigPolicy(n int, allow string) string {
	var b strings.Builder
	b.WriteString("version: v1\nrules:\n")
	b.WriteString(allow)
	for i := 1; i < n; i++ {
		b.WriteString(genRule(i))
	}
	return b.String()
}

// genRule varies rule shapes the way policies grow: more servers, tools,
// directories, hosts and commands, with a few deny rules among them.
func genRule(i int) string {
	switch i % 5 {
	case 0:
		return fmt.Sprintf("  - id: mcp-%04d\n    action_type: mcp.call\n    resource: mcp://srv%d/tool%d\n    decision: ALLOW\n", i, i%40, i)
	case 1:
		return fmt.Sprintf("  - id: read-%04d\n    action_type: fs.read\n    resource: file://workspace/dir%d/**\n    decision: ALLOW\n", i, i)
	case 2:
		return fmt.Sprintf("  - id: net-%04d\n    action_type: net.http_request\n    resource: url://host%d.example.com/api/**\n    decision: ALLOW\n", i, i)
	case 3:
		return fmt.Sprintf("  - id: deny-%04d\n    action_type: mcp.call\n    resource: mcp://srv%d/admin%d\n    decision: DENY\n", i, i%40, i)
	}
	return fmt.Sprintf("  - id: pay-%04d\n    action_type: payments.refund\n    resource: payments://shop%d/**\n    decision: REQUIRE_APPROVAL\n", i, i)
}

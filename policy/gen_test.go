package policy

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"testing"

	"github.com/caddy-nomos/nomos/policy/action"
)

// A generator of realistic policies for the index test and the benchmarks.
// Like a real deployment, a bigger policy names more things (MCP servers and
// tools, directories, hosts, commands) rather than piling more rules onto the
// same few resources, and a fixed handful of global rules applies to every
// action.

type genDomain struct {
	servers, dirs, hosts, bins, shops int
}

func domainFor(n int) genDomain {
	return genDomain{servers: max(2, n/40), dirs: max(3, n/25), hosts: max(2, n/40), bins: max(3, n/50), shops: max(2, n/60)}
}

func genRules(r *rand.Rand, n int) []Rule {
	d := domainFor(n)
	rules := globalRules()
	for i := len(rules); i < n; i++ {
		rule := d.genRule(r)
		rule.ID = fmt.Sprintf("%s-%05d", rule.ID, i)
		rules = append(rules, rule)
	}
	return rules
}

// globalRules are the deny-list every policy has, whatever its size.
func globalRules() []Rule {
	return []Rule{
		{ID: "deny-env", ActionType: "*", Resource: "file://workspace/**/.env*", Decision: Deny},
		{ID: "deny-pem", ActionType: "*", Resource: "file://workspace/**/*.pem", Decision: Deny},
		{ID: "deny-key", ActionType: "*", Resource: "file://workspace/**/*.key", Decision: Deny},
		{ID: "deny-secrets-prod", ActionType: "*", Resource: "**", Decision: Deny, Environments: []string{"prod"}, RiskFlags: []string{"risk.secrets"}},
		{ID: "deny-git-dir", ActionType: "fs.write", Resource: "file://workspace/**/.git/**", Decision: Deny},
		{ID: "deny-netrc", ActionType: "*", Resource: "**/.netrc", Decision: Deny},
	}
}

func (d genDomain) genRule(r *rand.Rand) Rule {
	switch p := r.Intn(100); {
	case p < 35:
		return d.mcpRule(r)
	case p < 55:
		return d.fileRule(r)
	case p < 70:
		return d.execRule(r)
	case p < 85:
		return d.netRule(r)
	}
	return d.customRule(r)
}

func pick[T any](r *rand.Rand, xs ...T) T { return xs[r.Intn(len(xs))] }

func decisionMix(r *rand.Rand) string {
	return pick(r, Allow, Allow, Allow, Allow, Allow, RequireApproval, Deny)
}

func principalsMix(r *rand.Rand) []string {
	if r.Intn(10) < 6 {
		return nil
	}
	return []string{fmt.Sprintf("user%d", r.Intn(20)), fmt.Sprintf("user%d", r.Intn(20)), "alice"}
}

func (d genDomain) mcpRule(r *rand.Rand) Rule {
	rule := Rule{ID: "mcp", ActionType: "mcp.call", Decision: decisionMix(r), Principals: principalsMix(r),
		Resource: fmt.Sprintf("mcp://srv%d/tool%d", r.Intn(d.servers), r.Intn(12))}
	switch r.Intn(100) {
	case 0:
		rule.Resource = fmt.Sprintf("mcp://*/tool%d", r.Intn(12))
	case 1, 2, 3, 4, 5, 6, 7, 8, 9:
		rule.Resource = fmt.Sprintf("mcp://srv%d/**", r.Intn(d.servers))
	}
	switch r.Intn(4) {
	case 0:
		rule.ParamsMatch = map[string]Matcher{"tool_arguments.amount": {Lte: json.Number(fmt.Sprint(r.Intn(500)))}}
	case 1:
		rule.ParamsMatch = map[string]Matcher{"tool_arguments.currency": {In: []json.RawMessage{json.RawMessage(`"USD"`), json.RawMessage(`"EUR"`)}}}
	}
	return rule
}

func (d genDomain) fileRule(r *rand.Rand) Rule {
	dir := fmt.Sprintf("file://workspace/dir%d", r.Intn(d.dirs))
	rule := Rule{ID: "file", ActionType: pick(r, "fs.read", "fs.read", "fs.write"), Decision: decisionMix(r),
		Resource: pick(r, dir+"/**", dir+"/**/*.go", dir+"/*.md", dir+"/src/**")}
	if rule.ActionType == "fs.write" && rule.Decision != Deny {
		rule.Obligations = &Obligations{OutputMaxBytes: ptr(int64(1 << (10 + r.Intn(8))))}
	}
	rule.Agents = pick(r, nil, nil, []string{"coder", "reviewer"})
	return rule
}

func (d genDomain) execRule(r *rand.Rand) Rule {
	bin := fmt.Sprintf("bin%d", r.Intn(d.bins))
	rule := Rule{ID: "exec", ActionType: "process.exec", Decision: decisionMix(r),
		Resource:  fmt.Sprintf("file://workspace/dir%d/**", r.Intn(d.dirs)),
		ExecMatch: &ExecMatch{ArgvPatterns: [][]string{{bin, pick(r, "status", "log", "build", "test"), "**"}}}}
	if rule.Decision == Deny {
		rule.ExecMatch.ArgvPatterns = [][]string{{bin, "push", "**"}, {bin, "**", "--force"}}
	}
	if rule.Decision != Deny {
		rule.Obligations = &Obligations{SandboxMode: pick(r, "local", "container")}
	}
	return rule
}

func (d genDomain) netRule(r *rand.Rand) Rule {
	host := fmt.Sprintf("host%d.example.com", r.Intn(d.hosts))
	rule := Rule{ID: "net", ActionType: "net.http_request", Decision: decisionMix(r), Principals: principalsMix(r),
		Resource: fmt.Sprintf("url://%s/api/v%d/**", host, 1+r.Intn(3))}
	if rule.Decision != Deny {
		rule.Obligations = &Obligations{NetAllowlist: []string{host}, HTTPRedirectHopLimit: ptr(1 + r.Intn(3))}
		rule.ParamsMatch = map[string]Matcher{"method": {In: []json.RawMessage{json.RawMessage(`"GET"`), json.RawMessage(`"HEAD"`)}}}
	}
	return rule
}

func (d genDomain) customRule(r *rand.Rand) Rule {
	t := pick(r, "payments.refund", "crm.contact_export", "tickets.close")
	return Rule{ID: "custom", ActionType: t, Decision: decisionMix(r), Environments: pick(r, nil, []string{"dev", "staging"}),
		Resource: fmt.Sprintf("%s://shop%d/orders/*", pick(r, "payments", "crm", "tickets"), r.Intn(d.shops))}
}

func ptr[T any](v T) *T { return &v }

// genActions draws actions from the same domain, mostly hitting rules.
func genActions(t testing.TB, r *rand.Rand, n int) []*action.Action {
	d := domainFor(n * 10)
	out := make([]*action.Action, 0, n)
	for len(out) < n {
		typ, res, params := d.genAction(r)
		id := action.Identity{Principal: pick(r, "alice", "user3", "bob"), Agent: pick(r, "coder", "ops"), Environment: pick(r, "dev", "dev", "prod")}
		out = append(out, newAction(t, typ, res, params, id))
	}
	return out
}

func (d genDomain) genAction(r *rand.Rand) (string, string, string) {
	switch r.Intn(5) {
	case 0:
		return "mcp.call", fmt.Sprintf("mcp://srv%d/tool%d", r.Intn(d.servers), r.Intn(12)),
			fmt.Sprintf(`{"tool_arguments":{"amount":%d.%d,"currency":"%s"}}`, r.Intn(600), r.Intn(100), pick(r, "USD", "GBP"))
	case 1:
		return pick(r, "fs.read", "fs.write"), fmt.Sprintf("file://workspace/dir%d/%s", r.Intn(d.dirs),
			pick(r, "main.go", "README.md", "src/a/b.go", "conf/.env", "keys/id.pem", ".netrc")), `{"content":"x"}`
	case 2:
		return "process.exec", fmt.Sprintf("file://workspace/dir%d/repo", r.Intn(d.dirs)),
			fmt.Sprintf(`{"argv":["bin%d","%s","-v"]}`, r.Intn(d.bins), pick(r, "status", "push", "test"))
	case 3:
		return "net.http_request", fmt.Sprintf("url://host%d.example.com/api/v%d/items/%d", r.Intn(d.hosts), 1+r.Intn(3), r.Intn(100)),
			fmt.Sprintf(`{"method":"%s"}`, pick(r, "GET", "POST"))
	}
	return "payments.refund", fmt.Sprintf("payments://shop%d/orders/%d", r.Intn(d.shops), r.Intn(1000)), `{}`
}

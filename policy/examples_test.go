package policy

import (
	"path/filepath"
	"testing"

	"github.com/caddy-nomos/nomos/policy/action"
)

const examplesDir = "../examples/policies"

func loadExamples(t *testing.T, names ...string) *Engine {
	t.Helper()
	return loadExamplesIn(t, "dev", names...)
}

func loadExamplesIn(t *testing.T, env string, names ...string) *Engine {
	t.Helper()
	var paths []string
	for _, n := range names {
		paths = append(paths, filepath.Join(examplesDir, n))
	}
	e, err := LoadFiles(paths, LoadOptions{Environment: env})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestExamplesLintClean loads every example alone and in the documented
// combinations; none may have lint findings. No environment is configured,
// as with `nomos policy lint`: base.yaml's staging/prod rule would otherwise
// be reported as never matching in dev.
func TestExamplesLintClean(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(examplesDir, "*.yaml"))
	if len(files) < 3 {
		t.Fatalf("found only %v", files)
	}
	sets := [][]string{{"base.yaml", "retail.yaml"}, {"base.yaml", "coding-agent.yaml"}}
	for _, f := range files {
		sets = append(sets, []string{filepath.Base(f)})
	}
	for _, set := range sets {
		if fs := Lint(loadExamplesIn(t, "", set...)); len(fs) != 0 {
			t.Errorf("%v: %+v", set, fs)
		}
	}
}

func TestCodingAgentExample(t *testing.T) {
	e := loadExamples(t, "coding-agent.yaml")
	tests := []struct {
		typ, res, params string
		decision, reason string
		ids              []string
	}{
		{"fs.read", "file://workspace/src/main.go", "", Allow, ReasonAllowByRule, []string{"read-workspace"}},
		{"fs.read", "file://workspace/README.md", "", Allow, ReasonAllowByRule, []string{"read-workspace"}},
		{"fs.read", "file://workspace/.env", "", Deny, ReasonDenyByRule, []string{"deny-dotenv"}},
		{"fs.read", "file://workspace/config/.env.production", "", Deny, ReasonDenyByRule, []string{"deny-dotenv-variants"}},
		{"fs.read", "file://workspace/certs/server.pem", "", Deny, ReasonDenyByRule, []string{"deny-pem"}},
		{"fs.read", "file://workspace/id.key", "", Deny, ReasonDenyByRule, []string{"deny-key"}},
		{"fs.write", "file://workspace/src/handler.go", `{"content":"x"}`, Allow, ReasonAllowByRule, []string{"write-src"}},
		{"fs.write", "file://workspace/src/.env", `{"content":"x"}`, Deny, ReasonDenyByRule, []string{"deny-dotenv"}},
		{"fs.write", "file://workspace/.github/workflows/ci.yml", `{"content":"x"}`, RequireApproval, ReasonRequireApprovalByRule, []string{"approve-ci-config"}},
		{"fs.write", "file://workspace/go.mod", `{"content":"x"}`, RequireApproval, ReasonRequireApprovalByRule, []string{"approve-build-files"}},
		{"fs.write", "file://workspace/docs/a.md", `{"content":"x"}`, Deny, ReasonDenyByDefault, nil},
		{"process.exec", "file://workspace/repo", `{"argv":["git","status"]}`, Allow, ReasonAllowByRule, []string{"git-read-only"}},
		{"process.exec", "file://workspace/repo", `{"argv":["git","push","origin","main"]}`, Deny, ReasonDenyByRule, []string{"deny-git-push"}},
		{"process.exec", "file://workspace/repo", `{"argv":["git","commit","-m","x"]}`, Deny, ReasonDenyByDefault, nil},
		{"process.exec", "file://workspace/repo", `{"argv":["go","test","./..."]}`, Allow, ReasonAllowByRule, []string{"go-toolchain"}},
		{"net.http_request", "url://proxy.golang.org/github.com/x/@v/list", `{"method":"GET"}`, Allow, ReasonAllowByRule, []string{"go-module-proxy"}},
		{"net.http_request", "url://proxy.golang.org/x", `{"method":"POST"}`, Deny, ReasonDenyByDefault, nil},
	}
	for _, tt := range tests {
		d := e.Evaluate(act(t, tt.typ, tt.res, tt.params))
		t.Run(tt.typ+" "+tt.res, func(t *testing.T) { checkDecision(t, d, tt.decision, tt.reason, tt.ids...) })
	}
	d := e.Evaluate(act(t, "process.exec", "file://workspace/repo", `{"argv":["go","test","./..."]}`))
	if d.Obligations.SandboxMode != "container" || d.Obligations.ExecConstraints == nil {
		t.Errorf("go test obligations %+v", d.Obligations)
	}
}

func TestRetailExample(t *testing.T) {
	e := loadExamples(t, "base.yaml", "retail.yaml")
	tests := []struct {
		res, params      string
		decision, reason string
		ids              []string
	}{
		{"mcp://retail/lookup_order", `{"tool_arguments":{"order_id":"42"}}`, Allow, ReasonAllowByRule, []string{"lookup-order"}},
		{"mcp://retail/refund_order", `{"tool_arguments":{"order_id":"42","amount":40}}`, Allow, ReasonAllowByRule, []string{"refund-up-to-100"}},
		{"mcp://retail/refund_order", `{"tool_arguments":{"amount":100}}`, Allow, ReasonAllowByRule, []string{"refund-up-to-100"}},
		{"mcp://retail/refund_order", `{"tool_arguments":{"amount":100.00}}`, Allow, ReasonAllowByRule, []string{"refund-up-to-100"}},
		{"mcp://retail/refund_order", `{"tool_arguments":{"amount":100.01}}`, RequireApproval, ReasonRequireApprovalByRule, []string{"refund-over-100"}},
		{"mcp://retail/refund_order", `{"tool_arguments":{"amount":2500}}`, RequireApproval, ReasonRequireApprovalByRule, []string{"refund-over-100"}},
		{"mcp://retail/refund_order", `{"tool_arguments":{"order_id":"42"}}`, Deny, ReasonDenyByDefault, nil},
		{"mcp://retail/refund_order", `{"tool_arguments":{"amount":-5000}}`, Deny, ReasonDenyByDefault, nil},
		{"mcp://retail/refund_order", `{"tool_arguments":{"amount":0}}`, Deny, ReasonDenyByDefault, nil},
		{"mcp://retail/refund_order", `{"tool_arguments":{"amount":"all of it"}}`, Deny, ReasonDenyByEvaluationError, []string{"refund-over-100", "refund-up-to-100"}},
		{"mcp://retail/issue_compensation", `{"tool_arguments":{"amount":1}}`, Deny, ReasonDenyByRule, []string{"deny-compensation"}},
		{"mcp://retail/delete_customer", `{}`, Deny, ReasonDenyByDefault, nil},
	}
	for _, tt := range tests {
		d := e.Evaluate(act(t, "mcp.call", tt.res, tt.params))
		t.Run(tt.res+" "+tt.params, func(t *testing.T) { checkDecision(t, d, tt.decision, tt.reason, tt.ids...) })
	}
	sample := act(t, "mcp.sample", "mcp://retail/sample", "")
	checkDecision(t, e.Evaluate(sample), Deny, ReasonDenyByRule, "base-deny-mcp-sample")
	prod := newAction(t, "secrets.checkout", "secret://vault/db", `{"secret_id":"db"}`, action.Identity{Principal: "alice", Agent: "coder", Environment: "prod"})
	checkDecision(t, e.Evaluate(prod), Deny, ReasonDenyByRule, "base-deny-secrets-outside-dev")
}

// TestPaymentsExample: small refunds are allowed, large ones need approval,
// and a refund of zero or less (a charge in disguise) matches no rule.
func TestPaymentsExample(t *testing.T) {
	e := loadExamples(t, "base.yaml", "payments.yaml")
	for _, tt := range []struct {
		params           string
		decision, reason string
		ids              []string
	}{
		{`{"amount":50,"currency":"USD"}`, Allow, ReasonAllowByRule, []string{"payments-refund-small"}},
		{`{"amount":100,"currency":"EUR"}`, Allow, ReasonAllowByRule, []string{"payments-refund-small"}},
		{`{"amount":101,"currency":"USD"}`, RequireApproval, ReasonRequireApprovalByRule, []string{"payments-refund-large"}},
		{`{"amount":-5000,"currency":"USD"}`, Deny, ReasonDenyByDefault, nil},
		{`{"amount":0,"currency":"USD"}`, Deny, ReasonDenyByDefault, nil},
		{`{"amount":-0.01,"currency":"USD"}`, Deny, ReasonDenyByDefault, nil},
	} {
		d := e.Evaluate(act(t, "payments.refund", "payments://shop/orders/7", tt.params))
		t.Run(tt.params, func(t *testing.T) { checkDecision(t, d, tt.decision, tt.reason, tt.ids...) })
	}
}

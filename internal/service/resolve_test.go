package service

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/caddy-nomos/nomos/audit"
	"github.com/caddy-nomos/nomos/internal/approvals"
	"github.com/caddy-nomos/nomos/internal/executor"
	"github.com/caddy-nomos/nomos/policy"
)

const resolveBundle = `version: v1
rules:
  - {id: read-ws, action_type: fs.read, resource: "file://workspace/**", decision: ALLOW}
  - {id: deny-dotenv, action_type: "*", resource: "file://workspace/**/.env", decision: DENY}
  - {id: write-src, action_type: fs.write, resource: "file://workspace/src/**", decision: ALLOW}
  - {id: approve-ci, action_type: fs.write, resource: "file://workspace/ci/**", decision: REQUIRE_APPROVAL}
  - {id: approve-github, action_type: fs.write, resource: "file://workspace/.github/**", decision: REQUIRE_APPROVAL}
`

// newResolveFixture is a service with the real executor on a workspace
// holding a secret, a CI directory and symlinks to both.
func newResolveFixture(t *testing.T) (*fixture, string) {
	t.Helper()
	ws := t.TempDir()
	for name, content := range map[string]string{".env": "SECRET=s3cr3t\n", "ci/deploy.yml": "deploy\n", ".github/keep": "k\n", "src/main.go": "package main\n"} {
		p := filepath.Join(ws, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{"src/notes.txt": "../.env", "src/cilink": "../ci"} {
		if err := os.Symlink(target, filepath.Join(ws, link)); err != nil {
			t.Fatal(err)
		}
	}
	exe, err := executor.New(executor.Config{WorkspaceRoot: ws}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	eng, err := policy.Load([]policy.BundleSource{{Path: "r.yaml", Data: []byte(resolveBundle)}}, policy.LoadOptions{Environment: "dev"})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixtureWith(t, true, func(c *Config) { c.Policy, c.Executor = eng, exe })
	return f, ws
}

// TestSymlinkToDeniedPathIsDenied is issue 8 #2 at the service: the read
// is decided on .env, where the link leads, and the evidence says so.
func TestSymlinkToDeniedPathIsDenied(t *testing.T) {
	f, _ := newResolveFixture(t)
	ctx := context.Background()
	resp, err := f.svc.Process(ctx, body("sym1", "fs.read", "file://workspace/src/notes.txt", nil, ""), alice)
	if err != nil || resp.Decision != policy.Deny || resp.Reason != "deny_by_rule" || resp.Output != "" {
		t.Fatalf("read through the link: %+v %v", resp, err)
	}
	ev := f.rec.last(audit.EventActionDecision)
	got, _ := ev.ExecutorMetadata["resolved_resources"].([]string)
	if ev.Decision != policy.Deny || !slices.Equal(got, []string{"file://workspace/.env"}) || !slices.Contains(ev.MatchedRuleIDs, "deny-dotenv") {
		t.Fatalf("decision event: %+v", ev)
	}
	ex, err := f.svc.Explain(ctx, body("sym1", "fs.read", "file://workspace/src/notes.txt", nil, ""), alice)
	if err != nil || ex.Decision != policy.Deny {
		t.Fatalf("explain disagrees with /action: %+v %v", ex, err)
	}
}

// TestApprovalBoundToResolvedPath: an approval given while the link led to
// ci/ does not cover the same request once it leads to .github/.
func TestApprovalBoundToResolvedPath(t *testing.T) {
	f, ws := newResolveFixture(t)
	ctx := context.Background()
	req := func(approvalID string) *Response {
		resp, err := f.svc.Process(ctx, body("sym2", "fs.write", "file://workspace/src/cilink/deploy.yml", map[string]any{"content": "pwned\n"}, approvalID), alice)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	first := req("")
	if first.Decision != policy.RequireApproval {
		t.Fatalf("write through a link into ci/: %+v", first)
	}
	if _, err := f.svc.Decide(ctx, decideBody(first.ApprovalID, "APPROVE"), "reviewer"); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(ws, "src", "cilink")
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../.github", link); err != nil {
		t.Fatal(err)
	}
	again := req(first.ApprovalID)
	if again.Decision != policy.RequireApproval || again.ApprovalID == first.ApprovalID {
		t.Fatalf("the approval for ci/ covered .github/: %+v", again)
	}
	if _, err := os.Stat(filepath.Join(ws, ".github", "deploy.yml")); !os.IsNotExist(err) {
		t.Fatalf(".github/deploy.yml was written: %v", err)
	}
	rec, _ := f.store.Get(ctx, first.ApprovalID)
	if rec.Status != approvals.Approved {
		t.Fatalf("first approval: %+v", rec)
	}
}

package executor

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/caddy-nomos/nomos/internal/credentials"
	"github.com/caddy-nomos/nomos/internal/redact"
	"github.com/caddy-nomos/nomos/policy"
	"github.com/caddy-nomos/nomos/policy/action"
)

var testIdentity = action.Identity{Principal: "alice", Agent: "coder", Environment: "dev"}

// newTestExecutor builds an executor on a fresh workspace unless cfg names
// one.
func newTestExecutor(t *testing.T, cfg Config) *Executor {
	t.Helper()
	return newTestExecutorWith(t, cfg, nil, testHooks{})
}

func newTestExecutorWith(t *testing.T, cfg Config, broker *credentials.Broker, hooks testHooks) *Executor {
	t.Helper()
	if cfg.WorkspaceRoot == "" {
		cfg.WorkspaceRoot = t.TempDir()
	}
	if cfg.Launcher == nil {
		cfg.Launcher = testLauncher
	}
	red, err := redact.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	e, err := newExecutor(cfg, broker, red, hooks)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// newAction builds an action the way every front door does.
func newAction(t *testing.T, typ, resource string, params any) *action.Action {
	t.Helper()
	raw, err := json.Marshal(params)
	if err != nil {
		t.Fatal(err)
	}
	a, err := action.New(&action.Envelope{
		SchemaVersion: action.SchemaVersion, ActionID: "act-1", TraceID: "trace-1",
		ActionType: typ, Resource: resource, Params: raw,
	}, testIdentity)
	if err != nil {
		t.Fatalf("action.New(%s %s): %v", typ, resource, err)
	}
	return a
}

func allow(ob policy.Obligations) policy.Decision {
	return policy.Decision{Decision: policy.Allow, ReasonCode: "allow_by_rule", Obligations: ob}
}

func execute(t *testing.T, e *Executor, a *action.Action, ob policy.Obligations) (*Result, *Error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Decide on the resolved paths as the service does, then execute.
	ts, err := e.Targets(a)
	if err == nil {
		var res *Result
		if res, err = e.Execute(ctx, a, allow(ob), ts); err == nil {
			return res, nil
		}
	}
	var xerr *Error
	if !errors.As(err, &xerr) {
		t.Fatalf("Execute returned %T %v, want *Error", err, err)
	}
	return nil, xerr
}

func mustRun(t *testing.T, e *Executor, a *action.Action, ob policy.Obligations) *Result {
	t.Helper()
	res, xerr := execute(t, e, a, ob)
	if xerr != nil {
		t.Fatalf("%s %s: %v", a.ActionType, a.Resource, xerr)
	}
	return res
}

// wantError checks the code and classification of a refusal.
func wantError(t *testing.T, xerr *Error, code string) {
	t.Helper()
	if xerr == nil {
		t.Fatalf("got success, want %s", code)
	}
	if xerr.Code != code || xerr.Classification != classOf[code] {
		t.Fatalf("got %s/%s (%s), want %s/%s", xerr.Code, xerr.Classification, xerr.Message, code, classOf[code])
	}
}

func writeFile(t *testing.T, root, rel, content string) {
	t.Helper()
	p := filepath.Join(root, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, root, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(rel)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func ptr[T any](v T) *T { return &v }

var noObligations policy.Obligations

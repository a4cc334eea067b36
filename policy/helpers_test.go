package policy

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddy-nomos/nomos/policy/action"
)

// mustLoad compiles one bundle given as text; the name picks the format.
func mustLoad(t testing.TB, name, data string) *Engine {
	t.Helper()
	e, err := Load([]BundleSource{{Path: name, Data: []byte(data)}}, LoadOptions{})
	if err != nil {
		t.Fatalf("load %s: %v", name, err)
	}
	return e
}

// newAction builds an action through the action package, so resources are
// normalized, params canonical and risk flags computed as in production.
func newAction(t testing.TB, actionType, resource, params string, id action.Identity) *action.Action {
	t.Helper()
	if params == "" {
		params = "{}"
	}
	env := &action.Envelope{
		SchemaVersion: "v1", ActionID: "act-1", TraceID: "trace-1",
		ActionType: actionType, Resource: resource, Params: json.RawMessage(params),
	}
	a, err := action.New(env, id)
	if err != nil {
		t.Fatalf("new action %s %s: %v", actionType, resource, err)
	}
	return a
}

func defaultID() action.Identity {
	return action.Identity{Principal: "alice", Agent: "coder", Environment: "dev"}
}

func act(t testing.TB, actionType, resource, params string) *action.Action {
	t.Helper()
	return newAction(t, actionType, resource, params, defaultID())
}

func ids(s ...string) string { return strings.Join(s, ",") }

func checkDecision(t *testing.T, got Decision, decision, reason string, wantIDs ...string) {
	t.Helper()
	if got.Decision != decision || got.ReasonCode != reason || ids(got.MatchedRuleIDs...) != ids(wantIDs...) {
		t.Errorf("got %s/%s %v, want %s/%s %v", got.Decision, got.ReasonCode, got.MatchedRuleIDs, decision, reason, wantIDs)
	}
}

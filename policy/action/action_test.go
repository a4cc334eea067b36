package action

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
)

var testIdentity = Identity{Principal: "alice", Agent: "coder", Environment: "dev"}

// testEnvelope is a valid envelope built in code, as the MCP gateway does.
func testEnvelope() *Envelope {
	return &Envelope{
		SchemaVersion: "v1",
		ActionID:      "act-1",
		ActionType:    "fs.write",
		Resource:      `file://WORKSPACE/src\main.go`,
		Params:        json.RawMessage(`{ "content": "x", "mode": 1.0 }`),
		TraceID:       "trace-1",
		Context: Context{Extensions: map[string]json.RawMessage{
			"approval": json.RawMessage(`{"approval_id":"apr_0123456789abcdef01234567"}`),
		}},
	}
}

func TestNew(t *testing.T) {
	env := testEnvelope()
	a, err := New(env, testIdentity)
	if err != nil {
		t.Fatal(err)
	}
	wantParams := `{"content":"x","mode":"1.0"}`
	if a.SchemaVersion != "v1" || a.ActionID != "act-1" || a.TraceID != "trace-1" || a.ActionType != "fs.write" {
		t.Errorf("ids and type: %+v", a)
	}
	if a.Resource != "file://workspace/src/main.go" {
		t.Errorf("Resource = %q", a.Resource)
	}
	if string(a.Params) != wantParams || a.ParamsHash != SHA256Hex([]byte(wantParams)) {
		t.Errorf("Params = %s, ParamsHash = %s", a.Params, a.ParamsHash)
	}
	if a.Principal != "alice" || a.Agent != "coder" || a.Environment != "dev" {
		t.Errorf("identity: %+v", a)
	}
	if !slices.Equal(a.RiskFlags, []string{RiskWrite}) || a.Fingerprint != Fingerprint(a) || len(a.Fingerprint) != 64 {
		t.Errorf("RiskFlags = %v, Fingerprint = %q", a.RiskFlags, a.Fingerprint)
	}
	// The Action must not alias the caller's extension buffers.
	env.Context.Extensions["approval"][2] = 'X'
	if id, err := ApprovalID(a); err != nil || id != "apr_0123456789abcdef01234567" {
		t.Errorf("ApprovalID after caller mutation = %q, %v", id, err)
	}
}

func TestNewFromDecodedEnvelope(t *testing.T) {
	env, err := DecodeEnvelope([]byte(envelopeBody(map[string]string{"params": `{"b":1,"a":"x","c":[true,2]}`})))
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(env, testIdentity)
	if err != nil {
		t.Fatal(err)
	}
	if a.ParamsHash != "04ceb95b6eab660e1db5b4cf9e1d8ad320a4772a2a22775bb679d53daabd84f2" {
		t.Errorf("ParamsHash = %s", a.ParamsHash)
	}
}

// TestNewWithoutAgent: a route that does not authenticate agents binds an
// empty agent, which stays distinct from every named agent.
func TestNewWithoutAgent(t *testing.T) {
	a, err := New(testEnvelope(), Identity{Principal: "alice", Environment: "dev"})
	if err != nil {
		t.Fatal(err)
	}
	named, _ := New(testEnvelope(), testIdentity)
	if a.Agent != "" || a.Fingerprint == named.Fingerprint {
		t.Errorf("agent %q, fingerprint %s shared with a named agent", a.Agent, a.Fingerprint)
	}
}

func TestNewErrors(t *testing.T) {
	if _, err := New(nil, testIdentity); err == nil || err.Error() != "new action: envelope is nil: validation error" {
		t.Errorf("nil envelope: %v", err)
	}
	cases := []struct {
		name   string
		mutate func(*Envelope, *Identity)
		want   string
	}{
		{"schema version", func(e *Envelope, _ *Identity) { e.SchemaVersion = "" }, `schema_version must be "v1"`},
		{"action id", func(e *Envelope, _ *Identity) { e.ActionID = "a b" }, "action_id must match"},
		{"trace id", func(e *Envelope, _ *Identity) { e.TraceID = strings.Repeat("t", 129) }, "trace_id must match"},
		{"action type", func(e *Envelope, _ *Identity) { e.ActionType = "write" }, "action_type must be dotted lowercase"},
		{"resource", func(e *Envelope, _ *Identity) { e.Resource = "" }, "resource is required"},
		{"params missing", func(e *Envelope, _ *Identity) { e.Params = nil }, "params is required"},
		{"params invalid", func(e *Envelope, _ *Identity) { e.Params = json.RawMessage(`{"a":}`) }, "params: invalid json"},
		{"params duplicate", func(e *Envelope, _ *Identity) { e.Params = json.RawMessage(`{"a":1,"a":2}`) }, "params: duplicate object key"},
		{"params array", func(e *Envelope, _ *Identity) { e.Params = json.RawMessage(`[1]`) }, "params must be a JSON object"},
		{"params too large", func(e *Envelope, _ *Identity) {
			e.Params = json.RawMessage(`{"a":"` + strings.Repeat("x", MaxParamsBytes) + `"}`)
		}, "params exceeds 32768 bytes"},
		{"context too large", func(e *Envelope, _ *Identity) {
			e.Context.Extensions["big"] = json.RawMessage(`"` + strings.Repeat("x", MaxContextBytes) + `"`)
		}, "context exceeds 8192 bytes"},
		{"extension invalid", func(e *Envelope, _ *Identity) { e.Context.Extensions["t"] = json.RawMessage(`{`) }, `context.extensions["t"]: invalid json`},
		{"approval invalid", func(e *Envelope, _ *Identity) { e.Context.Extensions["approval"] = json.RawMessage(`{}`) }, `context.extensions.approval: missing field "approval_id"`},
		{"principal", func(_ *Envelope, id *Identity) { id.Principal = "" }, "principal is required"},
		{"environment", func(_ *Envelope, id *Identity) { id.Environment = "" }, "environment is required"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env, id := testEnvelope(), testIdentity
			tc.mutate(env, &id)
			a, err := New(env, id)
			if err == nil {
				t.Fatalf("accepted: %+v", a)
			}
			checkValidationError(t, err, "new action: ", []string{tc.want})
		})
	}
	env := testEnvelope()
	env.Resource = "file://workspace/../etc/passwd"
	if _, err := New(env, testIdentity); !errors.Is(err, ErrNormalization) || errors.Is(err, ErrValidation) {
		t.Errorf("traversal: error %v, want ErrNormalization only", err)
	}
}

func TestApprovalID(t *testing.T) {
	cases := []struct {
		name, ext, want, err string
	}{
		{"absent", "", "", ""},
		{"present", `{"approval_id":"apr_0123"}`, "apr_0123", ""},
		{"escaped", `{"approval_id":"apr\u005f1"}`, "apr_1", ""},
		{"null", `null`, "", "approval must be a JSON object"},
		{"string", `"apr_1"`, "", "approval must be a JSON object"},
		{"empty object", `{}`, "", `missing field "approval_id"`},
		{"extra key", `{"approval_id":"apr_1","fingerprint":"x"}`, "", `unknown field "fingerprint"`},
		{"case variant", `{"Approval_ID":"apr_1"}`, "", `field "Approval_ID" must be spelled "approval_id"`},
		{"number", `{"approval_id":1}`, "", "approval_id must be a string"},
		{"null id", `{"approval_id":null}`, "", "approval_id must be a string"},
		{"empty id", `{"approval_id":""}`, "", "approval_id must match " + IDPattern},
		{"bad id", `{"approval_id":"apr 1"}`, "", "approval_id must match " + IDPattern},
		{"duplicate key", `{"approval_id":"a","approval_id":"b"}`, "", `duplicate object key "approval_id"`},
		{"trailing data", `{"approval_id":"a"}{}`, "", "trailing data after the json value"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := &Action{}
			if tc.ext != "" {
				a.Extensions = map[string]json.RawMessage{"approval": json.RawMessage(tc.ext)}
			}
			got, err := ApprovalID(a)
			if tc.err == "" {
				if err != nil || got != tc.want {
					t.Errorf("ApprovalID = %q, %v; want %q", got, err, tc.want)
				}
				return
			}
			want := "approval extension: " + tc.err + ": validation error"
			if err == nil || err.Error() != want || !errors.Is(err, ErrValidation) || got != "" {
				t.Errorf("ApprovalID = %q, %v; want error %q", got, err, want)
			}
		})
	}
	if _, err := ApprovalID(nil); !errors.Is(err, ErrValidation) {
		t.Errorf("nil action: %v", err)
	}
}

func TestFingerprint(t *testing.T) {
	base, err := New(testEnvelope(), testIdentity)
	if err != nil {
		t.Fatal(err)
	}
	// The document is fixed by the spec; pin it so the hash never drifts.
	doc := `{"agent":"coder","environment":"dev","normalized_action":{"action_type":"fs.write",` +
		`"params":{"content":"x","mode":"1.0"},"resource":"file://workspace/src/main.go","schema_version":"v1"},"principal":"alice"}`
	if base.Fingerprint != SHA256Hex([]byte(doc)) {
		t.Errorf("Fingerprint = %s, want sha256 of %s", base.Fingerprint, doc)
	}
	same := []struct {
		name   string
		mutate func(*Envelope, *Identity)
	}{
		{"key order", func(e *Envelope, _ *Identity) { e.Params = json.RawMessage(`{"mode":1.0,"content":"x"}`) }},
		{"white space", func(e *Envelope, _ *Identity) { e.Params = json.RawMessage("{\"content\" :\n\"x\",\"mode\":1.0}") }},
		{"resource spelling", func(e *Envelope, _ *Identity) { e.Resource = `file://workspace//src\main.go` }},
		{"new ids", func(e *Envelope, _ *Identity) { e.ActionID, e.TraceID = "act-2", "trace-2" }},
		{"extensions", func(e *Envelope, _ *Identity) { e.Context.Extensions = nil }},
	}
	for _, tc := range same {
		if got := fingerprintOf(t, tc.mutate); got != base.Fingerprint {
			t.Errorf("%s changed the fingerprint", tc.name)
		}
	}
	differ := []struct {
		name   string
		mutate func(*Envelope, *Identity)
	}{
		{"param value", func(e *Envelope, _ *Identity) { e.Params = json.RawMessage(`{"content":"y","mode":1.0}`) }},
		{"param added", func(e *Envelope, _ *Identity) { e.Params = json.RawMessage(`{"content":"x","mode":1.0,"z":null}`) }},
		{"number spelling", func(e *Envelope, _ *Identity) { e.Params = json.RawMessage(`{"content":"x","mode":1}`) }},
		{"resource", func(e *Envelope, _ *Identity) { e.Resource = "file://workspace/src/Main.go" }},
		{"action type", func(e *Envelope, _ *Identity) { e.ActionType = "fs.read" }},
		{"principal", func(_ *Envelope, id *Identity) { id.Principal = "bob" }},
		{"agent", func(_ *Envelope, id *Identity) { id.Agent = "other" }},
		{"environment", func(_ *Envelope, id *Identity) { id.Environment = "prod" }},
	}
	for _, tc := range differ {
		if got := fingerprintOf(t, tc.mutate); got == base.Fingerprint {
			t.Errorf("%s did not change the fingerprint", tc.name)
		}
	}
	if got := Fingerprint(&Action{Params: json.RawMessage(`{`)}); got != "" {
		t.Errorf("Fingerprint of invalid params = %q, want empty", got)
	}
	if got := Fingerprint(nil); got != "" {
		t.Errorf("Fingerprint(nil) = %q, want empty", got)
	}
}

func fingerprintOf(t *testing.T, mutate func(*Envelope, *Identity)) string {
	t.Helper()
	env, id := testEnvelope(), testIdentity
	mutate(env, &id)
	a, err := New(env, id)
	if err != nil {
		t.Fatal(err)
	}
	return a.Fingerprint
}

func TestRiskFlags(t *testing.T) {
	large := json.RawMessage(`{"a":"` + strings.Repeat("x", LargeIOBytes) + `"}`)
	justUnder := json.RawMessage(`{"a":"` + strings.Repeat("x", LargeIOBytes-9) + `"}`)
	cases := []struct {
		typ    string
		params json.RawMessage
		flags  []string
		level  string
	}{
		{"fs.read", nil, []string{}, RiskLevelLow},
		{"mcp.call", nil, []string{}, RiskLevelLow},
		{"payments.refund", nil, []string{}, RiskLevelLow},
		{"process.exec", nil, []string{RiskExec}, RiskLevelHigh},
		{"net.http_request", nil, []string{RiskNet}, RiskLevelMedium},
		{"fs.write", nil, []string{RiskWrite}, RiskLevelMedium},
		{"repo.apply_patch", nil, []string{RiskWrite}, RiskLevelMedium},
		{"secrets.checkout", nil, []string{RiskSecrets}, RiskLevelHigh},
		{"fs.read", large, []string{RiskLargeIO}, RiskLevelMedium},
		{"fs.read", justUnder, []string{}, RiskLevelLow},
		{"process.exec", large, []string{RiskExec, RiskLargeIO}, RiskLevelHigh},
		{"fs.write", large, []string{RiskLargeIO, RiskWrite}, RiskLevelMedium},
	}
	for _, tc := range cases {
		got := ComputeRiskFlags(&Action{ActionType: tc.typ, Params: tc.params})
		if !slices.Equal(got, tc.flags) || got == nil || !slices.IsSorted(got) {
			t.Errorf("ComputeRiskFlags(%s, %d bytes) = %#v, want %v", tc.typ, len(tc.params), got, tc.flags)
		}
		if lvl := RiskLevel(got); lvl != tc.level {
			t.Errorf("RiskLevel(%v) = %s, want %s", got, lvl, tc.level)
		}
	}
	if got := ComputeRiskFlags(nil); got == nil || len(got) != 0 {
		t.Errorf("ComputeRiskFlags(nil) = %#v, want empty", got)
	}
	if len(justUnder) != LargeIOBytes-1 || len(large) <= LargeIOBytes {
		t.Fatalf("bad boundary fixtures: %d, %d", len(justUnder), len(large))
	}
}

func TestRiskLevel(t *testing.T) {
	cases := []struct {
		flags []string
		want  string
	}{
		{nil, RiskLevelLow},
		{[]string{"risk.unknown"}, RiskLevelLow},
		{[]string{RiskNet, RiskWrite}, RiskLevelMedium},
		{[]string{RiskLargeIO, RiskSecrets}, RiskLevelHigh},
		{[]string{RiskWrite, RiskExec}, RiskLevelHigh},
	}
	for _, tc := range cases {
		if got := RiskLevel(tc.flags); got != tc.want {
			t.Errorf("RiskLevel(%v) = %s, want %s", tc.flags, got, tc.want)
		}
	}
}

// TestFingerprintDocument checks the hand-written fingerprint document
// against the generic canonical encoder, with strings that need escaping.
func TestFingerprintDocument(t *testing.T) {
	a := &Action{
		SchemaVersion: "v1", ActionType: "x.y", Resource: "pay://shop/<a&b>",
		Params: json.RawMessage(`{"z":[1.0,"\u2028"],"a":{}}`), Principal: "al\"ice", Agent: "é", Environment: "dev\n",
	}
	doc, err := CanonicalMarshal(map[string]any{
		"normalized_action": map[string]any{
			"schema_version": a.SchemaVersion, "action_type": a.ActionType, "resource": a.Resource, "params": a.Params,
		},
		"principal": a.Principal, "agent": a.Agent, "environment": a.Environment,
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := Fingerprint(a); got != SHA256Hex(doc) {
		t.Errorf("Fingerprint = %s, want sha256 of %s", got, doc)
	}
}

// TestToolDefinitionBinding: a gateway binds an mcp.call to the definition
// it calls; the binding changes the fingerprint (an approval for one
// definition does not cover another), only mcp.call takes it, and a
// decoded envelope cannot carry it.
func TestToolDefinitionBinding(t *testing.T) {
	id := Identity{Principal: "alice", Agent: "bot", Environment: "dev"}
	build := func(typ, resource, fp string) *Action {
		t.Helper()
		a, err := New(NewEnvelope(typ, resource, json.RawMessage(`{"upstream_tool":"refund"}`), "t1").WithToolDefinition(fp), id)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	plain, v1, v2 := build(TypeMCPCall, "mcp://retail/refund", ""), build(TypeMCPCall, "mcp://retail/refund", "sha256:aa"), build(TypeMCPCall, "mcp://retail/refund", "sha256:bb")
	if v1.ToolFingerprint != "sha256:aa" || plain.ToolFingerprint != "" {
		t.Fatalf("bound %q / %q", v1.ToolFingerprint, plain.ToolFingerprint)
	}
	if v1.Fingerprint == v2.Fingerprint || v1.Fingerprint == plain.Fingerprint {
		t.Fatal("the action fingerprint does not depend on the tool definition")
	}
	bound := *plain
	bound.BindToolDefinition("sha256:aa")
	if bound.Fingerprint != v1.Fingerprint {
		t.Fatal("New and BindToolDefinition disagree")
	}
	if a := build("fs.read", "file://workspace/a", "sha256:aa"); a.ToolFingerprint != "" {
		t.Fatalf("a non-mcp.call action took a tool definition: %q", a.ToolFingerprint)
	}
	var env Envelope
	_ = json.Unmarshal([]byte(`{"schema_version":"v1","action_id":"a","action_type":"mcp.call","resource":"mcp://retail/refund","params":{},"trace_id":"t","context":{},"toolFingerprint":"sha256:aa","tool_fingerprint":"sha256:aa"}`), &env)
	if a, err := New(&env, id); err == nil && a.ToolFingerprint != "" {
		t.Fatalf("a decoded envelope named its tool definition: %q", a.ToolFingerprint)
	}
}

package action

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// defaultFields is a valid envelope, member by member, in this order.
var defaultFields = [][2]string{
	{"schema_version", `"v1"`},
	{"action_id", `"act-1"`},
	{"action_type", `"fs.read"`},
	{"resource", `"file://workspace/README.md"`},
	{"params", `{}`},
	{"trace_id", `"trace-1"`},
	{"context", `{}`},
}

// envelopeBody builds a body from defaultFields: set replaces a member's raw
// value ("-" drops the member) and extra raw members are appended.
func envelopeBody(set map[string]string, extra ...string) string {
	var members []string
	for _, f := range defaultFields {
		v := f[1]
		if o, ok := set[f[0]]; ok {
			v = o
		}
		if v != "-" {
			members = append(members, fmt.Sprintf("%q:%s", f[0], v))
		}
	}
	return "{" + strings.Join(append(members, extra...), ",") + "}"
}

func TestDecodeEnvelopeValid(t *testing.T) {
	body := envelopeBody(map[string]string{
		"params":  `{"b": 2, "a": [1.5]}`,
		"context": `{"extensions":{"approval":{"approval_id":"apr_0123"},"transport":{"downstream_transport":"http"}}}`,
	})
	env, err := DecodeEnvelope([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if env.SchemaVersion != "v1" || env.ActionID != "act-1" || env.ActionType != "fs.read" ||
		env.Resource != "file://workspace/README.md" || env.TraceID != "trace-1" {
		t.Errorf("decoded %+v", env)
	}
	if string(env.Params) != `{"b": 2, "a": [1.5]}` {
		t.Errorf("params kept as %s, want the raw bytes", env.Params)
	}
	ext := env.Context.Extensions
	if len(ext) != 2 || string(ext["approval"]) != `{"approval_id":"apr_0123"}` || string(ext["transport"]) != `{"downstream_transport":"http"}` {
		t.Errorf("extensions %v", ext)
	}
}

func TestDecodeEnvelopeAccepts(t *testing.T) {
	id128 := "a" + strings.Repeat("b", 127)
	cases := []struct {
		name string
		set  map[string]string
	}{
		{"empty context", nil},
		{"empty extensions", map[string]string{"context": `{"extensions":{}}`}},
		{"id of 128 characters", map[string]string{"action_id": `"` + id128 + `"`}},
		{"id with every allowed character", map[string]string{"trace_id": `"0aZ._:-9"`}},
		{"three-segment type", map[string]string{"action_type": `"crm.contact.export_v2"`}},
		{"escaped string", map[string]string{"action_id": `"\u0061ct"`}},
		{"params at the limit", map[string]string{"params": `{"k":"` + strings.Repeat("x", MaxParamsBytes-8) + `"}`}},
		{"unicode in params", map[string]string{"params": `{"k":"文件 😀"}`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := DecodeEnvelope([]byte(envelopeBody(tc.set))); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestDecodeEnvelopeErrors(t *testing.T) {
	bigContext := `{"extensions":{"x":"` + strings.Repeat("y", MaxContextBytes) + `"}}`
	cases := []struct {
		name  string
		body  string
		wants []string
	}{
		{"body too large", `{"x":"` + strings.Repeat("a", MaxBodyBytes) + `"}`, []string{"body exceeds 65536 bytes"}},
		{"empty body", ``, []string{"body: empty json"}},
		{"array body", `[]`, []string{"body must be a JSON object"}},
		{"null body", `null`, []string{"body must be a JSON object"}},
		{"syntax error", `{"schema_version":}`, []string{"body: invalid json"}},
		{"invalid utf-8", "{\"schema_version\":\"v\xff\"}", []string{"body: json is not valid utf-8"}},
		{"lone surrogate", envelopeBody(map[string]string{"resource": `"\udc00"`}), []string{"body: json has an invalid unicode escape"}},
		{"trailing data", envelopeBody(nil) + `{}`, []string{"body: trailing data after the json value"}},
		{"duplicate top-level key", envelopeBody(nil, `"params":{}`), []string{"body: duplicate object key"}},
		{"duplicate key inside params", envelopeBody(map[string]string{"params": `{"amount":1,"amount":1000}`}), []string{"body: duplicate object key"}},
		{"duplicate key inside context", envelopeBody(map[string]string{"context": `{"extensions":{},"extensions":{}}`}), []string{"body: duplicate object key"}},
		{"duplicate approval id", envelopeBody(map[string]string{"context": `{"extensions":{"approval":{"approval_id":"a","approval_id":"b"}}}`}), []string{"body: duplicate object key"}},
		{"unknown field", envelopeBody(nil, `"principal":"root"`), []string{`unknown field "principal"`}},
		{"case-variant key", envelopeBody(map[string]string{"action_id": "-"}, `"Action_ID":"a"`), []string{`field "Action_ID" must be spelled "action_id"`, `missing field "action_id"`}},
		{"case-variant duplicate", envelopeBody(nil, `"PARAMS":{}`), []string{`body: duplicate object key: "PARAMS" and "params" differ only in case`}},
		{"missing schema_version", envelopeBody(map[string]string{"schema_version": "-"}), []string{`missing field "schema_version"`}},
		{"missing action_id", envelopeBody(map[string]string{"action_id": "-"}), []string{`missing field "action_id"`}},
		{"missing action_type", envelopeBody(map[string]string{"action_type": "-"}), []string{`missing field "action_type"`}},
		{"missing resource", envelopeBody(map[string]string{"resource": "-"}), []string{`missing field "resource"`}},
		{"missing params", envelopeBody(map[string]string{"params": "-"}), []string{`missing field "params"`}},
		{"missing trace_id", envelopeBody(map[string]string{"trace_id": "-"}), []string{`missing field "trace_id"`}},
		{"missing context", envelopeBody(map[string]string{"context": "-"}), []string{`missing field "context"`}},
		{"number for string", envelopeBody(map[string]string{"action_id": `12`}), []string{"action_id must be a string"}},
		{"null for string", envelopeBody(map[string]string{"schema_version": `null`}), []string{"schema_version must be a string"}},
		{"null context", envelopeBody(map[string]string{"context": `null`}), []string{"context must be a JSON object"}},
		{"array context", envelopeBody(map[string]string{"context": `[]`}), []string{"context must be a JSON object"}},
		{"context too large", envelopeBody(map[string]string{"context": bigContext}), []string{"context exceeds 8192 bytes"}},
		{"unknown context key", envelopeBody(map[string]string{"context": `{"principal":"root"}`}), []string{`context: unknown field "principal"`}},
		{"case-variant context key", envelopeBody(map[string]string{"context": `{"Extensions":{}}`}), []string{`context: field "Extensions" must be spelled "extensions"`}},
		{"null extensions", envelopeBody(map[string]string{"context": `{"extensions":null}`}), []string{"context.extensions must be a JSON object"}},
		{"string extensions", envelopeBody(map[string]string{"context": `{"extensions":"x"}`}), []string{"context.extensions must be a JSON object"}},
		{"wrong schema version", envelopeBody(map[string]string{"schema_version": `"v2"`}), []string{`schema_version must be "v1"`}},
		{"empty action_id", envelopeBody(map[string]string{"action_id": `""`}), []string{"action_id must match " + IDPattern}},
		{"bad trace_id", envelopeBody(map[string]string{"trace_id": `"-t"`}), []string{"trace_id must match " + IDPattern}},
		{"single-segment type", envelopeBody(map[string]string{"action_type": `"fs"`}), []string{"action_type must be dotted lowercase"}},
		{"empty resource", envelopeBody(map[string]string{"resource": `""`}), []string{"resource is required"}},
		{"params too large", envelopeBody(map[string]string{"params": `{"k":"` + strings.Repeat("x", MaxParamsBytes) + `"}`}), []string{"params exceeds 32768 bytes"}},
		{"array params", envelopeBody(map[string]string{"params": `[]`}), []string{"params must be a JSON object"}},
		{"null params", envelopeBody(map[string]string{"params": `null`}), []string{"params must be a JSON object"}},
		{"string params", envelopeBody(map[string]string{"params": `"{}"`}), []string{"params must be a JSON object"}},
		{"approval not an object", envelopeBody(map[string]string{"context": `{"extensions":{"approval":"apr_1"}}`}), []string{"context.extensions.approval: approval must be a JSON object"}},
		{"approval with extra key", envelopeBody(map[string]string{"context": `{"extensions":{"approval":{"approval_id":"apr_1","scope":"all"}}}`}), []string{`context.extensions.approval: unknown field "scope"`}},
		{"approval key misspelled", envelopeBody(map[string]string{"context": `{"extensions":{"Approval":{"approval_id":"apr_1"}}}`}), []string{`context.extensions: key "Approval" must be spelled "approval"`}},
		{"extension keys differ in case", envelopeBody(map[string]string{"context": `{"extensions":{"trace":{},"Trace":{}}}`}), []string{`body: duplicate object key: "Trace" and "trace" differ only in case`}},
		{"extension case variants apart", envelopeBody(map[string]string{"context": `{"extensions":{"trace":{},"a":{},"TRACE":{}}}`}), []string{`body: duplicate object key: "TRACE" and "trace" differ only in case`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env, err := DecodeEnvelope([]byte(tc.body))
			if err == nil {
				t.Fatalf("accepted: %+v", env)
			}
			checkValidationError(t, err, "decode envelope: ", tc.wants)
		})
	}
}

// checkValidationError asserts the error's sentinel, step prefix and every
// expected problem.
func checkValidationError(t *testing.T, err error, prefix string, wants []string) {
	t.Helper()
	msg := err.Error()
	if !errors.Is(err, ErrValidation) || !strings.HasPrefix(msg, prefix) {
		t.Errorf("error %q, want one wrapping ErrValidation and starting %q", msg, prefix)
	}
	for _, w := range wants {
		if !strings.Contains(msg, w) {
			t.Errorf("error %q does not contain %q", msg, w)
		}
	}
}

// TestDecodeEnvelopeJoinsProblems pins the exact report format: every
// problem, in field order, joined by "; ".
func TestDecodeEnvelopeJoinsProblems(t *testing.T) {
	body := envelopeBody(map[string]string{"schema_version": `"v0"`, "action_type": `"Fs.Read"`, "params": `[]`})
	_, err := DecodeEnvelope([]byte(body))
	want := `decode envelope: schema_version must be "v1"; ` +
		`action_type must be dotted lowercase with at least two segments, like "fs.read"; ` +
		`params must be a JSON object: validation error`
	if err == nil || err.Error() != want {
		t.Errorf("error\n%v\nwant\n%s", err, want)
	}
	body = envelopeBody(map[string]string{"action_id": "-", "trace_id": "-"}, `"extra":1`)
	_, err = DecodeEnvelope([]byte(body))
	want = `decode envelope: unknown field "extra"; missing field "action_id"; missing field "trace_id": validation error`
	if err == nil || err.Error() != want {
		t.Errorf("error\n%v\nwant\n%s", err, want)
	}
}

func TestValidID(t *testing.T) {
	cases := []struct {
		id string
		ok bool
	}{
		{"a", true}, {"Z9", true}, {"0", true}, {"a._:-b", true},
		{"a" + strings.Repeat("x", 127), true}, {"a" + strings.Repeat("x", 128), false},
		{"", false}, {"-a", false}, {".a", false}, {"_a", false}, {":a", false},
		{"a b", false}, {"a/b", false}, {"é", false}, {"a\x00", false},
	}
	for _, tc := range cases {
		if got := ValidID(tc.id); got != tc.ok {
			t.Errorf("ValidID(%q) = %v, want %v", tc.id, got, tc.ok)
		}
	}
}

func TestValidActionType(t *testing.T) {
	cases := []struct {
		typ string
		ok  bool
	}{
		{"fs.read", true}, {"a.b", true}, {"net.http_request", true}, {"a1_.b2_.c", true},
		{"", false}, {"fs", false}, {"fs.", false}, {".fs", false}, {"fs..read", false},
		{"Fs.read", false}, {"fs.Read", false}, {"1fs.read", false}, {"fs.1read", false},
		{"fs._read", false}, {"fs.read-x", false}, {"fs read", false},
	}
	for _, tc := range cases {
		if got := validActionType(tc.typ); got != tc.ok {
			t.Errorf("validActionType(%q) = %v, want %v", tc.typ, got, tc.ok)
		}
	}
}

func TestDecodeActionFile(t *testing.T) {
	ident := []string{`"principal":"alice"`, `"agent":"coder"`, `"environment":"dev"`}
	env, id, err := DecodeActionFile([]byte(envelopeBody(nil, ident...)))
	if err != nil {
		t.Fatal(err)
	}
	if env.ActionID != "act-1" || id != (Identity{Principal: "alice", Agent: "coder", Environment: "dev"}) {
		t.Errorf("decoded %+v, %+v", env, id)
	}
	if _, id, err := DecodeActionFile([]byte(envelopeBody(nil, ident[0], `"agent":""`, ident[2]))); err != nil || id.Agent != "" {
		t.Errorf("empty agent: %+v, %v", id, err)
	}
	cases := []struct {
		name  string
		body  string
		wants []string
	}{
		{"missing identity", envelopeBody(nil), []string{`missing field "principal"`, `missing field "agent"`, `missing field "environment"`}},
		{"empty principal", envelopeBody(nil, `"principal":""`, ident[1], ident[2]), []string{"principal is required"}},
		{"empty principal and environment", envelopeBody(nil, `"principal":""`, ident[1], `"environment":""`), []string{"principal is required; environment is required"}},
		{"non-string agent", envelopeBody(nil, ident[0], `"agent":["coder"]`, ident[2]), []string{"agent must be a string"}},
		{"duplicate principal", envelopeBody(nil, append(ident, `"principal":"root"`)...), []string{"body: duplicate object key"}},
		{"case-variant principal", envelopeBody(nil, append(ident, `"Principal":"root"`)...), []string{`body: duplicate object key: "Principal" and "principal" differ only in case`}},
		{"unknown field", envelopeBody(nil, append(ident, `"tenant":"x"`)...), []string{`unknown field "tenant"`}},
		{"envelope rules apply", envelopeBody(map[string]string{"params": `[]`}, ident...), []string{"params must be a JSON object"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := DecodeActionFile([]byte(tc.body))
			if err == nil {
				t.Fatal("accepted")
			}
			checkValidationError(t, err, "decode action file: ", tc.wants)
		})
	}
}

// TestEnvelopeRoundTrip checks that the json tags match the wire names.
func TestEnvelopeRoundTrip(t *testing.T) {
	body := envelopeBody(map[string]string{"context": `{"extensions":{"approval":{"approval_id":"apr_1"}}}`})
	env, err := DecodeEnvelope([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	again, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	if string(again) != body {
		t.Errorf("re-encoded\n%s\nwant\n%s", again, body)
	}
}

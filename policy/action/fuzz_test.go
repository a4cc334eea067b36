package action

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// FuzzNormalizeResource checks the properties a policy relies on: an accepted
// file resource stays under file://workspace/ and holds no segment that any
// system reads as "." or "..", even after one more decoding; and
// normalization is idempotent on its own output.
func FuzzNormalizeResource(f *testing.F) {
	for _, v := range readJSONL[corpusVector](f, "corpus.jsonl") {
		f.Add(v.ActionType, v.Resource)
	}
	for _, v := range readJSONL[bypassVector](f, "bypass_attempts.jsonl") {
		f.Add(v.ActionType, v.Resource)
	}
	f.Fuzz(func(t *testing.T, actionType, resource string) {
		out, err := NormalizeResource(actionType, resource)
		if err != nil {
			return
		}
		if again, err := NormalizeResource(actionType, out); err != nil || again != out {
			t.Fatalf("not idempotent: %q -> %q -> %q, %v", resource, out, again, err)
		}
		if strings.HasPrefix(out, "file:") {
			checkFileResource(t, resource, out)
		}
	})
}

func checkFileResource(t *testing.T, in, out string) {
	t.Helper()
	rest, ok := strings.CutPrefix(out, "file://workspace/")
	if !ok || rest == "" {
		t.Fatalf("%q normalized to %q, outside file://workspace/", in, out)
	}
	if strings.ContainsAny(rest, `\?#`) {
		t.Fatalf("%q normalized to %q, which keeps a raw \\, ? or #", in, out)
	}
	for _, seg := range strings.Split(rest, "/") {
		decoded, err := decodeSegment(seg, "file")
		if seg == "" || err != nil || seg == "." || seg == ".." || isDotSegment(decoded) {
			t.Fatalf("%q normalized to %q with segment %q", in, out, seg)
		}
	}
}

// FuzzCanonicalize checks that canonical JSON is valid JSON and a fixed
// point: canonicalizing it again changes nothing.
func FuzzCanonicalize(f *testing.F) {
	seeds := []string{
		`{"b":1,"a":"x","c":[true,2]}`, `{"x":1.5e3,"y":[-0,0.0]}`, `"<&>\u2028"`, `{"\u0061":1,"a":2}`,
		`{"k":"\ud83d\ude00","é":{}}`, `[[[[]]]]`, `{} {}`, `"\ud800"`, `{"a":{"b":{"c":null}}}`, `123456789012345678901234567890`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		c1, err := Canonicalize(raw)
		if err != nil {
			return
		}
		if !json.Valid(c1) {
			t.Fatalf("canonical form of %q is not valid JSON: %q", raw, c1)
		}
		c2, err := Canonicalize(c1)
		if err != nil || !bytes.Equal(c1, c2) {
			t.Fatalf("not idempotent: %q -> %q -> %q, %v", raw, c1, c2, err)
		}
	})
}

// FuzzDecodeEnvelope checks that decoding never panics, that an accepted
// envelope re-encodes to a body that decodes to the same envelope, and that
// New on it never panics.
func FuzzDecodeEnvelope(f *testing.F) {
	f.Add([]byte(envelopeBody(nil)))
	f.Add([]byte(envelopeBody(map[string]string{"params": `{"b":[1.5,{"c":"<"}],"a":null}`, "context": `{"extensions":{"approval":{"approval_id":"apr_1"}}}`})))
	f.Add([]byte(envelopeBody(map[string]string{"action_type": `"mcp.call"`, "resource": `"mcp://Srv/Tool"`})))
	f.Add([]byte(envelopeBody(nil, `"params":{}`)))
	f.Add([]byte(envelopeBody(map[string]string{"action_id": "-"}, `"Action_ID":"x"`)))
	f.Add([]byte(`{"schema_version":"v1"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		env, err := DecodeEnvelope(body)
		if err != nil {
			return
		}
		again, err := json.Marshal(env)
		if err != nil {
			t.Fatalf("re-encoding %+v: %v", env, err)
		}
		env2, err := DecodeEnvelope(again)
		if err != nil {
			t.Fatalf("re-encoded body %s refused: %v", again, err)
		}
		if !sameEnvelope(t, env, env2) {
			t.Fatalf("round trip changed the envelope:\n%+v\n%+v", env, env2)
		}
		_, _ = New(env, testIdentity)
	})
}

// sameEnvelope compares envelopes with raw JSON compared canonically, since
// re-encoding compacts and escapes it.
func sameEnvelope(t *testing.T, a, b *Envelope) bool {
	t.Helper()
	if a.SchemaVersion != b.SchemaVersion || a.ActionID != b.ActionID || a.ActionType != b.ActionType ||
		a.Resource != b.Resource || a.TraceID != b.TraceID || !sameJSON(t, a.Params, b.Params) {
		return false
	}
	ka, kb := sortedKeys(a.Context.Extensions), sortedKeys(b.Context.Extensions)
	if strings.Join(ka, "\x00") != strings.Join(kb, "\x00") {
		return false
	}
	for _, k := range ka {
		if !sameJSON(t, a.Context.Extensions[k], b.Context.Extensions[k]) {
			return false
		}
	}
	return true
}

func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	ca, err1 := Canonicalize(a)
	cb, err2 := Canonicalize(b)
	if err1 != nil || err2 != nil {
		t.Fatalf("accepted JSON does not canonicalize: %v, %v", err1, err2)
	}
	return bytes.Equal(ca, cb)
}

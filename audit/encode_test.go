package audit

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/caddy-nomos/nomos/policy/action"
)

// encoderCases cover every field and the strings and numbers whose encoding
// differs between writers.
func encoderCases() []*Event {
	full := toolCallEvent()
	full.EventID, full.SchemaVersion = "6f1c0a4e9b2d4c7f8e3a5b1d2c4e6f80", SchemaVersion
	full.Timestamp = time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	full.ApprovalID, full.DurationMS, full.Retryable = "apr-1", 42, true
	full.ResultClassification, full.ResultRedactedSummary = ResultSuccess, "ok <b>&amp;</b>"
	odd := &Event{
		SchemaVersion: SchemaVersion, EventID: "x", EventType: EventActionCompleted, TraceID: "t\u2028\u2029\x00\x1f\"\\/",
		Timestamp:        time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		Principal:        "inv\xffalid utf8 é 😀",
		Obligations:      json.RawMessage(`{ "z": [1, 2.50, -3e2], "a": {"y": null, "b": "\u003c"} }`),
		ExecutorMetadata: map[string]any{"f": 1.5, "big": int64(9007199254740993), "n": json.Number("12"), "s": []string{"a"}, "m": map[string]any{"k": []any{true, nil}}, "st": struct{ A int }{1}},
	}
	return []*Event{full, odd, {SchemaVersion: SchemaVersion, EventID: "e", EventType: EventTraceEnd, TraceID: "t"}}
}

// TestEncoderMatchesEncodingJSON: the stored line is the same JSON value
// as encoding/json's, with keys sorted and the chain fields in place.
func TestEncoderMatchesEncodingJSON(t *testing.T) {
	for _, e := range encoderCases() {
		enc := &encoder{}
		if err := enc.appendEvent(e); err != nil {
			t.Fatal(err)
		}
		want, _ := json.Marshal(e)
		if !sameValue(t, enc.buf, want) {
			t.Errorf("encoder:\n%s\nencoding/json:\n%s", enc.buf, want)
		}
		if got := string(enc.buf[enc.hashAt-len(`"event_hash":"`) : enc.hashAt+1]); got != `"event_hash":""` {
			t.Errorf("hashAt points at %q", got)
		}
		if got := string(enc.buf[enc.prevAt-len(`"prev_event_hash":"`) : enc.prevAt+1]); got != `"prev_event_hash":""` {
			t.Errorf("prevAt points at %q", got)
		}
	}
}

// TestLinkHashIsTheVerifiersHash: the hash computed from the line as it is
// built equals the one Hash recomputes from the stored line, floats or not.
func TestLinkHashIsTheVerifiersHash(t *testing.T) {
	for _, e := range encoderCases() {
		r := &Recorder{}
		r.encoders.New = func() any { return &encoder{rawCache: &r.raws} }
		p, err := r.prepare(e)
		if err != nil {
			t.Fatal(err)
		}
		var scratch []byte
		for _, prev := range []string{"", "ab12"} {
			line, hash, err := link(p, prev, &scratch)
			if err != nil {
				t.Fatal(err)
			}
			if h, err := Hash(line); err != nil || h != hash {
				t.Fatalf("Hash(line) = %q, %v; link said %q\n%s", h, err, hash, line)
			}
			var back Event
			if err := json.Unmarshal(line, &back); err != nil || back.PrevEventHash != prev || back.EventHash != hash {
				t.Fatalf("stored line does not carry its chain fields: %v\n%s", err, line)
			}
			if !p.floats {
				canon, err := action.Canonicalize(line)
				if err != nil || !bytes.Equal(canon, line) {
					t.Fatalf("a line without fractional numbers is not canonical:\n%s\n%s", line, canon)
				}
			}
		}
	}
}

func sameValue(t *testing.T, a, b []byte) bool {
	t.Helper()
	var va, vb any
	da, db := json.NewDecoder(bytes.NewReader(a)), json.NewDecoder(bytes.NewReader(b))
	da.UseNumber()
	db.UseNumber()
	if err := da.Decode(&va); err != nil {
		t.Fatalf("encoder wrote invalid json: %v\n%s", err, a)
	}
	if err := db.Decode(&vb); err != nil {
		t.Fatal(err)
	}
	return reflect.DeepEqual(va, vb)
}

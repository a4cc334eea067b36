package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddy-nomos/nomos/policy/action"
)

// The stored line of an event is its JSON with keys sorted bytewise at every
// level, no white space, and strings escaped as json.Marshal escapes them.
// Numbers stay as written. That is the canonical form of action.Canonicalize
// except for numbers with a fraction or an exponent, which the canonical
// form quotes; an event without such numbers therefore hashes its own line,
// and encoding, canonicalizing and hashing take one pass.

// encoder writes one stored line. floats records whether the line holds a
// number the canonical form would quote.
type encoder struct {
	buf    []byte
	floats bool
	first  bool
	// hashAt and prevAt are the offsets of the (empty) values of the
	// top-level event_hash and prev_event_hash strings.
	hashAt, prevAt int
	keys           []string
	rawCache       *rawCache
}

// appendEvent writes e with both chain fields empty. Keys are listed in
// sorted order by hand: the list is checked against the struct tags in
// TestEncoderMatchesEncodingJSON.
func (w *encoder) appendEvent(e *Event) error {
	w.buf = append(w.buf, '{')
	w.first = true
	w.str("action_fingerprint", e.ActionFingerprint)
	w.str("action_id", e.ActionID)
	w.str("action_type", e.ActionType)
	w.str("agent", e.Agent)
	w.str("approval_id", e.ApprovalID)
	w.str("assurance_level", e.AssuranceLevel)
	w.str("decision", e.Decision)
	if e.DurationMS != 0 {
		w.key("duration_ms")
		w.buf = strconv.AppendInt(w.buf, e.DurationMS, 10)
	}
	w.str("engine_version", e.EngineVersion)
	w.str("environment", e.Environment)
	w.key("event_hash")
	w.buf = append(w.buf, '"')
	w.hashAt = len(w.buf)
	w.buf = append(w.buf, '"')
	w.always("event_id", e.EventID)
	w.always("event_type", e.EventType)
	if len(e.ExecutorMetadata) > 0 {
		w.key("executor_metadata")
		if err := w.value(e.ExecutorMetadata, 0); err != nil {
			return fmt.Errorf("executor_metadata: %w", err)
		}
	}
	w.strings("matched_rule_ids", e.MatchedRuleIDs)
	if len(e.Obligations) > 0 {
		w.key("obligations")
		if err := w.raw(e.Obligations); err != nil {
			return fmt.Errorf("obligations: %w", err)
		}
	}
	w.str("params_hash", e.ParamsHash)
	w.str("params_redacted_summary", e.ParamsRedactedSummary)
	w.str("policy_bundle_hash", e.PolicyBundleHash)
	w.key("prev_event_hash")
	w.buf = append(w.buf, '"')
	w.prevAt = len(w.buf)
	w.buf = append(w.buf, '"')
	w.str("principal", e.Principal)
	w.str("reason", e.Reason)
	w.str("resource_normalized", e.ResourceNormalized)
	w.str("result_classification", e.ResultClassification)
	w.str("result_redacted_summary", e.ResultRedactedSummary)
	if e.Retryable {
		w.key("retryable")
		w.buf = append(w.buf, "true"...)
	}
	w.strings("risk_flags", e.RiskFlags)
	w.str("risk_level", e.RiskLevel)
	w.always("schema_version", e.SchemaVersion)
	w.key("timestamp")
	w.buf = append(w.buf, '"')
	w.buf = e.Timestamp.AppendFormat(w.buf, time.RFC3339Nano)
	w.buf = append(w.buf, '"')
	w.always("trace_id", e.TraceID)
	w.buf = append(w.buf, '}')
	return nil
}

func (w *encoder) key(k string) {
	if !w.first {
		w.buf = append(w.buf, ',')
	}
	w.first = false
	w.buf = action.AppendString(w.buf, k)
	w.buf = append(w.buf, ':')
}

// str writes a field that is omitted when empty.
func (w *encoder) str(k, v string) {
	if v != "" {
		w.always(k, v)
	}
}

func (w *encoder) always(k, v string) {
	w.key(k)
	w.buf = action.AppendString(w.buf, v)
}

func (w *encoder) strings(k string, vs []string) {
	if len(vs) == 0 {
		return
	}
	w.key(k)
	w.buf = append(w.buf, '[')
	for i, v := range vs {
		if i > 0 {
			w.buf = append(w.buf, ',')
		}
		w.buf = action.AppendString(w.buf, v)
	}
	w.buf = append(w.buf, ']')
}

// maxNesting bounds executor_metadata and obligations nesting.
const maxNesting = 64

// value writes one decoded value with sorted keys. Types other than the
// ones JSON decodes to go through encoding/json and back.
func (w *encoder) value(v any, depth int) error {
	if depth > maxNesting {
		return fmt.Errorf("nested more than %d levels", maxNesting)
	}
	switch v := v.(type) {
	case nil:
		w.buf = append(w.buf, "null"...)
	case string:
		w.buf = action.AppendString(w.buf, v)
	case bool:
		w.buf = strconv.AppendBool(w.buf, v)
	case int:
		w.buf = strconv.AppendInt(w.buf, int64(v), 10)
	case int64:
		w.buf = strconv.AppendInt(w.buf, v, 10)
	case int32:
		w.buf = strconv.AppendInt(w.buf, int64(v), 10)
	case uint64:
		w.buf = strconv.AppendUint(w.buf, v, 10)
	case json.Number:
		return w.number(string(v))
	case float64:
		return w.float(v)
	case []string:
		w.buf = append(w.buf, '[')
		for i, s := range v {
			if i > 0 {
				w.buf = append(w.buf, ',')
			}
			w.buf = action.AppendString(w.buf, s)
		}
		w.buf = append(w.buf, ']')
	case []any:
		return w.array(v, depth)
	case map[string]any:
		return w.object(v, depth)
	case json.RawMessage:
		return w.raw(v)
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		return w.raw(b)
	}
	return nil
}

func (w *encoder) array(v []any, depth int) error {
	w.buf = append(w.buf, '[')
	for i, item := range v {
		if i > 0 {
			w.buf = append(w.buf, ',')
		}
		if err := w.value(item, depth+1); err != nil {
			return err
		}
	}
	w.buf = append(w.buf, ']')
	return nil
}

func (w *encoder) object(m map[string]any, depth int) error {
	start := len(w.keys)
	for k := range m {
		w.keys = append(w.keys, k)
	}
	keys := w.keys[start:]
	slices.Sort(keys)
	w.buf = append(w.buf, '{')
	for i, k := range keys {
		if i > 0 {
			w.buf = append(w.buf, ',')
		}
		w.buf = action.AppendString(w.buf, k)
		w.buf = append(w.buf, ':')
		if err := w.value(m[k], depth+1); err != nil {
			return err
		}
	}
	w.buf = append(w.buf, '}')
	w.keys = w.keys[:start]
	return nil
}

func (w *encoder) float(f float64) error {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return fmt.Errorf("unsupported number %v", f)
	}
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	return w.number(string(b))
}

// number writes a JSON number as written, noting the ones the canonical
// form would quote.
func (w *encoder) number(n string) error {
	if !json.Valid([]byte(n)) || n == "" || (n[0] != '-' && (n[0] < '0' || n[0] > '9')) {
		return fmt.Errorf("invalid number %q", n)
	}
	if strings.ContainsAny(n, ".eE") {
		w.floats = true
	}
	w.buf = append(w.buf, n...)
	return nil
}

// raw writes a JSON document in the stored form. Documents seen before
// (obligations repeat per rule) come from the cache.
func (w *encoder) raw(doc []byte) error {
	if w.rawCache != nil {
		if line, floats, ok := w.rawCache.get(doc); ok {
			w.buf = append(w.buf, line...)
			w.floats = w.floats || floats
			return nil
		}
	}
	v, err := decodeValue(doc)
	if err != nil {
		return err
	}
	start, floats := len(w.buf), w.floats
	w.floats = false
	if err := w.value(v, 1); err != nil {
		return err
	}
	if w.rawCache != nil {
		w.rawCache.put(doc, w.buf[start:], w.floats)
	}
	w.floats = w.floats || floats
	return nil
}

// decodeValue parses one JSON value, keeping numbers exact.
func decodeValue(doc []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("trailing data after the json value")
	}
	return v, nil
}

package audit_test

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/caddy-nomos/nomos/audit"
)

// The pinned event_hash doubles as a golden for the canonical JSON: if it
// changes, existing audit files no longer verify.
func ExampleRecorder() {
	stdout := audit.NewFuncSink("stdout", func(line []byte) error {
		fmt.Println(string(line))
		return nil
	})
	clock := func() time.Time { return time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC) }
	rec, err := audit.NewRecorder([]audit.Sink{stdout}, audit.WithClock(clock))
	if err != nil {
		panic(err)
	}
	defer rec.Close()

	err = rec.Record(context.Background(), &audit.Event{
		EventID:               "6f1c0a4e9b2d4c7f8e3a5b1d2c4e6f80",
		EventType:             audit.EventActionDecision,
		TraceID:               "trace-7c2e",
		ActionID:              "act-91b4",
		Principal:             "alice",
		Agent:                 "retail-agent",
		Environment:           "dev",
		ActionType:            "fs.read",
		ResourceNormalized:    "file://workspace/README.md",
		ParamsHash:            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
		ParamsRedactedSummary: `{"resource":"file://workspace/README.md"}`,
		Decision:              "ALLOW",
		Reason:                "allow_by_rule",
		MatchedRuleIDs:        []string{"allow-readme"},
		Obligations:           json.RawMessage(`{"output_max_bytes":65536}`),
		PolicyBundleHash:      "9a0f3c4e5d6b7a8f9e0d1c2b3a4f5e6d7c8b9a0f1e2d3c4b5a6f7e8d9c0b1a2f",
		EngineVersion:         "v0.1.0",
		AssuranceLevel:        "BEST_EFFORT",
		RiskLevel:             "low",
	})
	if err != nil {
		panic(err)
	}
	// Output:
	// {"action_id":"act-91b4","action_type":"fs.read","agent":"retail-agent","assurance_level":"BEST_EFFORT","decision":"ALLOW","engine_version":"v0.1.0","environment":"dev","event_hash":"4f6b655d255f4538e658ae57d6095d1e46bb536d32f11dddf14ba28a7ac11ee6","event_id":"6f1c0a4e9b2d4c7f8e3a5b1d2c4e6f80","event_type":"action.decision","matched_rule_ids":["allow-readme"],"obligations":{"output_max_bytes":65536},"params_hash":"44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","params_redacted_summary":"{\"resource\":\"file://workspace/README.md\"}","policy_bundle_hash":"9a0f3c4e5d6b7a8f9e0d1c2b3a4f5e6d7c8b9a0f1e2d3c4b5a6f7e8d9c0b1a2f","prev_event_hash":"","principal":"alice","reason":"allow_by_rule","resource_normalized":"file://workspace/README.md","risk_level":"low","schema_version":"v1","timestamp":"2026-03-01T12:00:00Z","trace_id":"trace-7c2e"}
}

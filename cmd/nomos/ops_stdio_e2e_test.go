package main

import (
	"strings"
	"testing"
)

// TestLimitsInStdio: nomos mcp stdio runs the same limits as the HTTP
// doors: a rate_limits bucket refuses a built-in tool and a loop breaker
// refuses a relayed upstream tool repeated in the session, each as a tool
// result that says when to retry, each audited.
func TestLimitsInStdio(t *testing.T) {
	cf := strings.Replace(stdioCaddyfile, "\t\tupstream retail {", `		runtime {
			rate_limits {
				principal_action reads {
					action_type fs.read
					burst 2
					refill_per_minute 1
				}
			}
			loop_breakers {
				session {
					max_identical_calls 2
				}
			}
		}
		upstream retail {`, 1)
	r := startStdioConfig(t, cf)
	for i := 0; i < 2; i++ {
		if text, isErr, _ := r.call(t, "nomos_fs_read", map[string]any{"path": "README.md"}); isErr {
			t.Fatalf("read %d: %s", i, text)
		}
	}
	text, isErr, _ := r.call(t, "nomos_fs_read", map[string]any{"path": "README.md"})
	if !isErr || !strings.Contains(text, "RATE_LIMIT_EXCEEDED: retry after ") || !strings.Contains(text, "rule reads (principal_action)") {
		t.Fatalf("third read: %q", text)
	}
	for i := 0; i < 2; i++ {
		if text, isErr, _ := r.call(t, "lookup_order", map[string]any{"order_id": "1001"}); isErr {
			t.Fatalf("lookup %d: %s", i, text)
		}
	}
	text, isErr, _ = r.call(t, "lookup_order", map[string]any{"order_id": "1001"})
	if !isErr || !strings.Contains(text, "LOOP_BREAKER_TRIPPED: the session reached its limit of 2 identical calls") {
		t.Fatalf("third identical lookup: %q", text)
	}
	r.stop(t)
	d := openDB(t, r.auditDB())
	defer d.Close()
	for _, class := range []string{"RATE_LIMIT_EXCEEDED", "LOOP_BREAKER_TRIPPED"} {
		var n int
		err := d.QueryRow(`SELECT count(*) FROM audit_events WHERE event_type = 'action.completed'
			AND json_extract(json, '$.result_classification') = ? AND json_extract(json, '$.retryable') = 1
			AND json_extract(json, '$.executor_metadata.downstream_transport') = 'stdio'`, class).Scan(&n)
		if err != nil || n != 1 {
			t.Errorf("%s audited %d times (%v)", class, n, err)
		}
	}
}

package caddymodule

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-nomos/nomos/audit"
)

// TestStdoutSinkFailsWhenTheLoggerIsOff: with Caddy's log config dropping
// nomos.audit lines (a level above INFO here), the stdout sink's write
// fails, so the event is never reported stored while nothing was written
// (the decision it records is refused); at INFO the line is written.
func TestStdoutSinkFailsWhenTheLoggerIsOff(t *testing.T) {
	for _, level := range []string{"WARN", "INFO"} {
		t.Run(level, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "caddy.log")
			cfg := `{"admin":{"disabled":true},"logging":{"logs":{"default":{"level":"` + level + `",
				"writer":{"output":"file","filename":"` + out + `"},"encoder":{"format":"json"}}}}}`
			if err := caddy.Load([]byte(cfg), true); err != nil {
				t.Fatal(err)
			}
			defer caddy.Stop()
			rec, err := audit.NewRecorder([]audit.Sink{audit.NewFuncSink("stdout", zapAuditWrite)})
			if err != nil {
				t.Fatal(err)
			}
			defer rec.Close()
			err = rec.Record(context.Background(), &audit.Event{EventType: audit.EventActionDecision, TraceID: "t1", Decision: "ALLOW"})
			b, _ := os.ReadFile(out)
			written := strings.Contains(string(b), `"t1"`)
			if level == "WARN" && (err == nil || written) || level == "INFO" && (err != nil || !written) {
				t.Fatalf("level %s: Record err=%v, line written %v", level, err, written)
			}
		})
	}
}

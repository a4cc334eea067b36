package audit

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/caddy-nomos/nomos/internal/redact"
)

// toolCallEvent is a typical action.decision of an MCP tools/call, as the
// service writes it.
func toolCallEvent() *Event {
	return &Event{
		EventType:             EventActionDecision,
		TraceID:               "4bf92f3577b34da6a3ce929d0e0e4736",
		ActionID:              "a1b2c3d4e5f60718293a4b5c6d7e8f90",
		Principal:             "alice@example.com",
		Agent:                 "coding-agent",
		Environment:           "prod",
		ActionType:            "mcp.call",
		ResourceNormalized:    "mcp://github/tools/search_issues",
		ParamsHash:            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
		ActionFingerprint:     "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		ParamsRedactedSummary: `{"arguments":{"query":"is:open label:bug repo:caddy-nomos/nomos","per_page":20},"tool":"search_issues"}`,
		Decision:              "ALLOW",
		Reason:                "allow_by_rule",
		MatchedRuleIDs:        []string{"mcp-github-read"},
		Obligations:           json.RawMessage(`{"output_max_bytes":65536,"redact":true}`),
		PolicyBundleHash:      "9a0f3c4e5d6b7a8f9e0d1c2b3a4f5e6d7c8b9a0f1e2d3c4b5a6f7e8d9c0b1a2f",
		EngineVersion:         "v0.1.0",
		AssuranceLevel:        "BEST_EFFORT",
		RiskLevel:             "low",
		RiskFlags:             []string{"network"},
		ExecutorMetadata:      map[string]any{"upstream": "github", "tool": "search_issues", "transport": "http"},
	}
}

func benchRedactor(b *testing.B) func([]byte) []byte {
	r, err := redact.New(nil)
	if err != nil {
		b.Fatal(err)
	}
	return r.JSON
}

// BenchmarkSeal measures what Record spends on one event before any sink
// sees it (stamp, encode, redact, canonicalize, hash, link), with the
// production redactor. reference is the implementation this replaced
// (encoding/json, redaction through encoding/json tokens, canonicalization
// of a decoded map, a re-decode for the sinks), kept here as the baseline;
// json_marshal is a bare json.Marshal of the same event.
func BenchmarkSeal(b *testing.B) {
	red := benchRedactor(b)
	b.Run("current", func(b *testing.B) {
		r := &Recorder{redact: red, now: time.Now}
		r.encoders.New = func() any { return &encoder{rawCache: &r.raws} }
		var scratch []byte
		tmpl := toolCallEvent()
		b.ReportAllocs()
		for b.Loop() {
			e := *tmpl
			e.EventID, e.Timestamp = "", time.Time{}
			r.stamp(&e)
			p, err := r.prepare(&e)
			if err != nil {
				b.Fatal(err)
			}
			if _, _, err := link(p, "", &scratch); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("reference", func(b *testing.B) {
		r := &Recorder{redact: red, now: time.Now}
		tmpl := toolCallEvent()
		b.ReportAllocs()
		for b.Loop() {
			e := *tmpl
			e.EventID, e.Timestamp = "", time.Time{}
			r.stamp(&e)
			if _, _, err := referenceSeal(&e, red); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json_marshal", func(b *testing.B) {
		tmpl := toolCallEvent()
		b.ReportAllocs()
		for b.Loop() {
			e := *tmpl
			if _, err := json.Marshal(&e); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// referenceSeal is the sealing code before group commit, kept as the
// baseline of BenchmarkSeal.
func referenceSeal(e *Event, red func([]byte) []byte) (*Event, []byte, error) {
	raw, err := json.Marshal(e)
	if err != nil {
		return nil, nil, err
	}
	raw = red(raw)
	hash, err := Hash(raw)
	if err != nil {
		return nil, nil, err
	}
	line, err := withEventHash(raw, hash)
	if err != nil {
		return nil, nil, err
	}
	var sealed Event
	if err := json.Unmarshal(line, &sealed); err != nil {
		return nil, nil, err
	}
	return &sealed, line, nil
}

// BenchmarkRecordSQLite records tools/call events from 32 parallel callers
// through the real Recorder into a real sqlite file (synchronous=FULL).
// group_commit is the Recorder as shipped; one_per_commit caps batches at
// one event, the baseline of one transaction and one fsync per event.
func BenchmarkRecordSQLite(b *testing.B) {
	b.Run("group_commit", func(b *testing.B) { benchRecordSQLite(b, maxBatch) })
	b.Run("one_per_commit", func(b *testing.B) { benchRecordSQLite(b, 1) })
}

func benchRecordSQLite(b *testing.B, batch int) {
	s, err := OpenSQLite(filepath.Join(b.TempDir(), "audit.db"))
	if err != nil {
		b.Fatal(err)
	}
	r, err := NewRecorder([]Sink{s}, WithRedactor(benchRedactor(b)))
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	r.batch = batch
	b.SetParallelism(16)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := r.Record(context.Background(), toolCallEvent()); err != nil {
				b.Fatal(err)
			}
		}
	})
	st := r.Stats()
	b.ReportMetric(float64(st.Events)/float64(max(st.Batches, 1)), "events/commit")
	if st.Dropped != 0 {
		b.Fatalf("%d events dropped", st.Dropped)
	}
}

// BenchmarkCheckpointSign is the cost a checkpoint adds to each commit.
func BenchmarkCheckpointSign(b *testing.B) {
	hk, err := ParseCheckpointKey(CheckpointHMACSHA256, []byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		b.Fatal(err)
	}
	_, sk, err := ed25519.GenerateKey(nil)
	if err != nil {
		b.Fatal(err)
	}
	ek := &CheckpointKey{alg: CheckpointEd25519, id: "bench", priv: sk}
	for _, k := range []*CheckpointKey{hk, ek} {
		b.Run(k.Algorithm(), func(b *testing.B) {
			c := &checkpoint{seq: 12345, eventHash: "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", signedAt: "2026-03-01T12:00:00Z"}
			b.ReportAllocs()
			for b.Loop() {
				k.sign(c)
			}
		})
	}
}

// BenchmarkDecisionCommit is the commit a decision waits for before the
// request goes on: one caller, trace.start and action.decision recorded
// together into a real sqlite file with keyed checkpoints, as nomos_guard
// records them; full and normal are the synchronous modes.
func BenchmarkDecisionCommit(b *testing.B) {
	for _, sync := range []string{SyncFull, SyncNormal} {
		b.Run(sync, func(b *testing.B) {
			key, err := ParseCheckpointKey(CheckpointHMACSHA256, []byte("0123456789abcdef0123456789abcdef"))
			if err != nil {
				b.Fatal(err)
			}
			s, err := OpenSQLite(filepath.Join(b.TempDir(), "audit.db"), WithSynchronous(sync), WithCheckpointKey(key))
			if err != nil {
				b.Fatal(err)
			}
			r, err := NewRecorder([]Sink{s}, WithRedactor(benchRedactor(b)))
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			b.ReportAllocs()
			for b.Loop() {
				start, decision := toolCallEvent(), toolCallEvent()
				start.EventType = EventTraceStart
				if err := r.RecordAll(context.Background(), start, decision); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

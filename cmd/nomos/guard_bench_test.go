package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// The guard benchmark measures the latency nomos_guard adds in front of
// reverse_proxy: the same binary serves a bare reverse_proxy route and a
// guarded one to the same loopback upstream, and rounds against the two
// alternate. It asserts nothing; `make bench-guard` runs it and writes the
// table into docs/benchmarks.md.

const (
	benchRate   = 200 // requests per second
	benchRounds = 3
	benchStart  = "<!-- bench-guard:start -->"
	benchEnd    = "<!-- bench-guard:end -->"
)

const benchCaddyfile = `{
	admin 127.0.0.1:{ADMIN}
	nomos {
		policy default {
			bundle bench.yaml
		}
		identity {
			api_key {env.T_BENCH_KEY} bench
		}
		audit {
			sink {AUDIT}
		}
	}
}

http://127.0.0.1:{PORT} {
	handle /bare/* {
		reverse_proxy {env.T_UPSTREAM}
	}
	handle /guarded/* {
		nomos_guard {
			require_agent false
		}
		reverse_proxy {env.T_UPSTREAM}
	}
}
`

const benchAllowRule = `  - id: allow-bench
    action_type: net.http_request
    resource: "url://127.0.0.1:*/guarded/**"
    decision: ALLOW
`

// benchPolicy is the allow rule plus n-1 rules on other hosts and types,
// the way a real policy grows.
func benchPolicy(n int) string {
	var b strings.Builder
	b.WriteString("version: v1\nrules:\n" + benchAllowRule)
	for i := 1; i < n; i++ {
		switch i % 3 {
		case 0:
			fmt.Fprintf(&b, "  - id: http-%d\n    action_type: net.http_request\n    resource: \"url://host%d.example.com/api/**\"\n    decision: ALLOW\n    params_match:\n      method: {in: [GET, POST]}\n", i, i)
		case 1:
			fmt.Fprintf(&b, "  - id: deny-%d\n    action_type: net.http_request\n    resource: \"url://127.0.0.1:*/admin%d/**\"\n    decision: DENY\n", i, i)
		default:
			fmt.Fprintf(&b, "  - id: refund-%d\n    action_type: payments.refund\n    resource: \"payments://shop%d/**\"\n    decision: ALLOW\n    params_match:\n      amount: {lte: %d}\n", i, i, i)
		}
	}
	return b.String()
}

type benchScenario struct {
	name, audit string
	rules       int
	target      string
}

// benchRound is one measured attack on one route.
type benchRound struct {
	p50, p99 time.Duration
	errors   map[string]int // non-200 answers by status ("0" is a client error)
}

func TestBenchGuardLatency(t *testing.T) {
	if os.Getenv("NOMOS_BENCH_GUARD") == "" {
		t.Skip("set NOMOS_BENCH_GUARD=1 (make bench-guard) to run the guard latency benchmark")
	}
	duration := 5 * time.Second
	if d, err := time.ParseDuration(os.Getenv("NOMOS_BENCH_DURATION")); err == nil && d > 0 {
		duration = d
	}
	scenarios := []benchScenario{
		{"allow-all, stdout audit", "stdout", 1, "≤ 100 µs at p50, ≤ 500 µs at p99"},
		{"1,000 rules, sqlite audit", "sqlite", 1000, "≤ 300 µs at p50"},
	}
	load := loadAverage()
	var rows []string
	for _, sc := range scenarios {
		bare, guarded := runBenchScenario(t, sc, duration)
		rows = append(rows, benchRow(sc, bare, guarded))
	}
	table := benchTable(rows, duration, load)
	t.Log("\n" + table)
	if out := os.Getenv("NOMOS_BENCH_GUARD_OUT"); out != "" {
		if err := spliceBench(out, table); err != nil {
			t.Fatal(err)
		}
	}
}

func runBenchScenario(t *testing.T, sc benchScenario, duration time.Duration) (bare, guarded []benchRound) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"ok":true}` + "\n"))
	}))
	defer up.Close()
	s := startServer(t, strings.Replace(benchCaddyfile, "{AUDIT}", sc.audit, 1),
		map[string]string{"bench.yaml": benchPolicy(sc.rules)},
		"T_BENCH_KEY=bench-key", "T_UPSTREAM="+strings.TrimPrefix(up.URL, "http://"))
	defer s.stop()
	attack(s.base+"/bare/x", time.Second)
	attack(s.base+"/guarded/x", time.Second)
	for i := 0; i < benchRounds; i++ {
		bare = append(bare, attack(s.base+"/bare/x", duration))
		guarded = append(guarded, attack(s.base+"/guarded/x", duration))
	}
	return bare, guarded
}

// attack sends benchRate requests per second for d and summarizes them.
func attack(url string, d time.Duration) benchRound {
	header := http.Header{"Authorization": []string{"Bearer bench-key"}}
	tr := vegeta.NewStaticTargeter(vegeta.Target{Method: http.MethodGet, URL: url, Header: header})
	a := vegeta.NewAttacker(vegeta.Timeout(10 * time.Second))
	var m vegeta.Metrics
	for res := range a.Attack(tr, vegeta.Rate{Freq: benchRate, Per: time.Second}, d, url) {
		m.Add(res)
	}
	m.Close()
	errs := map[string]int{}
	for code, n := range m.StatusCodes {
		if code != "200" {
			errs[code] += n
		}
	}
	return benchRound{p50: m.Latencies.P50, p99: m.Latencies.P99, errors: errs}
}

// medianAdded is the median over rounds of guarded minus bare.
func medianAdded(bare, guarded []benchRound, pick func(benchRound) time.Duration) time.Duration {
	diffs := make([]time.Duration, len(bare))
	for i := range bare {
		diffs[i] = pick(guarded[i]) - pick(bare[i])
	}
	slices.Sort(diffs)
	return diffs[len(diffs)/2]
}

func median(rounds []benchRound, pick func(benchRound) time.Duration) time.Duration {
	vals := make([]time.Duration, len(rounds))
	for i, r := range rounds {
		vals[i] = pick(r)
	}
	slices.Sort(vals)
	return vals[len(vals)/2]
}

func benchRow(sc benchScenario, bare, guarded []benchRound) string {
	p50 := func(r benchRound) time.Duration { return r.p50 }
	p99 := func(r benchRound) time.Duration { return r.p99 }
	errs := map[string]int{}
	for _, r := range append(slices.Clone(bare), guarded...) {
		for code, n := range r.errors {
			errs[code] += n
		}
	}
	return fmt.Sprintf("| %s | %s | %s | **%s** | %s | %s | **%s** | %s | %s |", sc.name,
		us(median(bare, p50)), us(median(guarded, p50)), us(medianAdded(bare, guarded, p50)),
		us(median(bare, p99)), us(median(guarded, p99)), us(medianAdded(bare, guarded, p99)), codes(errs), sc.target)
}

// codes lists non-200 answers as "429×12, 0×1", or "none".
func codes(errs map[string]int) string {
	var out []string
	for code, n := range errs {
		out = append(out, fmt.Sprintf("%s×%d", code, n))
	}
	if len(out) == 0 {
		return "none"
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}

func us(d time.Duration) string { return fmt.Sprintf("%d µs", d.Microseconds()) }

func benchTable(rows []string, d time.Duration, load string) string {
	head := fmt.Sprintf("Recorded %s with `make bench-guard`: %d rps on loopback, %d interleaved rounds of %s per route "+
		"(bare `reverse_proxy`, then `nomos_guard` + `reverse_proxy`, same binary and upstream), after a 1 s warm-up. "+
		"\"Added\" is the median over the rounds of guarded minus bare. Load average (1, 5, 15 min) when it started: %s; "+
		"the machine is %d CPUs shared with other work, so compare the two routes of one run rather than runs.\n\n",
		time.Now().UTC().Format("2006-01-02"), benchRate, benchRounds, d, load, runtime.NumCPU())
	return head + "| scenario | bare p50 | guarded p50 | added p50 | bare p99 | guarded p99 | added p99 | non-200 answers | target |\n" +
		"|---|---:|---:|---:|---:|---:|---:|---:|---|\n" + strings.Join(rows, "\n") + "\n"
}

// loadAverage is the first three fields of /proc/loadavg, or "unknown".
func loadAverage() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(raw)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], ", ")
	}
	return "unknown"
}

// spliceBench replaces the text between the bench-guard markers of path.
func spliceBench(path, table string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	before, rest, ok := strings.Cut(string(raw), benchStart)
	_, after, ok2 := strings.Cut(rest, benchEnd)
	if !ok || !ok2 {
		return fmt.Errorf("%s has no %s … %s markers", path, benchStart, benchEnd)
	}
	return os.WriteFile(path, []byte(before+benchStart+"\n"+table+benchEnd+after), 0o644)
}

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestReplaceSectionKeepsTheRestOfTheDocument(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bench.md")
	if err := os.WriteFile(path, []byte("# Benchmarks\n\nintro\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"first", "second"} {
		if err := replaceSection(path, beginMarker+"\n"+table+"\n"+endMarker); err != nil {
			t.Fatal(err)
		}
	}
	data, _ := os.ReadFile(path)
	doc := string(data)
	if !strings.HasPrefix(doc, "# Benchmarks\n\nintro\n") || strings.Contains(doc, "first") ||
		strings.Count(doc, beginMarker) != 1 || !strings.Contains(doc, "second") {
		t.Fatalf("document after two runs:\n%s", doc)
	}
}

func TestSummaryTakesMediansOverRounds(t *testing.T) {
	round := func(p50 time.Duration, sat float64) sample {
		return sample{rates: []point{{p50: p50, p90: p50, p99: p50, ok: 10, sent: 10}}, sat: point{okPerSecond: sat}}
	}
	s := summarize([]sample{round(3*time.Millisecond, 100), round(1*time.Millisecond, 300), round(2*time.Millisecond, 200)}, 1)
	if s.p50[0] != 2*time.Millisecond || s.sat != 200 || s.ok != 30 || s.sent != 30 {
		t.Fatalf("summary = %+v", s)
	}
}

func TestSummaryOfTwoRoundsIsTheirMean(t *testing.T) {
	round := func(p50 time.Duration, sat float64) sample {
		return sample{rates: []point{{p50: p50, p90: p50, p99: p50}}, sat: point{okPerSecond: sat}}
	}
	s := summarize([]sample{round(4*time.Millisecond, 100), round(2*time.Millisecond, 300)}, 1)
	if s.p50[0] != 3*time.Millisecond || s.p99[0] != 3*time.Millisecond || s.sat != 200 {
		t.Fatalf("summary = %+v", s)
	}
}

func TestFlagsRefuseUnknownConfigurationsAndRates(t *testing.T) {
	for _, args := range [][]string{{"-configs", "A,Z"}, {"-rates", "200,x"}, {"-rates", "0"}, {"-rounds", "0"}} {
		if _, err := parseFlags(args); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
	o, err := parseFlags(nil)
	if err != nil || len(o.configs) != 10 || len(o.rates) != 2 {
		t.Fatalf("defaults: %+v, %v", o, err)
	}
}

func TestCallSucceededReadsToolErrors(t *testing.T) {
	cases := map[string]bool{
		`{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"ok"}]}}`:                true,
		"event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"content\":[]}}\n\n":       true,
		`{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"no"}],"isError":true}}`: false,
		`{"jsonrpc":"2.0","id":7,"error":{"code":-32602,"message":"unknown tool"}}`:                  false,
	}
	for body, want := range cases {
		if got := callSucceeded([]byte(body)); got != want {
			t.Errorf("callSucceeded(%s) = %v", body, got)
		}
	}
}

// What a configuration adds to B is paired round by round: a round where
// the machine slowed both does not count as added latency.
func TestAddedLatencyIsPairedByRound(t *testing.T) {
	round := func(p50, p99 time.Duration) sample {
		return sample{rates: []point{{p50: p50, p90: p50, p99: p99}}}
	}
	base := []sample{round(400*time.Microsecond, time.Millisecond), round(600*time.Microsecond, 3*time.Millisecond), round(450*time.Microsecond, time.Millisecond)}
	own := []sample{round(480*time.Microsecond, 2*time.Millisecond), round(690*time.Microsecond, 3*time.Millisecond), round(560*time.Microsecond, time.Millisecond)}
	var s summary
	s.addOverB(own, base)
	if !s.paired || s.added50 != 90*time.Microsecond || s.added99 != 0 {
		t.Fatalf("added = %v / %v (paired %v), want 90µs / 0", s.added50, s.added99, s.paired)
	}
	var lone summary
	lone.addOverB(own, base[:2])
	if lone.paired {
		t.Fatal("rounds without a B measurement were paired")
	}
}

// cpuBusy reads /proc/stat and gives a share between 0 and 1.
func TestCPUBusyIsAShare(t *testing.T) {
	busy, err := cpuBusy(50 * time.Millisecond)
	if err != nil {
		t.Skipf("no /proc/stat here: %v", err)
	}
	if busy < 0 || busy > 1 {
		t.Fatalf("cpuBusy = %v, want a share in [0, 1]", busy)
	}
}

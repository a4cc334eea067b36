package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strings"
	"time"
)

const (
	beginMarker = "<!-- bench-e2e:begin (written by make bench-e2e) -->"
	endMarker   = "<!-- bench-e2e:end -->"
)

// summary is a configuration's medians over rounds.
type summary struct {
	p50, p90, p99 []time.Duration // per fixed rate
	sat           float64
	ok, sent      int
	// added50 and added99 are what the configuration adds to B at the
	// first rate: the median over rounds of its p50 (p99) minus B's in
	// the same round, so both sides of each difference saw the same
	// machine load. Set only when B was measured in every round.
	added50, added99 time.Duration
	paired           bool
}

// addOverB fills the paired differences against B's rounds.
func (s *summary) addOverB(own, base []sample) {
	if len(own) == 0 || len(own) != len(base) {
		return
	}
	d50 := make([]time.Duration, len(own))
	d99 := make([]time.Duration, len(own))
	for i := range own {
		d50[i] = own[i].rates[0].p50 - base[i].rates[0].p50
		d99[i] = own[i].rates[0].p99 - base[i].rates[0].p99
	}
	s.added50, s.added99, s.paired = median(d50), median(d99), true
}

func summarize(samples []sample, nRates int) summary {
	var s summary
	for i := 0; i < nRates; i++ {
		s.p50 = append(s.p50, medianDur(samples, func(x sample) time.Duration { return x.rates[i].p50 }))
		s.p90 = append(s.p90, medianDur(samples, func(x sample) time.Duration { return x.rates[i].p90 }))
		s.p99 = append(s.p99, medianDur(samples, func(x sample) time.Duration { return x.rates[i].p99 }))
	}
	sats := make([]float64, 0, len(samples))
	for _, x := range samples {
		sats = append(sats, x.sat.okPerSecond)
		for _, p := range x.rates {
			s.ok, s.sent = s.ok+p.ok, s.sent+p.sent
		}
	}
	sort.Float64s(sats)
	s.sat = sats[len(sats)/2]
	if len(sats)%2 == 0 {
		s.sat = (sats[len(sats)/2-1] + sats[len(sats)/2]) / 2
	}
	return s
}

func medianDur(samples []sample, f func(sample) time.Duration) time.Duration {
	v := make([]time.Duration, 0, len(samples))
	for _, x := range samples {
		v = append(v, f(x))
	}
	return median(v)
}

// median sorts v and returns its middle value.
func median(v []time.Duration) time.Duration {
	sort.Slice(v, func(i, j int) bool { return v[i] < v[j] })
	if len(v)%2 == 0 { // the mean of the middle two, not the upper one
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return v[len(v)/2]
}

func describe(o options, eps map[string]*endpoint) string {
	var b strings.Builder
	for _, name := range o.configs {
		c := configByName[name]
		state := ""
		if eps[name] == nil {
			state = " (not measured: the binary lacks " + c.module + ")"
		}
		fmt.Fprintf(&b, "- **%s**: %s%s\n", c.name, c.what, state)
	}
	return b.String()
}

func writeReport(o options, legend, disk string, results map[string][]sample) error {
	sums := map[string]summary{}
	for name, samples := range results {
		s := summarize(samples, len(o.rates))
		s.addOverB(samples, results["B"])
		sums[name] = s
	}
	table := renderTable(o, sums)
	section := strings.Join([]string{beginMarker, machine(o, disk), legend, table, targets(sums), endMarker}, "\n\n")
	fmt.Println(section)
	if o.out == "" {
		return nil
	}
	return replaceSection(o.out, section)
}

func renderTable(o options, sums map[string]summary) string {
	var b strings.Builder
	b.WriteString("| config |")
	for _, r := range o.rates {
		fmt.Fprintf(&b, " p50 @%d | p90 @%d | p99 @%d |", r, r, r)
	}
	b.WriteString(" saturation (ok/s) | p50 @" + fmt.Sprint(o.rates[0]) + " vs B | added p50 @" + fmt.Sprint(o.rates[0]) +
		" | saturation vs B | ok/sent |\n|---|")
	b.WriteString(strings.Repeat("---:|", 3*len(o.rates)+5) + "\n")
	base, hasBase := sums["B"]
	for _, name := range o.configs {
		s, ok := sums[name]
		if !ok {
			continue
		}
		fmt.Fprintf(&b, "| %s |", name)
		for i := range o.rates {
			fmt.Fprintf(&b, " %s | %s | %s |", ms(s.p50[i]), ms(s.p90[i]), ms(s.p99[i]))
		}
		added := "n/a"
		if s.paired {
			added = us(s.added50)
		}
		fmt.Fprintf(&b, " %.0f | %s | %s | %s | %d/%d |\n", s.sat, ratio(hasBase, float64(s.p50[0]), float64(base.p50AtFirst())),
			added, ratio(hasBase, s.sat, base.sat), s.ok, s.sent)
	}
	return b.String()
}

func (s summary) p50AtFirst() time.Duration {
	if len(s.p50) == 0 {
		return 0
	}
	return s.p50[0]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

func ratio(ok bool, v, base float64) string {
	if !ok || base == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f×", v/base)
}

// targets checks the targets at the first fixed rate.
func targets(sums map[string]summary) string {
	b, e, s, f := sums["B"], sums["E"], sums["S"], sums["F"]
	c, g, n, h := sums["C"], sums["G"], sums["N"], sums["H"]
	have := func(x summary) bool { return len(x.p50) > 0 }
	paired := func(x summary) bool { return have(b) && x.paired }
	var lines []string
	add := func(ok bool, name, got string) {
		verdict := "not met"
		if ok {
			verdict = "met"
		}
		lines = append(lines, fmt.Sprintf("- %s: %s (%s)", name, verdict, got))
	}
	if paired(e) {
		add(e.added50 <= 300*time.Microsecond, "E adds ≤ 300 µs at p50 over B", us(e.added50))
		add(e.added99 <= time.Millisecond, "E adds ≤ 1 ms at p99 over B", us(e.added99))
		add(e.sat >= 0.6*b.sat, "E saturation ≥ 0.6× B", fmt.Sprintf("%.2f×", e.sat/b.sat))
	}
	if have(s) {
		add(s.p99[0] <= 5*time.Millisecond, "S p99 ≤ 5 ms", ms(s.p99[0]))
		if have(b) {
			add(s.sat >= 0.5*b.sat, "S saturation ≥ 0.5× B", fmt.Sprintf("%.2f×", s.sat/b.sat))
		}
	}
	if have(n) {
		add(n.p99[0] <= 5*time.Millisecond, "N (S with synchronous normal) p99 ≤ 5 ms", ms(n.p99[0]))
	}
	if paired(c) {
		add(c.added50 <= 100*time.Microsecond, "C (guard, allow-all, stdout) adds ≤ 100 µs at p50 over B", us(c.added50))
		add(c.added99 <= 500*time.Microsecond, "C adds ≤ 500 µs at p99 over B", us(c.added99))
	}
	if paired(g) {
		add(g.added50 <= 300*time.Microsecond, "G (guard, 1,000 rules, sqlite) adds ≤ 300 µs at p50 over B", us(g.added50))
	}
	if paired(h) {
		add(h.added50 <= 300*time.Microsecond, "H (G with synchronous normal; not a target of the issue) adds ≤ 300 µs at p50 over B", us(h.added50))
	}
	if have(e) && have(f) {
		add(f.p50[0]-e.p50[0] <= 300*time.Microsecond, "F p50 within 300 µs of E", us(f.p50[0]-e.p50[0]))
	}
	return "Targets (at the first rate):\n\n" + strings.Join(lines, "\n")
}

func us(d time.Duration) string {
	return fmt.Sprintf("%+.0f µs", float64(d)/float64(time.Microsecond))
}

func machine(o options, disk string) string {
	model := "unknown CPU"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(l, "model name") {
				model = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	commit, _ := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	return fmt.Sprintf("Recorded %s on %s, %d CPUs, %s, commit %s. Open-loop load from vegeta's library on loopback, "+
		"`tools/call` of the everything-server's `test_simple_text` over %d sessions per configuration; "+
		"%d interleaved rounds of %s per rate and %s of saturation with %d workers, the machine let settle (under 10%% CPU busy) after each saturation point; medians over rounds; "+
		"latencies of successful calls only; \"added\" is the median over rounds of the configuration's p50 minus B's in the same round. %s",
		time.Now().UTC().Format("2006-01-02"), model, runtime.NumCPU(), runtime.Version(), strings.TrimSpace(string(commit)),
		o.sessions, o.rounds, o.duration, o.satLength, o.satWorkers, disk)
}

// replaceSection puts section between the markers in path, or appends it.
func replaceSection(path, section string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	doc := string(data)
	i, j := strings.Index(doc, beginMarker), strings.Index(doc, endMarker)
	if i >= 0 && j > i {
		doc = doc[:i] + section + doc[j+len(endMarker):]
	} else {
		doc = strings.TrimRight(doc, "\n") + "\n\n## End to end: a governed MCP call\n\n" + section + "\n"
	}
	return os.WriteFile(path, []byte(doc), 0o644)
}

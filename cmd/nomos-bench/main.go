// Command nomos-bench measures a governed MCP tools/call end to end on
// loopback: the built nomos binary, a real upstream (the Go MCP SDK's
// conformance everything-server), real audit sinks, and open-loop load from
// vegeta's library. Every configuration runs in one interleaved run, so the
// ratios against bare reverse_proxy (B) compare numbers taken under the
// same machine conditions. It asserts nothing; `make bench-e2e` runs it and
// writes the table into docs/benchmarks.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type options struct {
	nomos      string
	everything string
	configs    []string
	rates      []int
	duration   time.Duration
	satWorkers int
	satLength  time.Duration
	rounds     int
	sessions   int
	rules      int
	out        string
	keep       bool
	profile    string
}

func main() {
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "nomos-bench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "nomos-bench:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (options, error) {
	fs := flag.NewFlagSet("nomos-bench", flag.ContinueOnError)
	var o options
	var configs, rates string
	fs.StringVar(&o.nomos, "nomos", "bin/nomos", "the nomos binary under test")
	fs.StringVar(&o.everything, "everything", "", "the everything-server binary (built from the Go MCP SDK when empty)")
	fs.StringVar(&configs, "configs", "A,B,C,G,H,D,E,S,N,F", "configurations to measure, in interleaving order")
	fs.StringVar(&rates, "rates", "200,400", "fixed request rates (requests/s) for the latency points")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "length of each fixed-rate point")
	fs.IntVar(&o.satWorkers, "sat-workers", 32, "concurrent workers for the saturation point")
	fs.DurationVar(&o.satLength, "sat-duration", 5*time.Second, "length of each saturation point")
	fs.IntVar(&o.rounds, "rounds", 2, "interleaved rounds; the report takes the median over rounds")
	fs.IntVar(&o.sessions, "sessions", 64, "MCP sessions per configuration, used round robin")
	fs.IntVar(&o.rules, "rules", 1000, "rules in configuration D's policy")
	fs.StringVar(&o.out, "out", "", "markdown file whose bench-e2e section is replaced with the table (stdout only when empty)")
	fs.BoolVar(&o.keep, "keep", false, "keep the working directory (configs, logs, audit files)")
	fs.StringVar(&o.profile, "profile", "", "directory for a CPU profile of each nomos configuration, taken from its admin endpoint during its first fixed-rate point of round 1")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	o.configs = strings.Split(configs, ",")
	for _, r := range strings.Split(rates, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(r))
		if err != nil || n <= 0 {
			return o, fmt.Errorf("-rates: %q is not a positive integer", r)
		}
		o.rates = append(o.rates, n)
	}
	for _, c := range o.configs {
		if _, ok := configByName[c]; !ok {
			return o, fmt.Errorf("-configs: unknown configuration %q", c)
		}
	}
	if o.rounds < 1 || o.sessions < 1 || o.satWorkers < 1 {
		return o, fmt.Errorf("-rounds, -sessions and -sat-workers must be at least 1")
	}
	return o, nil
}

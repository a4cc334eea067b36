package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// sample is one configuration's measurements in one round: a point per
// fixed rate, then the saturation point.
type sample struct {
	rates []point
	sat   point
}

func run(ctx context.Context, o options) error {
	dir, err := os.MkdirTemp("", "nomos-bench-")
	if err != nil {
		return err
	}
	e := &bench{o: o, dir: dir}
	defer func() {
		e.stopAll()
		if o.keep {
			fmt.Fprintln(os.Stderr, "kept", dir)
		} else {
			os.RemoveAll(dir)
		}
	}()
	eps, err := e.setUp(ctx)
	if err != nil {
		return err
	}
	disk := diskSync(dir)
	settle()
	results := map[string][]sample{}
	for round := 1; round <= o.rounds; round++ {
		for _, name := range o.configs {
			if eps[name] == nil || ctx.Err() != nil {
				continue
			}
			prof := ""
			if round == 1 && o.profile != "" {
				prof = filepath.Join(o.profile, name+".pprof")
			}
			s := measure(eps[name], o, prof)
			fmt.Fprintf(os.Stderr, "round %d %s: %s\n", round, name, s)
			results[name] = append(results[name], s)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return writeReport(o, describe(o, eps), disk, results)
}

// setUp starts the upstream and every configuration, and opens the
// sessions each will be measured on. A configuration whose module the
// binary lacks is reported as not measured.
func (e *bench) setUp(ctx context.Context) (map[string]*endpoint, error) {
	if err := e.buildEverything(); err != nil {
		return nil, err
	}
	if err := e.writePolicies(e.o.rules); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	e.upstreamAddr = fmt.Sprintf("127.0.0.1:%d", port)
	if err := e.start(ctx, "everything.log", e.upstreamAddr, e.dir, nil, e.everything, "-http", e.upstreamAddr); err != nil {
		return nil, err
	}
	eps := map[string]*endpoint{}
	for _, name := range e.o.configs {
		ep, err := e.setUpOne(ctx, configByName[name])
		if err != nil {
			return nil, fmt.Errorf("configuration %s: %w", name, err)
		}
		eps[name] = ep
	}
	return eps, nil
}

func (e *bench) setUpOne(ctx context.Context, c config) (*endpoint, error) {
	if c.caddyfile == nil {
		return openSessions("http://"+e.upstreamAddr+"/mcp", false, e.o.sessions)
	}
	if c.module != "" && !e.hasModule(c.module) {
		fmt.Fprintf(os.Stderr, "configuration %s skipped: the binary has no %s\n", c.name, c.module)
		return nil, nil
	}
	url, admin, err := e.startNomos(ctx, c)
	if err != nil {
		return nil, err
	}
	ep, err := openSessions(url, c.auth, e.o.sessions)
	if ep != nil {
		ep.admin = admin
	}
	return ep, err
}

// measure runs the fixed-rate points, then the saturation point. With a
// profile path, a CPU profile covers most of the first fixed-rate point.
func measure(ep *endpoint, o options, profile string) sample {
	var s sample
	for i, r := range o.rates {
		var done chan struct{}
		if i == 0 && profile != "" && ep.admin != "" {
			done = make(chan struct{})
			go func() { defer close(done); cpuProfile(ep.admin, o.duration-time.Second, profile) }()
		}
		s.rates = append(s.rates, attack(ep, r, 0, o.duration))
		if done != nil {
			<-done
		}
	}
	s.sat = attack(ep, 0, o.satWorkers, o.satLength)
	settle()
	return s
}

// settle waits, after a saturation point, until the machine is quiet
// again: every configuration runs for the whole run, and the one just
// saturated may still be working off its backlog (completions queued
// after the response, WAL checkpoints). Measuring the next configuration
// meanwhile would charge it for that work. Quiet is less than 10% of the
// CPUs busy over a quarter of a second; settle gives up after 15 s and
// says so.
func settle() {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		busy, err := cpuBusy(250 * time.Millisecond)
		if err != nil || busy < 0.10 {
			return
		}
	}
	fmt.Fprintln(os.Stderr, "settle: the machine was still busy after 15s; measuring anyway")
}

// cpuBusy is the share of all CPUs' time spent working (not idle, not
// waiting for I/O, not stolen by the hypervisor) over d, from /proc/stat.
func cpuBusy(d time.Duration) (float64, error) {
	read := func() (busy, total uint64, err error) {
		b, err := os.ReadFile("/proc/stat")
		if err != nil {
			return 0, 0, err
		}
		line, _, _ := strings.Cut(string(b), "\n")
		f := strings.Fields(line)
		if len(f) < 9 || f[0] != "cpu" {
			return 0, 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
		}
		for i, v := range f[1:9] {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return 0, 0, err
			}
			total += n
			switch i {
			case 3, 4, 7: // idle, iowait, steal
			default:
				busy += n
			}
		}
		return busy, total, nil
	}
	b0, t0, err := read()
	if err != nil {
		return 0, err
	}
	time.Sleep(d)
	b1, t1, err := read()
	if err != nil || t1 == t0 {
		return 0, err
	}
	return float64(b1-b0) / float64(t1-t0), nil
}

func (s sample) String() string {
	var b strings.Builder
	for _, p := range s.rates {
		fmt.Fprintf(&b, "[%d/%d ok p50=%v p99=%v] ", p.ok, p.sent, p.p50, p.p99)
	}
	fmt.Fprintf(&b, "sat=%.0f ok/s", s.sat.okPerSecond)
	if e := firstError(s); e != "" {
		fmt.Fprintf(&b, " first error: %s", e)
	}
	return b.String()
}

func firstError(s sample) string {
	for _, p := range append(s.rates, s.sat) {
		if p.firstError != "" {
			return p.firstError
		}
	}
	return ""
}

func splitLines(s string) []string {
	return strings.Split(strings.TrimSpace(s), "\n")
}

// cpuProfile saves a CPU profile of length d from a nomos admin endpoint
// (Caddy serves net/http/pprof there). A failure is reported, not fatal.
func cpuProfile(admin string, d time.Duration, path string) {
	secs := max(1, int(d.Seconds()))
	resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", admin, secs))
	if err == nil {
		defer resp.Body.Close()
		var f *os.File
		if f, err = os.Create(path); err == nil {
			_, err = io.Copy(f, resp.Body)
			f.Close()
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "profile:", err)
	}
}

// diskSync measures what one durable commit waits for on this disk: an
// fsync after a 4 KiB append in the run's directory (where the sqlite
// audit files live), 200 times, 2 ms apart as under a fixed rate. It
// explains the sqlite configurations; nothing is asserted.
func diskSync(dir string) string {
	f, err := os.CreateTemp(dir, "fsync-probe-")
	if err != nil {
		return "(fsync probe failed: " + err.Error() + ")"
	}
	defer os.Remove(f.Name())
	defer f.Close()
	page := make([]byte, 4096)
	var ds []time.Duration
	for i := 0; i < 200; i++ {
		if _, err := f.Write(page); err != nil {
			return "(fsync probe failed: " + err.Error() + ")"
		}
		start := time.Now()
		if err := f.Sync(); err != nil {
			return "(fsync probe failed: " + err.Error() + ")"
		}
		ds = append(ds, time.Since(start))
		time.Sleep(2 * time.Millisecond)
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return fmt.Sprintf("One fsync after a 4 KiB append on the disk under test took %s at p50 and %s at p99 (200 samples, before the rounds).",
		micros(ds[len(ds)/2]), micros(ds[len(ds)*99/100]))
}

func micros(d time.Duration) string {
	return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
}

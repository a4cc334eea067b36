package loopguard

import "time"

// tracker counts one scope's calls in its current window.
type tracker struct {
	start     time.Time
	touched   time.Time
	calls     int
	writes    int
	tools     map[string]bool
	identical map[string]int
}

// roll starts a new window when the current one is over.
func (t *tracker) roll(now time.Time, window time.Duration) {
	t.touched = now
	if t.tools != nil && now.Sub(t.start) < window {
		return
	}
	t.start, t.calls, t.writes = now, 0, 0
	t.tools, t.identical = map[string]bool{}, map[string]int{}
}

// check reports the first cap the call would exceed. A window remembers
// at most maxKeysPerWindow tools and distinct calls; past that a call it
// cannot count trips the cap that needs the count, never passes uncounted
// (4,096 junk calls would otherwise switch max_identical_calls off).
func (t *tracker) check(l Limits, k callKeys, now time.Time, window time.Duration) Verdict {
	limit, most := "", 0
	seen, tracked := t.identical[k.identical]
	switch {
	case l.Calls > 0 && t.calls+1 > l.Calls:
		limit, most = LimitCalls, l.Calls
	case k.write && l.WriteCalls > 0 && t.writes+1 > l.WriteCalls:
		limit, most = LimitWriteCalls, l.WriteCalls
	case l.DistinctTools > 0 && !t.tools[k.tool] && (len(t.tools)+1 > l.DistinctTools || len(t.tools) >= maxKeysPerWindow):
		limit, most = LimitDistinctTools, l.DistinctTools
	case l.IdenticalCalls > 0 && (seen+1 > l.IdenticalCalls || !tracked && len(t.identical) >= maxKeysPerWindow):
		limit, most = LimitIdenticalCalls, l.IdenticalCalls
	default:
		return Verdict{}
	}
	return Verdict{Tripped: true, Limit: limit, Max: most, RetryAfter: t.start.Add(window).Sub(now), Budget: t.budget(l, k)}
}

func (t *tracker) add(k callKeys) {
	t.calls++
	if k.write {
		t.writes++
	}
	if len(t.tools) < maxKeysPerWindow {
		t.tools[k.tool] = true
	}
	if _, seen := t.identical[k.identical]; seen || len(t.identical) < maxKeysPerWindow {
		t.identical[k.identical]++
	}
}

// budget is what is left of each capped dimension; identical_calls is the
// budget of this exact call.
func (t *tracker) budget(l Limits, k callKeys) map[string]int {
	out := map[string]int{}
	put := func(name string, most, used int) {
		if most > 0 {
			out[name] = max(0, most-used)
		}
	}
	put(LimitCalls, l.Calls, t.calls)
	put(LimitWriteCalls, l.WriteCalls, t.writes)
	put(LimitDistinctTools, l.DistinctTools, len(t.tools))
	put(LimitIdenticalCalls, l.IdenticalCalls, t.identical[k.identical])
	return out
}

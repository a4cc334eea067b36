package policy

import (
	"maps"
	"slices"

	"github.com/caddy-nomos/nomos/policy/action"
)

// Engine is a compiled, immutable set of rules from one or more bundles.
type Engine struct {
	hash        string
	inputs      []BundleInput
	sources     []string
	environment string
	rules       []Rule         // load order, with provenance
	compiled    []compiledRule // sorted by id
	ids         []string       // ids[i] == compiled[i].id
	byType      map[string]*typeIndex
	anyType     *typeIndex
	noIDs       []string // the empty, non-nil id list of deny_by_default
	falseVal    bool     // target of the merged http_redirects=false pointer
}

// Hash is the policy bundle hash: the bundle's own hash for one bundle, the
// merge hash for several.
func (e *Engine) Hash() string { return e.hash }

// Inputs describes the loaded bundles in load order.
func (e *Engine) Inputs() []BundleInput { return append([]BundleInput(nil), e.inputs...) }

// Sources lists the bundles as "path#hash" in load order.
func (e *Engine) Sources() []string { return append([]string(nil), e.sources...) }

// Rules returns the rules in load order, each with its Source provenance.
// The rules share their slices and maps with the engine's copy; the
// compiled rules do not, so changing them cannot change a decision.
func (e *Engine) Rules() []Rule { return append([]Rule(nil), e.rules...) }

// ParamsPaths are the params_match paths of the rules with these ids,
// sorted: the params a decision by those rules turned on.
func (e *Engine) ParamsPaths(ruleIDs []string) []string {
	var out []string
	for i := range e.rules {
		if slices.Contains(ruleIDs, e.rules[i].ID) {
			out = append(out, slices.Collect(maps.Keys(e.rules[i].ParamsMatch))...)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// evalState is the per-evaluation scratch space. It lives on the stack: the
// fixed buffers hold the usual handful of matches without allocating. No
// slice of a buffer is ever stored back into the state, because escape
// analysis would then move the whole state to the heap.
type evalState struct {
	a         *action.Action
	risk      uint32
	matched   idxList // compiled indexes of matching rules, sorted
	errs      idxList // compiled indexes of rules that failed, sorted
	counts    [numClasses]int
	argv      spanList
	argvDone  bool
	argvFound bool
	argvErr   error
	folds     foldCache
}

func (st *evalState) init(a *action.Action) {
	st.a = a
	for _, f := range a.RiskFlags {
		st.risk |= riskBit(f)
	}
}

// idxList is a sorted list of rule indexes in a fixed buffer, spilling to
// the heap only past its size.
type idxList struct {
	n     int
	buf   [16]int32
	spill []int32
}

// insert keeps the list sorted; candidates arrive as a few sorted runs, so
// this is a short shift, not a sort.
func (l *idxList) insert(v int32) {
	if l.spill == nil && l.n < len(l.buf) {
		i := l.n
		for i > 0 && l.buf[i-1] > v {
			l.buf[i] = l.buf[i-1]
			i--
		}
		l.buf[i] = v
		l.n++
		return
	}
	if l.spill == nil {
		l.spill = append(make([]int32, 0, 2*len(l.buf)), l.buf[:l.n]...)
	}
	l.spill = insertSorted(l.spill, v)
}

func (l *idxList) items() []int32 {
	if l.spill != nil {
		return l.spill
	}
	return l.buf[:l.n]
}

func insertSorted(s []int32, v int32) []int32 {
	s = append(s, v)
	i := len(s) - 1
	for i > 0 && s[i-1] > v {
		s[i] = s[i-1]
		i--
	}
	s[i] = v
	return s
}

// spanList holds the argv token spans, like idxList.
type spanList struct {
	n     int
	buf   [32]span
	spill []span
}

func (l *spanList) add(sp span) {
	if l.spill == nil && l.n < len(l.buf) {
		l.buf[l.n] = sp
		l.n++
		return
	}
	if l.spill == nil {
		l.spill = append(make([]span, 0, 2*len(l.buf)), l.buf[:l.n]...)
	}
	l.spill = append(l.spill, sp)
}

func (l *spanList) items() []span {
	if l.spill != nil {
		return l.spill
	}
	return l.buf[:l.n]
}

package policy

import "github.com/caddy-nomos/nomos/policy/action"

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
func (e *Engine) Rules() []Rule { return append([]Rule(nil), e.rules...) }

// evalState is the per-evaluation scratch space. It lives on the stack: the
// fixed buffers hold the usual handful of matches without allocating.
type evalState struct {
	a         *action.Action
	risk      uint32
	matched   []int32 // sorted compiled indexes of matching rules
	errs      []int32 // sorted compiled indexes of rules that failed
	counts    [numClasses]int
	argv      []span
	argvDone  bool
	argvFound bool
	argvErr   error
	matchBuf  [16]int32
	errBuf    [4]int32
	argvBuf   [32]span
}

func (st *evalState) init(a *action.Action) {
	st.a = a
	st.matched = st.matchBuf[:0]
	st.errs = st.errBuf[:0]
	st.argv = st.argvBuf[:0]
	for _, f := range a.RiskFlags {
		st.risk |= riskBit(f)
	}
}

// insertSorted keeps s sorted; candidates arrive as a few sorted runs, so
// this is a short shift, not a sort.
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

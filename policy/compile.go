package policy

import (
	"sort"
	"strings"
)

// Compilation turns the merged rules into an indexed evaluator: rules sorted
// by id (so matches come out sorted), grouped by action type and then by the
// literal prefix of their resource glob, with every glob, set and matcher
// precompiled.

type decisionClass uint8

const (
	classAllow decisionClass = iota
	classApproval
	classDeny
	numClasses
)

func classOf(decision string) decisionClass {
	switch decision {
	case Deny:
		return classDeny
	case RequireApproval:
		return classApproval
	}
	return classAllow
}

type compiledRule struct {
	id         string
	rule       *Rule
	class      decisionClass
	principals strSet
	agents     strSet
	envs       strSet
	tools      strSet // tool_fingerprints; any when the rule lists none
	risk       uint32
	glob       resourceGlob
	argv       []argvPattern // nil without exec_match
	params     []paramCond   // sorted by path
	legacyExec bool          // carries the exec_allowlist obligation
	ob         Obligations   // normalized: sorted lists, derived exec_constraints
}

// strSet is a principal, agent or environment list. Lists are short, so a
// linear scan beats hashing; long lists get a map.
type strSet struct {
	any  bool
	vals []string
	set  map[string]struct{}
}

const strSetMapThreshold = 16

func newStrSet(vals []string) strSet {
	s := strSet{any: len(vals) == 0, vals: sortedUnique(vals)}
	for _, v := range vals {
		s.any = s.any || v == "*"
	}
	if len(s.vals) > strSetMapThreshold {
		s.set = make(map[string]struct{}, len(s.vals))
		for _, v := range s.vals {
			s.set[v] = struct{}{}
		}
	}
	return s
}

// toolMatches applies tool_fingerprints to the fingerprint of the tool
// definition an action calls. An action without one (an envelope sent to
// the HTTP API, a definition that cannot be fingerprinted, a tool the
// guard's session was not shown) never satisfies an ALLOW rule's list and
// always satisfies a DENY or REQUIRE_APPROVAL rule's: a definition Nomos
// cannot name might be the one the rule names, and what Nomos cannot
// verify never loosens a decision.
func (c *compiledRule) toolMatches(fingerprint string) bool {
	if fingerprint == "" {
		return c.tools.any || c.class != classAllow
	}
	return c.tools.has(fingerprint)
}

func (s *strSet) has(v string) bool {
	if s.any {
		return true
	}
	if s.set != nil {
		_, ok := s.set[v]
		return ok
	}
	for _, x := range s.vals {
		if x == v {
			return true
		}
	}
	return false
}

func compileRule(r *Rule) (compiledRule, error) {
	c := compiledRule{
		id: r.ID, rule: r, class: classOf(r.Decision),
		principals: newStrSet(r.Principals), agents: newStrSet(r.Agents), envs: newStrSet(r.Environments),
		tools: newStrSet(r.ToolFingerprints),
	}
	for _, f := range r.RiskFlags {
		c.risk |= riskBit(f)
	}
	var err error
	if c.glob, err = compileGlob(r.Resource); err != nil {
		return c, err
	}
	if r.ExecMatch != nil {
		for _, p := range r.ExecMatch.ArgvPatterns {
			c.argv = append(c.argv, compileArgvPattern(p, c.class == classDeny))
		}
	}
	if c.params, err = compileParams(r.ParamsMatch); err != nil {
		return c, err
	}
	c.ob = normalizeObligations(r)
	c.legacyExec = c.ob.ExecAllowlist != nil
	return c, nil
}

// compileParams orders conditions by path so evaluation and explanations
// never depend on map order.
func compileParams(pm map[string]Matcher) ([]paramCond, error) {
	var out []paramCond
	for _, key := range sortedKeys(pm) {
		c, err := compileParamCond(key, pm[key])
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// normalizeObligations sorts and deduplicates the lists so merges are
// linear and equal inputs alias, and derives exec_constraints. Everything is
// copied, so nothing a caller does to Rules() reaches the compiled rules.
func normalizeObligations(r *Rule) Obligations {
	var o Obligations
	if r.Obligations != nil {
		o = *r.Obligations
		o.NetAllowlist = sortedUnique(o.NetAllowlist)
		o.ExecWritePaths = sortedUnique(o.ExecWritePaths)
		o.Redact = sortedUnique(o.Redact)
		o.ExecAllowlist = sortedUniqueLists(cloneLists(o.ExecAllowlist))
		o.HTTPRedirects = clonePtr(o.HTTPRedirects)
		o.HTTPRedirectHopLimit = clonePtr(o.HTTPRedirectHopLimit)
		o.OutputMaxBytes = clonePtr(o.OutputMaxBytes)
		o.OutputMaxLines = clonePtr(o.OutputMaxLines)
	}
	if r.ExecMatch != nil {
		o.ExecConstraints = &ExecMatch{ArgvPatterns: sortedUniqueLists(cloneLists(r.ExecMatch.ArgvPatterns))}
	}
	return o
}

func cloneLists(in [][]string) [][]string {
	if in == nil {
		return nil
	}
	out := make([][]string, len(in))
	for i, l := range in {
		out[i] = append([]string{}, l...)
	}
	return out
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

func sortedUnique(in []string) []string {
	if in == nil {
		return nil
	}
	out := append([]string{}, in...)
	sort.Strings(out)
	n := 0
	for i, s := range out {
		if i == 0 || s != out[n-1] {
			out[n] = s
			n++
		}
	}
	return out[:n]
}

func sortedUniqueLists(in [][]string) [][]string {
	if in == nil {
		return nil
	}
	out := append([][]string{}, in...)
	sort.Slice(out, func(i, j int) bool { return compareTokens(out[i], out[j]) < 0 })
	n := 0
	for i, l := range out {
		if i == 0 || compareTokens(l, out[n-1]) != 0 {
			out[n] = l
			n++
		}
	}
	return out[:n]
}

func compareTokens(a, b []string) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if c := strings.Compare(a[i], b[i]); c != 0 {
			return c
		}
	}
	return cmpInt(len(a), len(b))
}

// typeIndex groups the rules of one action type by anchor, the literal
// segment prefix of their glob. depths has bit d set when some anchor has d
// segments, so evaluation only looks up prefixes that can exist.
//
// Globs with a weak anchor (shorter than scheme://host) but a literal last
// segment, like "**/.env" or "mcp://*/refund_order", are indexed by that
// last segment instead: the resource's last segment must equal it.
type typeIndex struct {
	byAnchor map[string][]int32
	depths   uint64
	byLast   map[string][]int32
}

const (
	maxAnchorDepth = 63
	strongAnchor   = 3 // "scheme:", "", "host"
)

func (t *typeIndex) add(g *resourceGlob, idx int32) {
	if last, ok := g.lastLiteral(); ok && g.depth < strongAnchor {
		t.byLast[last] = append(t.byLast[last], idx)
		return
	}
	anchor, depth := g.anchor, g.depth
	if depth > maxAnchorDepth {
		anchor, depth = truncateSegments(anchor, maxAnchorDepth), maxAnchorDepth
	}
	t.byAnchor[anchor] = append(t.byAnchor[anchor], idx)
	t.depths |= 1 << depth
}

func truncateSegments(s string, n int) string {
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			if n--; n == 0 {
				return s[:i]
			}
		}
	}
	return s
}

func newTypeIndex() *typeIndex {
	return &typeIndex{byAnchor: make(map[string][]int32), byLast: make(map[string][]int32)}
}

// buildIndex fills the per-type indexes. Rules are added in id order, so
// every candidate list is sorted.
func (e *Engine) buildIndex() {
	e.byType = make(map[string]*typeIndex)
	e.anyType = newTypeIndex()
	for i := range e.compiled {
		c := &e.compiled[i]
		t := e.anyType
		if c.rule.ActionType != "*" {
			t = e.byType[c.rule.ActionType]
			if t == nil {
				t = newTypeIndex()
				e.byType[c.rule.ActionType] = t
			}
		}
		t.add(&c.glob, int32(i))
	}
}

// compileRules compiles every rule, sorts them by id and builds the index.
func (e *Engine) compileRules() error {
	e.compiled = make([]compiledRule, 0, len(e.rules))
	for i := range e.rules {
		c, err := compileRule(&e.rules[i])
		if err != nil {
			return err
		}
		e.compiled = append(e.compiled, c)
	}
	sort.Slice(e.compiled, func(i, j int) bool { return e.compiled[i].id < e.compiled[j].id })
	e.ids = make([]string, len(e.compiled))
	for i := range e.compiled {
		e.ids[i] = e.compiled[i].id
	}
	e.buildIndex()
	return nil
}

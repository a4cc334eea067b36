package policy

import (
	"fmt"
	"strings"

	"github.com/caddy-nomos/nomos/policy/action"
)

// Lint finding codes.
const (
	LintDuplicateRuleID    = "duplicate_rule_id"
	LintNeverMatches       = "never_matches"
	LintShadowedRule       = "shadowed_rule"
	LintAllowCoveredByDeny = "allow_covered_by_deny"
)

// Finding severities.
const (
	SeverityWarning = "warning"
	SeverityError   = "error"
)

// Lint reports rules that cannot matter: rules that can never match, rules
// shadowed by another rule of the same decision, and ALLOW or
// REQUIRE_APPROVAL rules that a DENY covers entirely. It also reports exec
// patterns whose wildcards let an agent choose options, the subcommand or
// code of a powerful program (risky_exec_wildcard). It is conservative:
// when it cannot prove a claim it stays silent. Findings follow load order.
func Lint(e *Engine) []Finding {
	l := &linter{e: e}
	for i := range e.rules {
		c := &e.compiled[e.indexOf(e.rules[i].ID)]
		l.order = append(l.order, c)
		l.never = append(l.never, e.neverMatches(c))
	}
	var out []Finding
	for i, c := range l.order {
		out = append(out, classScopeFinding(c)...)
		if l.never[i] != "" {
			out = append(out, warn(c.id, LintNeverMatches, fmt.Sprintf("rule %q can never match: %s", c.id, l.never[i])))
			continue
		}
		out = append(out, l.overlapFindings(c, i)...)
		out = append(out, lintExecPatterns(c)...)
	}
	return out
}

// linter holds the rules in load order with their never-match verdicts.
type linter struct {
	e     *Engine
	order []*compiledRule
	never []string
}

func warn(id, code, msg string) Finding {
	return Finding{Severity: SeverityWarning, RuleID: id, Code: code, Message: msg}
}

// overlapFindings reports at most one shadowing rule and one covering deny.
func (l *linter) overlapFindings(c *compiledRule, pos int) []Finding {
	var out []Finding
	if by := l.shadowedBy(c, pos); by != nil {
		out = append(out, warn(c.id, LintShadowedRule, fmt.Sprintf(
			"rule %q is shadowed by %q: every action it matches is also matched by that %s rule, and it adds no obligations",
			c.id, by.id, by.rule.Decision)))
	}
	if c.class != classDeny {
		if d := l.coveringDeny(c); d != nil {
			out = append(out, warn(c.id, LintAllowCoveredByDeny, fmt.Sprintf(
				"%s rule %q never takes effect: deny rule %q matches every action it matches", c.rule.Decision, c.id, d.id)))
		}
	}
	return out
}

// shadowedBy finds a rule of the same decision that matches everything c
// matches; of two equivalent rules the later one is reported. c must not
// shape the outcome some other way: it has no obligations; it has no
// exec_match unless the other rule has one too (exec_match takes part in
// exec-model conflicts); and the other rule does not ask for the unanimous
// obligations (http_redirects, approval_scope_class), which c's silence vetoes.
func (l *linter) shadowedBy(c *compiledRule, pos int) *compiledRule {
	if c.rule.Obligations != nil {
		return nil
	}
	for j, o := range l.order {
		if o == c || o.class != c.class || (c.argv != nil && o.argv == nil) || l.never[j] != "" || asksUnanimous(o) {
			continue
		}
		if covers(o, c) && (j < pos || !covers(c, o)) {
			return o
		}
	}
	return nil
}

func asksUnanimous(c *compiledRule) bool {
	return (c.ob.HTTPRedirects != nil && *c.ob.HTTPRedirects) || c.ob.ApprovalScopeClass != ""
}

func (l *linter) coveringDeny(c *compiledRule) *compiledRule {
	for j, d := range l.order {
		if d.class == classDeny && l.never[j] == "" && covers(d, c) {
			return d
		}
	}
	return nil
}

// covers reports whether every action b matches is matched by a. Each test
// is sufficient, not necessary, so a "false" only means "not proven".
func covers(a, b *compiledRule) bool {
	return (a.rule.ActionType == "*" || a.rule.ActionType == b.rule.ActionType) &&
		globCovers(a.glob.segs, b.glob.segs) &&
		setCovers(&a.principals, &b.principals) && setCovers(&a.agents, &b.agents) && setCovers(&a.envs, &b.envs) &&
		a.risk&^(b.risk|impliedRisk(b.rule.ActionType)) == 0 &&
		toolsCover(a, b) && argvCovers(a.argv, b.argv) && paramsCover(a.params, b.params)
}

// toolsCover: every fingerprint b's tool_fingerprints accepts, a's does,
// the missing one included (see toolMatches).
func toolsCover(a, b *compiledRule) bool {
	switch {
	case a.tools.any:
		return true
	case b.tools.any || !subsetSorted(b.tools.vals, a.tools.vals):
		return false
	}
	return a.class != classAllow || b.class == classAllow
}

func setCovers(a, b *strSet) bool {
	if a.any {
		return true
	}
	return !b.any && subsetSorted(b.vals, a.vals)
}

// impliedRisk is the risk flags every action of the type carries.
func impliedRisk(actionType string) uint32 {
	switch actionType {
	case action.TypeProcessExec:
		return riskExec
	case action.TypeNetHTTPRequest:
		return riskNet
	case action.TypeFSWrite, action.TypeRepoApplyPatch:
		return riskWrite
	case action.TypeSecretsCheckout:
		return riskSecrets
	}
	return 0
}

// possibleRisk is the risk flags an action of the type can carry.
func possibleRisk(actionType string) uint32 {
	if actionType == "*" {
		return riskExec | riskNet | riskWrite | riskSecrets | riskLargeIO
	}
	return impliedRisk(actionType) | riskLargeIO
}

func argvCovers(a, b []argvPattern) bool {
	if a == nil {
		return true
	}
	if b == nil {
		return false
	}
	for i := range b {
		if !anyPatternCovers(a, &b[i]) {
			return false
		}
	}
	return true
}

func anyPatternCovers(a []argvPattern, b *argvPattern) bool {
	for i := range a {
		if globCovers(a[i].toks, b.toks) {
			return true
		}
	}
	return false
}

// paramsCover requires every condition of a to appear, identically, in b.
func paramsCover(a, b []paramCond) bool {
	for i := range a {
		if !hasSameCond(b, &a[i]) {
			return false
		}
	}
	return true
}

func hasSameCond(conds []paramCond, want *paramCond) bool {
	for i := range conds {
		if conds[i].path == want.path && sameMatcher(&conds[i].m, &want.m) {
			return true
		}
	}
	return false
}

func sameMatcher(a, b *compiledMatcher) bool {
	return fmt.Sprint(matcherKey(a)) == fmt.Sprint(matcherKey(b))
}

// matcherKey is a comparable rendering of a compiled matcher, for lint only.
func matcherKey(m *compiledMatcher) []string {
	key := []string{fmt.Sprint(m.present), fmt.Sprint(m.glob != nil)}
	if m.glob != nil {
		key = append(key, *m.glob)
	}
	if m.equals != nil {
		key = append(key, "eq", string(m.equals.raw))
	}
	for _, l := range m.in {
		key = append(key, "in", string(l.raw))
	}
	for _, b := range m.bounds {
		key = append(key, fmt.Sprint(b.op), b.num.text)
	}
	return key
}

// globCovers decides, for resource segments or argv tokens, whether pattern
// a matches everything pattern b matches. memo holds 0 unknown, 1 yes, 2 no.
func globCovers(a, b []globSeg) bool {
	memo := make([]uint8, (len(a)+1)*(len(b)+1))
	return coversFrom(a, b, 0, 0, memo)
}

func coversFrom(a, b []globSeg, i, j int, memo []uint8) bool {
	k := i*(len(b)+1) + j
	if memo[k] == 0 {
		memo[k] = 2
		if coversStep(a, b, i, j, memo) {
			memo[k] = 1
		}
	}
	return memo[k] == 1
}

func coversStep(a, b []globSeg, i, j int, memo []uint8) bool {
	switch {
	case i == len(a):
		return j == len(b)
	case isMulti(a[i].kind):
		return coversFrom(a, b, i+1, j, memo) || (j < len(b) && absorbsSeg(&a[i], &b[j]) && coversFrom(a, b, i, j+1, memo))
	case j == len(b) || isMulti(b[j].kind):
		return false
	}
	return segCovers(&a[i], &b[j]) && coversFrom(a, b, i+1, j+1, memo)
}

// absorbsSeg reports whether multi-segment pattern a takes everything b
// matches: "**" takes anything, an argv operand wildcard only operands.
func absorbsSeg(a, b *globSeg) bool {
	if a.kind == segAny {
		return true
	}
	switch b.kind {
	case segArgOne, segArgAny:
		return true
	case segLiteral:
		return !IsOption(b.text)
	}
	return false
}

// segCovers compares two single-segment patterns.
func segCovers(a, b *globSeg) bool {
	switch a.kind {
	case segOne:
		return true
	case segArgOne:
		return b.kind == segArgOne || (b.kind == segLiteral && !IsOption(b.text))
	case segLiteral:
		return b.kind == segLiteral && a.text == b.text
	case segPattern:
		return (b.kind == segLiteral && wildcardMatch(a.text, b.text)) || (b.kind == segPattern && a.text == b.text)
	}
	return false
}

// neverMatches returns why c can never match, or "".
func (e *Engine) neverMatches(c *compiledRule) string {
	if e.environment != "" && !c.envs.has(e.environment) {
		return fmt.Sprintf("its environments [%s] exclude the configured environment %q", strings.Join(c.envs.vals, ", "), e.environment)
	}
	if why := impossibleRisk(c); why != "" {
		return why
	}
	if why := impossibleResource(c); why != "" {
		return why
	}
	return impossibleParams(c)
}

// impossibleRisk finds flags the action type cannot carry, or type-bound
// flags of two different types.
func impossibleRisk(c *compiledRule) string {
	if extra := c.risk &^ possibleRisk(c.rule.ActionType); extra != 0 {
		return fmt.Sprintf("action type %q never carries all of the risk flags [%s]", c.rule.ActionType, strings.Join(c.rule.RiskFlags, ", "))
	}
	typed := c.risk &^ riskLargeIO
	if typed&(typed-1) != 0 {
		return fmt.Sprintf("no action type carries all of the risk flags [%s]", strings.Join(c.rule.RiskFlags, ", "))
	}
	return ""
}

// impossibleResource catches globs no normalized resource can match: a
// scheme the action type cannot use, an uppercase scheme, or a literal dot
// segment, which normalization always removes.
func impossibleResource(c *compiledRule) string {
	segs := c.glob.segs
	if len(segs) == 0 || segs[0].kind != segLiteral || !strings.HasSuffix(segs[0].text, ":") {
		return ""
	}
	scheme := strings.TrimSuffix(segs[0].text, ":")
	if why := schemeProblem(c.rule.ActionType, scheme); why != "" {
		return why
	}
	for _, s := range segs[min(3, len(segs)):] {
		if s.kind == segLiteral && s.text != "" && strings.Trim(s.text, ".") == "" {
			return fmt.Sprintf("its resource %q has a dot segment, which normalized resources never contain", c.rule.Resource)
		}
	}
	return ""
}

func schemeProblem(actionType, scheme string) string {
	switch {
	case scheme != strings.ToLower(scheme):
		return fmt.Sprintf("normalized resources have lowercase schemes, not %q", scheme)
	case action.IsMCP(actionType) && scheme != "mcp":
		return fmt.Sprintf("action type %q always has an mcp:// resource", actionType)
	case action.IsBuiltin(actionType) && !isBuiltinScheme(scheme):
		return fmt.Sprintf("action type %q never has a %s:// resource", actionType, scheme)
	}
	return ""
}

func isBuiltinScheme(s string) bool {
	return s == "file" || s == "url" || s == "repo" || s == "secret"
}

// impossibleParams finds matchers that contradict themselves.
func impossibleParams(c *compiledRule) string {
	for i := range c.params {
		m := &c.params[i].m
		if m.present < 0 && !m.onlyPresence() {
			return fmt.Sprintf("params_match %q requires the value to be absent and to satisfy other operators", c.params[i].path)
		}
		if emptyRange(m.bounds) {
			return fmt.Sprintf("params_match %q has bounds no number satisfies", c.params[i].path)
		}
	}
	return ""
}

// emptyRange reports whether some lower bound exceeds some upper bound.
func emptyRange(bounds []bound) bool {
	for i := range bounds {
		for j := range bounds {
			lo, hi := &bounds[i], &bounds[j]
			if (lo.op != opGt && lo.op != opGte) || (hi.op != opLt && hi.op != opLte) {
				continue
			}
			cmp := compareDecimal(lo.num.text, &lo.num.dec, hi.num.text, &hi.num.dec)
			if cmp > 0 || (cmp == 0 && (lo.op == opGt || hi.op == opLt)) {
				return true
			}
		}
	}
	return false
}

// LintSources lints bundles before loading them: duplicate rule ids, within
// or across bundles, become error findings instead of failing, and the
// first rule of each id is linted. Parse, role and signature errors are
// still errors.
func LintSources(sources []BundleSource, opts LoadOptions) ([]Finding, error) {
	loaded, err := loadAll(sources, opts, false)
	if err != nil {
		return nil, err
	}
	findings := dropDuplicates(loaded)
	e, err := newEngine(loaded, opts)
	if err != nil {
		return nil, err
	}
	return append(findings, Lint(e)...), nil
}

// dropDuplicates removes every rule whose id appeared earlier and reports it.
func dropDuplicates(loaded []loadedBundle) []Finding {
	var out []Finding
	owner := make(map[string]string)
	for i := range loaded {
		lb := &loaded[i]
		kept := lb.bundle.Rules[:0:0]
		for j, r := range lb.bundle.Rules {
			where := fmt.Sprintf("%s $.rules[%d]", lb.src.Path, j)
			if first, dup := owner[r.ID]; dup {
				out = append(out, Finding{Severity: SeverityError, RuleID: r.ID, Code: LintDuplicateRuleID,
					Message: fmt.Sprintf("duplicate rule id %q at %s (first at %s)", r.ID, where, first)})
				continue
			}
			owner[r.ID] = where
			kept = append(kept, r)
		}
		lb.bundle.Rules = kept
	}
	return out
}

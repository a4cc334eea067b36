package policy

import (
	"strings"

	"github.com/caddy-nomos/nomos/policy/action"
)

const execActionType = action.TypeProcessExec

// Evaluate decides one action: deny-wins and independent of rule order.
// An evaluation error in any candidate rule denies with
// deny_by_evaluation_error; otherwise any matching DENY gives deny_by_rule;
// mixed exec models among the matching ALLOW and REQUIRE_APPROVAL rules give
// deny_by_exec_model_conflict; then REQUIRE_APPROVAL, then ALLOW; no match
// gives deny_by_default. Risk flags are read from the action, which computes
// them; the agent cannot supply them.
func (e *Engine) Evaluate(a *action.Action) Decision {
	if a == nil {
		return e.denied(ReasonDenyByEvaluationError, e.noIDs)
	}
	var st evalState
	st.init(a)
	e.collect(&st)
	return e.decide(&st)
}

// collect checks the candidate rules: those of the action's type and of "*",
// whose anchor is a segment prefix of the resource.
func (e *Engine) collect(st *evalState) {
	if t := e.byType[st.a.ActionType]; t != nil {
		e.scanIndex(st, t)
	}
	e.scanIndex(st, e.anyType)
}

func (e *Engine) scanIndex(st *evalState, t *typeIndex) {
	res := st.a.Resource
	if t.depths&1 != 0 {
		e.checkAll(st, t.byAnchor[""])
	}
	depth := 0
	for i := 0; i < len(res); i++ {
		if res[i] != '/' {
			continue
		}
		if depth++; depth <= maxAnchorDepth && t.depths&(1<<depth) != 0 {
			e.checkAll(st, t.byAnchor[res[:i]])
		}
	}
	if depth++; depth <= maxAnchorDepth && t.depths&(1<<depth) != 0 {
		e.checkAll(st, t.byAnchor[res])
	}
	if len(t.byLast) > 0 {
		e.checkAll(st, t.byLast[res[strings.LastIndexByte(res, '/')+1:]])
	}
}

func (e *Engine) checkAll(st *evalState, list []int32) {
	for _, idx := range list {
		c := &e.compiled[idx]
		ok, err := c.matches(st)
		switch {
		case err != nil:
			st.errs.insert(idx)
		case ok:
			st.matched.insert(idx)
			st.counts[c.class]++
		}
	}
}

// matches tests the cheap conditions first; the action type was settled by
// the index.
func (c *compiledRule) matches(st *evalState) (bool, error) {
	a := st.a
	if c.risk&^st.risk != 0 || !c.principals.has(a.Principal) || !c.agents.has(a.Agent) || !c.envs.has(a.Environment) ||
		!c.toolMatches(a.ToolFingerprint) {
		return false, nil
	}
	if !c.glob.match(a.Resource) {
		return false, nil
	}
	if c.argv != nil {
		if ok, err := c.matchArgv(st); !ok || err != nil {
			return false, err
		}
	}
	return c.matchParams(a.Params, &st.folds)
}

// matchArgv parses params.argv once per evaluation, on first need.
func (c *compiledRule) matchArgv(st *evalState) (bool, error) {
	if st.a.ActionType != execActionType {
		return false, nil
	}
	if !st.argvDone {
		st.argvDone = true
		st.argvFound, st.argvErr = extractArgv(st.a.Params, &st.argv, &st.folds)
	}
	argv := st.argv.items()
	if st.argvErr != nil || !st.argvFound || len(argv) == 0 {
		return false, st.argvErr
	}
	for i := range c.argv {
		if ok, err := c.argv[i].match(&argvSource{b: st.a.Params, spans: argv}, len(argv)); ok || err != nil {
			return ok, err
		}
	}
	return false, nil
}

func (c *compiledRule) matchParams(params []byte, fc *foldCache) (bool, error) {
	for i := range c.params {
		if ok, err := c.params[i].eval(params, fc); !ok || err != nil {
			return false, err
		}
	}
	return true, nil
}

func (e *Engine) decide(st *evalState) Decision {
	matched := st.matched.items()
	switch {
	case st.errs.n > 0 || st.errs.spill != nil:
		return e.denied(ReasonDenyByEvaluationError, e.idsOf(st.errs.items()))
	case st.counts[classDeny] > 0:
		return e.denied(ReasonDenyByRule, e.selectIDs(matched, isClass(classDeny)))
	}
	if st.a.ActionType == execActionType && e.execModelsMixed(matched) {
		return e.denied(ReasonDenyByExecModelConflict, e.selectIDs(matched, usesExecModel))
	}
	switch {
	case st.counts[classApproval] > 0:
		return e.granted(st, classApproval, RequireApproval, ReasonRequireApprovalByRule)
	case st.counts[classAllow] > 0:
		return e.granted(st, classAllow, Allow, ReasonAllowByRule)
	}
	return e.denied(ReasonDenyByDefault, e.noIDs)
}

// granted merges the obligations of the winning class. When legacy exec
// allowlists intersect to nothing no command could run, which is a conflict
// between the rules, not an allow.
func (e *Engine) granted(st *evalState, class decisionClass, decision, reason string) Decision {
	matched := st.matched.items()
	ob := e.mergeClass(matched, class)
	if st.a.ActionType == execActionType && ob.ExecAllowlist != nil && len(ob.ExecAllowlist) == 0 {
		return e.denied(ReasonDenyByExecModelConflict, e.selectIDs(matched, legacyInClass(class)))
	}
	return Decision{
		Decision: decision, ReasonCode: reason, Obligations: ob, PolicyBundleHash: e.hash,
		MatchedRuleIDs: e.selectIDs(matched, isClass(class)),
	}
}

func (e *Engine) denied(reason string, ids []string) Decision {
	return Decision{Decision: Deny, ReasonCode: reason, MatchedRuleIDs: ids, PolicyBundleHash: e.hash}
}

// execModelsMixed reports whether the matching ALLOW and REQUIRE_APPROVAL
// rules use both exec_match and the legacy exec_allowlist.
func (e *Engine) execModelsMixed(matched []int32) bool {
	var argv, legacy bool
	for _, idx := range matched {
		c := &e.compiled[idx]
		if c.class != classDeny {
			argv = argv || c.argv != nil
			legacy = legacy || c.legacyExec
		}
	}
	return argv && legacy
}

type rulePredicate func(*compiledRule) bool

func isClass(class decisionClass) rulePredicate {
	return func(c *compiledRule) bool { return c.class == class }
}

func usesExecModel(c *compiledRule) bool {
	return c.class != classDeny && (c.argv != nil || c.legacyExec)
}

func legacyInClass(class decisionClass) rulePredicate {
	return func(c *compiledRule) bool { return c.class == class && c.legacyExec }
}

// selectIDs returns the sorted ids of the matched rules that keep holds for.
// A contiguous run of ids aliases the compiled id table, so the common
// single-match decision allocates nothing.
func (e *Engine) selectIDs(matched []int32, keep rulePredicate) []string {
	first, last, n := int32(-1), int32(-1), 0
	for _, idx := range matched {
		if keep(&e.compiled[idx]) {
			if first < 0 {
				first = idx
			}
			last, n = idx, n+1
		}
	}
	if n == 0 {
		return e.noIDs
	}
	if int(last-first)+1 == n {
		return e.ids[first : last+1 : last+1]
	}
	out := make([]string, 0, n)
	for _, idx := range matched {
		if keep(&e.compiled[idx]) {
			out = append(out, e.ids[idx])
		}
	}
	return out
}

func (e *Engine) idsOf(idx []int32) []string {
	return e.selectIDs(idx, func(*compiledRule) bool { return true })
}

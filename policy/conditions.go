package policy

import "strings"

// Per-condition evaluation of one rule, for Explain and its near-miss
// search. It reuses the evaluator's primitives so both always agree, but
// evaluates every condition instead of stopping at the first failure.

type condMask uint16

const (
	condActionType condMask = 1 << iota
	condResource
	condPrincipal
	condAgent
	condEnvironment
	condRiskFlags
	condExecMatch
	condParamsMatch
	condToolFingerprint
)

// condNames are the JSON keys of matched_conditions, in bit order.
func condNames() [9]string {
	return [9]string{"action_type", "resource", "principal", "agent", "environment", "risk_flags", "exec_match", "params_match", "tool_fingerprints"}
}

type ruleCheck struct {
	declared    condMask
	failed      condMask
	err         error  // an error Evaluate would also hit
	failedParam string // the first params_match path that did not hold
}

func (r ruleCheck) matched() bool { return r.failed == 0 && r.err == nil }

// conditions lists the declared conditions with whether each held.
func (r ruleCheck) conditions() map[string]bool {
	out := make(map[string]bool)
	for i, name := range condNames() {
		if bit := condMask(1) << i; r.declared&bit != 0 {
			out[name] = r.failed&bit == 0
		}
	}
	return out
}

// check evaluates every condition. As in Evaluate, errors count only when
// the conditions checked before them held: argv after the cheap conditions
// and the glob, params after argv.
func (c *compiledRule) check(st *evalState) ruleCheck {
	var rc ruleCheck
	rc.declared = c.declaredConditions()
	rc.failed = c.cheapFailures(st)
	if c.argv != nil {
		ok, err := c.matchArgv(st)
		rc.noteFailure(condExecMatch, ok, err)
	}
	if c.params != nil {
		c.checkParams(st, &rc)
	}
	return rc
}

func (rc *ruleCheck) noteFailure(bit condMask, ok bool, err error) {
	if !ok || err != nil {
		if err != nil && rc.failed == 0 {
			rc.err = err
		}
		rc.failed |= bit
	}
}

func (c *compiledRule) checkParams(st *evalState, rc *ruleCheck) {
	for i := range c.params {
		ok, err := c.params[i].eval(st.a.Params, &st.folds)
		if err != nil && rc.failed == 0 {
			rc.err = paramError(c.params[i].path, err)
		}
		if !ok || err != nil {
			rc.failedParam = c.params[i].path
			rc.failed |= condParamsMatch
			return
		}
	}
}

func paramError(path string, err error) error {
	return scanError("params_match " + quote(path) + ": " + err.Error())
}

func quote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"` }

func (c *compiledRule) declaredConditions() condMask {
	m := condActionType | condResource
	set := func(bit condMask, on bool) {
		if on {
			m |= bit
		}
	}
	set(condPrincipal, !c.principals.any)
	set(condAgent, !c.agents.any)
	set(condEnvironment, !c.envs.any)
	set(condRiskFlags, c.risk != 0)
	set(condExecMatch, c.argv != nil)
	set(condParamsMatch, c.params != nil)
	set(condToolFingerprint, !c.tools.any)
	return m
}

func (c *compiledRule) cheapFailures(st *evalState) condMask {
	a := st.a
	var failed condMask
	fail := func(bit condMask, ok bool) {
		if !ok {
			failed |= bit
		}
	}
	fail(condActionType, c.rule.ActionType == "*" || c.rule.ActionType == a.ActionType)
	fail(condResource, c.glob.match(a.Resource))
	fail(condPrincipal, c.principals.has(a.Principal))
	fail(condAgent, c.agents.has(a.Agent))
	fail(condEnvironment, c.envs.has(a.Environment))
	fail(condRiskFlags, c.risk&^st.risk == 0)
	fail(condToolFingerprint, c.toolMatches(a.ToolFingerprint))
	return failed
}

// describeCondition says what a rule requires, in the policy's own terms:
// it quotes the rule, never the action's params.
func (c *compiledRule) describeCondition(bit condMask, rc ruleCheck) string {
	r := c.rule
	switch bit {
	case condActionType:
		return "the action type were " + quote(r.ActionType)
	case condResource:
		return "the resource matched " + quote(r.Resource)
	case condPrincipal:
		return "the principal were one of [" + strings.Join(c.principals.vals, ", ") + "]"
	case condAgent:
		return "the agent were one of [" + strings.Join(c.agents.vals, ", ") + "]"
	case condEnvironment:
		return "the environment were one of [" + strings.Join(c.envs.vals, ", ") + "]"
	case condRiskFlags:
		return "the action carried the risk flags [" + strings.Join(r.RiskFlags, ", ") + "]"
	case condExecMatch:
		return "argv matched one of its exec_match patterns"
	case condToolFingerprint:
		return "the tool's pinned definition were one of [" + strings.Join(c.tools.vals, ", ") + "]"
	}
	return "params_match " + quote(rc.failedParam) + " held"
}

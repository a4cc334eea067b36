package policy

import "github.com/caddy-nomos/nomos/policy/action"

// Reachable reports whether some call of a's type on a's resource by a's
// identity could be ALLOWed or sent for approval, whatever its params: an
// ALLOW or REQUIRE_APPROVAL rule matches everything but its params and argv
// conditions, and no DENY rule matches unconditionally. The MCP gateway uses
// it to list only the tools a principal could call. It never over-reports:
// a rule whose conditions fail on what is known (identity, environment,
// resource, risk flags) does not count.
func (e *Engine) Reachable(a *action.Action) bool {
	if a == nil {
		return false
	}
	var st evalState
	st.init(a)
	could := false
	for i := range e.compiled {
		c := &e.compiled[i]
		if !c.appliesTo(&st) {
			continue
		}
		if c.class == classDeny && len(c.argv) == 0 && len(c.params) == 0 {
			return false
		}
		could = could || c.class != classDeny
	}
	return could
}

// appliesTo checks every condition that does not depend on params.
func (c *compiledRule) appliesTo(st *evalState) bool {
	a := st.a
	if c.rule.ActionType != "*" && c.rule.ActionType != a.ActionType {
		return false
	}
	return c.risk&^st.risk == 0 && c.principals.has(a.Principal) && c.agents.has(a.Agent) &&
		c.envs.has(a.Environment) && c.toolMatches(a.ToolFingerprint) && c.glob.match(a.Resource)
}

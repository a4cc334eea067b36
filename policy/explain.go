package policy

import (
	"strings"

	"github.com/caddy-nomos/nomos/policy/action"
)

// Explanation says why Evaluate decided as it did. It quotes the policy
// (rule ids, globs, params_match paths) and never the action's params,
// headers or secrets, so it is safe to show to the asking agent.
type Explanation struct {
	ActionID         string   `json:"action_id,omitempty"`
	TraceID          string   `json:"trace_id,omitempty"`
	Decision         string   `json:"decision"`
	ReasonCode       string   `json:"reason_code"`
	MatchedRuleIDs   []string `json:"matched_rule_ids"`
	PolicyBundleHash string   `json:"policy_bundle_hash"`
	// PolicyBundleSources and PolicyBundleInputs appear for multi-bundle loads.
	PolicyBundleSources []string      `json:"policy_bundle_sources,omitempty"`
	PolicyBundleInputs  []BundleInput `json:"policy_bundle_inputs,omitempty"`
	// MatchedRuleProvenance lists every matching rule of any decision, by id,
	// so a deny also shows the allows it overrode.
	MatchedRuleProvenance []RuleProvenance `json:"matched_rule_provenance"`
	EvaluationErrors      []RuleError      `json:"evaluation_errors,omitempty"`
	// ObligationsPreview is what the decision's obligations are; for a DENY,
	// what they would be if the deny rules were removed.
	ObligationsPreview    Obligations        `json:"obligations_preview"`
	ExecAuthorization     *ExecAuthorization `json:"exec_authorization,omitempty"`
	WhyDenied             *WhyDenied         `json:"why_denied,omitempty"`
	MinimalAllowingChange string             `json:"minimal_allowing_change,omitempty"`
}

// RuleProvenance names a matching rule and the bundle it came from.
type RuleProvenance struct {
	RuleID            string          `json:"rule_id"`
	Decision          string          `json:"decision"`
	BundleSource      string          `json:"bundle_source"`
	MatchedConditions map[string]bool `json:"matched_conditions"`
}

// RuleError is a rule that could not be evaluated. Message names the
// failing condition, never the offending value.
type RuleError struct {
	RuleID  string `json:"rule_id"`
	Message string `json:"message"`
}

// WhyDenied explains a DENY or REQUIRE_APPROVAL.
type WhyDenied struct {
	ReasonCode        string          `json:"reason_code"`
	DenyRules         []DenyRule      `json:"deny_rules,omitempty"`
	MatchedConditions map[string]bool `json:"matched_conditions"`
	RemediationHint   string          `json:"remediation_hint"`
}

// DenyRule is a rule responsible for a non-ALLOW outcome.
type DenyRule struct {
	RuleID            string          `json:"rule_id"`
	ReasonCode        string          `json:"reason_code"`
	MatchedConditions map[string]bool `json:"matched_conditions"`
	BundleSource      string          `json:"bundle_source"`
}

// ExecAuthorization tells the executor how argv is enforced at run time.
type ExecAuthorization struct {
	// ConditionClass is none, argv_pattern_match, legacy_prefix_allowlist or
	// mixed_exec_models.
	ConditionClass string `json:"condition_class"`
	// RuntimeEnforcementHint is policy_only, derived_exec_constraints,
	// legacy_exec_allowlist_fallback or conflict.
	RuntimeEnforcementHint string `json:"runtime_enforcement_hint"`
	Conflict               bool   `json:"conflict"`
}

// explainer carries one explanation's working state.
type explainer struct {
	e      *Engine
	st     evalState
	checks []ruleCheck // by compiled index
	d      Decision
	x      *Explanation
}

// Explain evaluates a and explains the decision. It runs every rule, not
// just the indexed candidates, so it is slower than Evaluate; its decision
// is Evaluate's.
func (e *Engine) Explain(a *action.Action) *Explanation {
	d := e.Evaluate(a)
	x := &Explanation{
		Decision: d.Decision, ReasonCode: d.ReasonCode, MatchedRuleIDs: d.MatchedRuleIDs,
		PolicyBundleHash: e.hash, MatchedRuleProvenance: []RuleProvenance{},
	}
	if len(e.inputs) > 1 {
		x.PolicyBundleSources, x.PolicyBundleInputs = e.Sources(), e.Inputs()
	}
	if a == nil {
		x.WhyDenied = &WhyDenied{ReasonCode: d.ReasonCode, MatchedConditions: map[string]bool{"evaluation_error": true}, RemediationHint: "No action was given."}
		return x
	}
	x.ActionID, x.TraceID = a.ActionID, a.TraceID
	ex := &explainer{e: e, d: d, x: x}
	ex.st.init(a)
	ex.run()
	return x
}

func (ex *explainer) run() {
	ex.checks = make([]ruleCheck, len(ex.e.compiled))
	for i := range ex.e.compiled {
		ex.checks[i] = ex.e.compiled[i].check(&ex.st)
		ex.noteRule(i)
	}
	ex.x.ObligationsPreview = ex.preview()
	if ex.st.a.ActionType == execActionType {
		ex.x.ExecAuthorization = ex.execAuthorization()
	}
	if ex.d.Decision != Allow {
		ex.x.WhyDenied = ex.whyDenied()
		ex.x.MinimalAllowingChange = ex.minimalChange()
	}
}

func (ex *explainer) noteRule(i int) {
	c, rc := &ex.e.compiled[i], ex.checks[i]
	if rc.err != nil {
		ex.x.EvaluationErrors = append(ex.x.EvaluationErrors, RuleError{RuleID: c.id, Message: rc.err.Error()})
	}
	if rc.matched() {
		ex.x.MatchedRuleProvenance = append(ex.x.MatchedRuleProvenance, RuleProvenance{
			RuleID: c.id, Decision: c.rule.Decision, BundleSource: c.rule.Source, MatchedConditions: rc.conditions(),
		})
	}
}

// matchedOf returns the compiled indexes of matching rules, sorted.
func (ex *explainer) matchedOf(keep rulePredicate) []int32 {
	var out []int32
	for i, rc := range ex.checks {
		if rc.matched() && keep(&ex.e.compiled[i]) {
			out = append(out, int32(i))
		}
	}
	return out
}

// grantingClass is the class that wins once deny rules are set aside.
func (ex *explainer) grantingClass() decisionClass {
	if len(ex.matchedOf(isClass(classApproval))) > 0 {
		return classApproval
	}
	return classAllow
}

func (ex *explainer) preview() Obligations {
	if ex.d.Decision != Deny {
		return ex.d.Obligations
	}
	return ex.e.mergeClass(ex.matchedOf(isClass(ex.grantingClass())), ex.grantingClass())
}

func (ex *explainer) execAuthorization() *ExecAuthorization {
	rules := ex.matchedOf(func(c *compiledRule) bool { return c.class != classDeny })
	var argv, legacy bool
	for _, idx := range rules {
		argv = argv || ex.e.compiled[idx].argv != nil
		legacy = legacy || ex.e.compiled[idx].legacyExec
	}
	switch {
	case argv && legacy || ex.d.ReasonCode == ReasonDenyByExecModelConflict:
		return &ExecAuthorization{ConditionClass: "mixed_exec_models", RuntimeEnforcementHint: "conflict", Conflict: true}
	case argv:
		return &ExecAuthorization{ConditionClass: "argv_pattern_match", RuntimeEnforcementHint: "derived_exec_constraints"}
	case legacy:
		return &ExecAuthorization{ConditionClass: "legacy_prefix_allowlist", RuntimeEnforcementHint: "legacy_exec_allowlist_fallback"}
	}
	return &ExecAuthorization{ConditionClass: "none", RuntimeEnforcementHint: "policy_only"}
}

func (ex *explainer) whyDenied() *WhyDenied {
	w := &WhyDenied{ReasonCode: ex.d.ReasonCode, RemediationHint: ex.remediationHint()}
	key := map[string]string{
		ReasonDenyByRule:              "deny_rule_match",
		ReasonRequireApprovalByRule:   "approval_rule_match",
		ReasonDenyByExecModelConflict: "exec_model_conflict",
		ReasonDenyByEvaluationError:   "evaluation_error",
	}[ex.d.ReasonCode]
	w.MatchedConditions = map[string]bool{key: true}
	if key == "" {
		w.MatchedConditions = map[string]bool{"matching_allow_rule": false}
	}
	for _, id := range ex.d.MatchedRuleIDs {
		w.DenyRules = append(w.DenyRules, ex.denyRule(id))
	}
	return w
}

func (ex *explainer) denyRule(id string) DenyRule {
	i := ex.e.indexOf(id)
	c := &ex.e.compiled[i]
	return DenyRule{RuleID: id, ReasonCode: ex.d.ReasonCode, MatchedConditions: ex.checks[i].conditions(), BundleSource: c.rule.Source}
}

func (e *Engine) indexOf(id string) int {
	lo, hi := 0, len(e.ids)
	for lo < hi {
		mid := (lo + hi) / 2
		if e.ids[mid] < id {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}

func (ex *explainer) remediationHint() string {
	switch ex.d.ReasonCode {
	case ReasonRequireApprovalByRule:
		return "This action requires approval before it can proceed."
	case ReasonDenyByRule:
		return "A deny rule matched this action."
	case ReasonDenyByExecModelConflict:
		return "The matching rules constrain this command in incompatible ways."
	case ReasonDenyByEvaluationError:
		return "A rule could not be evaluated against this action, so it was denied."
	}
	return typeHint(ex.st.a.ActionType, "This network destination is not currently allowed.",
		"This command is not currently allowed.", "This write target is not currently allowed.",
		"No matching allow rule was found for this action.")
}

// typeHint picks a message by the kind of action.
func typeHint(actionType, net, exec, write, other string) string {
	switch actionType {
	case action.TypeNetHTTPRequest:
		return net
	case action.TypeProcessExec:
		return exec
	case action.TypeFSWrite, action.TypeRepoApplyPatch:
		return write
	}
	return other
}

func (ex *explainer) minimalChange() string {
	ids := `"` + strings.Join(ex.d.MatchedRuleIDs, `", "`) + `"`
	switch ex.d.ReasonCode {
	case ReasonRequireApprovalByRule:
		return "Request approval for this action."
	case ReasonDenyByRule:
		return "Deny rule(s) " + ids + " match this action and a deny always wins: only a different action or a change to those rules can allow it."
	case ReasonDenyByExecModelConflict:
		return "Rules " + ids + " constrain this command with exec_match and exec_allowlist (or with exec_allowlists that share no prefix); rewrite them to use exec_match only."
	case ReasonDenyByEvaluationError:
		return "Send params that rule(s) " + ids + " can evaluate; see evaluation_errors."
	}
	if s := ex.nearMiss(); s != "" {
		return s
	}
	return ex.defaultChange()
}

// nearMiss finds an ALLOW rule, else a REQUIRE_APPROVAL rule, that failed
// exactly one condition, and names that condition. A rule for another action
// type is no near miss: asking for a read instead of a command is not a
// smaller change to the same action.
func (ex *explainer) nearMiss() string {
	for _, class := range []decisionClass{classAllow, classApproval} {
		for i, rc := range ex.checks {
			c := &ex.e.compiled[i]
			if c.class != class || rc.err != nil || !singleBit(rc.failed) || rc.failed == condActionType {
				continue
			}
			verb := map[decisionClass]string{classAllow: "allow this action", classApproval: "let this action proceed with approval"}[class]
			return "Rule " + quote(c.id) + " would " + verb + " if " + c.describeCondition(rc.failed, rc) + "."
		}
	}
	return ""
}

func singleBit(m condMask) bool { return m != 0 && m&(m-1) == 0 }

func (ex *explainer) defaultChange() string {
	a := ex.st.a
	if a.ActionType == action.TypeNetHTTPRequest {
		return "This host is not currently allowed; use an allowlisted host, request approval, or update the network allowlist for " + hostOf(a.Resource) + "."
	}
	return typeHint(a.ActionType, "",
		"Exec is restricted; use an allowlisted command or request approval.",
		"Write access is restricted for this resource; use an allowed path or request approval.",
		"Adjust the requested action to match an allowlisted resource or request approval.")
}

// hostOf returns the host[:port] of a normalized url:// resource.
func hostOf(resource string) string {
	rest := strings.TrimPrefix(resource, "url://")
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		rest = rest[:i]
	}
	return rest
}

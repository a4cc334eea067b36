package policy

import (
	"fmt"
	pathpkg "path"
	"sort"
	"strings"

	"github.com/caddy-nomos/nomos/policy/action"
)

// Semantic checks of a decoded bundle. Each returns the path of the offender
// so the loader's message points at the line to fix.

// knownRiskFlags lists the flags the action package computes. A rule naming
// any other flag could never match, so a typo is refused at load.
const knownRiskFlags = "risk.exec, risk.net, risk.write, risk.secrets, risk.large_io"

func validateBundle(b *Bundle) error {
	if b.Version != "v1" {
		return errAt("$.version", "unsupported version %q (want \"v1\")", b.Version)
	}
	if len(b.Rules) == 0 {
		return errAt("$.rules", "at least one rule is required")
	}
	for i := range b.Rules {
		if err := validateRule(&b.Rules[i], indexPath("$.rules", i)); err != nil {
			return err
		}
	}
	return nil
}

// checkUniqueIDs is separate from validateBundle so LintSources can report
// duplicates as findings instead of failing.
func checkUniqueIDs(b *Bundle) error {
	first := make(map[string]int, len(b.Rules))
	for i, r := range b.Rules {
		if j, dup := first[r.ID]; dup {
			return errAt(indexPath("$.rules", i)+".id", "duplicate rule id %q (first at $.rules[%d])", r.ID, j)
		}
		first[r.ID] = i
	}
	return nil
}

func validateRule(r *Rule, path string) error {
	checks := []func(*Rule, string) error{
		validateID, validateActionType, validateResource, validateDecision,
		validateSubjects, validateRiskFlags, validateExecMatch, validateToolFingerprints, validateParamsMatch,
	}
	for _, check := range checks {
		if err := check(r, path); err != nil {
			return err
		}
	}
	if r.Obligations != nil {
		return validateObligations(r, path+".obligations")
	}
	return nil
}

// validateID keeps ids printable and short: they appear in headers, logs,
// metrics labels and placeholders.
func validateID(r *Rule, path string) error {
	if r.ID == "" {
		return errAt(path+".id", "required")
	}
	if len(r.ID) > 128 || !isIDChar(r.ID[0], true) {
		return errAt(path+".id", "invalid rule id %q", r.ID)
	}
	for i := 1; i < len(r.ID); i++ {
		if !isIDChar(r.ID[i], false) {
			return errAt(path+".id", "invalid rule id %q (allowed: letters, digits, . _ : -)", r.ID)
		}
	}
	return nil
}

func isIDChar(c byte, first bool) bool {
	alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
	return alnum || !first && (c == '.' || c == '_' || c == ':' || c == '-')
}

func validateActionType(r *Rule, path string) error {
	if r.ActionType == "" {
		return errAt(path+".action_type", "required")
	}
	if r.ActionType != "*" && !isActionType(r.ActionType) {
		return errAt(path+".action_type", "invalid action type %q (want dotted lowercase like fs.read, or \"*\")", r.ActionType)
	}
	return nil
}

// isActionType mirrors the action package's grammar,
// ^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$, so a rule cannot name a type no
// action can have.
func isActionType(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) < 2 {
		return false
	}
	for _, p := range parts {
		if p == "" || p[0] < 'a' || p[0] > 'z' {
			return false
		}
		for i := 1; i < len(p); i++ {
			if c := p[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
				return false
			}
		}
	}
	return true
}

func validateResource(r *Rule, path string) error {
	if _, err := compileGlob(r.Resource); err != nil {
		return errAt(path+".resource", "invalid glob %q: %v", r.Resource, err)
	}
	return nil
}

func validateDecision(r *Rule, path string) error {
	switch r.Decision {
	case Allow, Deny, RequireApproval:
		return nil
	case "":
		return errAt(path+".decision", "required")
	}
	return errAt(path+".decision", "unknown decision %q", r.Decision)
}

func validateSubjects(r *Rule, path string) error {
	lists := []struct {
		name string
		vals []string
	}{{"principals", r.Principals}, {"agents", r.Agents}, {"environments", r.Environments}}
	for _, l := range lists {
		for i, v := range l.vals {
			if v == "" {
				return errAt(indexPath(path+"."+l.name, i), "must not be empty")
			}
		}
	}
	return nil
}

func validateRiskFlags(r *Rule, path string) error {
	for i, f := range r.RiskFlags {
		if riskBit(f) == 0 {
			return errAt(indexPath(path+".risk_flags", i), "unknown risk flag %q (known: %s)", f, knownRiskFlags)
		}
	}
	return nil
}

func validateExecMatch(r *Rule, path string) error {
	if r.ExecMatch == nil {
		return nil
	}
	path += ".exec_match"
	if r.ActionType != "process.exec" && r.ActionType != "*" {
		return errAt(path, "exec_match requires action_type process.exec or \"*\", not %q", r.ActionType)
	}
	if r.Obligations != nil && r.Obligations.ExecAllowlist != nil {
		return errAt(path, "a rule cannot carry both exec_match and the exec_allowlist obligation")
	}
	return validateArgvLists(r.ExecMatch.ArgvPatterns, path+".argv_patterns")
}

func validateArgvLists(lists [][]string, path string) error {
	if len(lists) == 0 {
		return errAt(path, "at least one pattern is required")
	}
	for i, l := range lists {
		if len(l) == 0 {
			return errAt(indexPath(path, i), "a pattern needs at least one token")
		}
		for j, tok := range l {
			if tok == "" {
				return errAt(indexPath(indexPath(path, i), j), "tokens must not be empty")
			}
		}
	}
	return nil
}

func validateParamsMatch(r *Rule, path string) error {
	for _, key := range sortedKeys(r.ParamsMatch) {
		m := r.ParamsMatch[key]
		p := childPath(path+".params_match", key)
		if _, err := compileParamCond(key, m); err != nil {
			return errAt(p, "%v", err)
		}
		if err := validateMatcher(m, p); err != nil {
			return err
		}
	}
	return nil
}

func validateMatcher(m Matcher, path string) error {
	if m.Equals == nil && m.In == nil && m.Present == nil && m.Glob == nil &&
		m.Lt == "" && m.Lte == "" && m.Gt == "" && m.Gte == "" {
		return errAt(path, "a matcher needs at least one operator")
	}
	if m.In != nil && len(m.In) == 0 {
		return errAt(path+".in", "must list at least one value")
	}
	if m.Glob != nil && *m.Glob == "" {
		return errAt(path+".glob", "must not be empty")
	}
	return nil
}

func validateObligations(r *Rule, path string) error {
	o := r.Obligations
	if sandboxRank(o.SandboxMode) < 0 {
		return errAt(path+".sandbox_mode", "unknown sandbox mode %q (want none, local, landlock or container)", o.SandboxMode)
	}
	if o.ApprovalScopeClass != "" && o.ApprovalScopeClass != "action_type_resource" {
		return errAt(path+".approval_scope_class", "unknown scope class %q (want action_type_resource)", o.ApprovalScopeClass)
	}
	if err := validateLimits(o, path); err != nil {
		return err
	}
	return validateObligationLists(o, path)
}

func validateLimits(o *Obligations, path string) error {
	if o.HTTPRedirectHopLimit != nil && (*o.HTTPRedirectHopLimit < 0 || *o.HTTPRedirectHopLimit > 20) {
		return errAt(path+".http_redirect_hop_limit", "must be between 0 and 20")
	}
	if o.OutputMaxBytes != nil && *o.OutputMaxBytes <= 0 {
		return errAt(path+".output_max_bytes", "must be positive")
	}
	if o.OutputMaxLines != nil && *o.OutputMaxLines <= 0 {
		return errAt(path+".output_max_lines", "must be positive")
	}
	return nil
}

func validateObligationLists(o *Obligations, path string) error {
	for i, h := range o.NetAllowlist {
		if h == "" || strings.ContainsAny(h, "/\\@ ") || h != strings.ToLower(h) {
			return errAt(indexPath(path+".net_allowlist", i), "want a lowercase host or host:port, got %q", h)
		}
	}
	if o.ExecAllowlist != nil {
		if err := validateArgvLists(o.ExecAllowlist, path+".exec_allowlist"); err != nil {
			return err
		}
	}
	for i, p := range o.ExecWritePaths {
		if why := writePathProblem(p); why != "" {
			return errAt(indexPath(path+".exec_write_paths", i), "%s, got %q", why, p)
		}
	}
	for i, p := range o.Redact {
		if p == "" {
			return errAt(indexPath(path+".redact", i), "must not be empty")
		}
	}
	return nil
}

// sandboxRank orders sandbox modes by strength; "" means unset.
func sandboxRank(mode string) int {
	switch mode {
	case "":
		return 0
	case "none":
		return 1
	case "local":
		return 2
	case "landlock":
		return 3
	case "container":
		return 4
	}
	return -1
}

// Risk flags as bits, so a rule's required flags are one mask test.
const (
	riskExec uint32 = 1 << iota
	riskNet
	riskWrite
	riskSecrets
	riskLargeIO
)

// riskBit maps a risk flag to its bit, or 0 when unknown.
func riskBit(flag string) uint32 {
	switch flag {
	case action.RiskExec:
		return riskExec
	case action.RiskNet:
		return riskNet
	case action.RiskWrite:
		return riskWrite
	case action.RiskSecrets:
		return riskSecrets
	case action.RiskLargeIO:
		return riskLargeIO
	}
	return 0
}

func describeDup(id, a, b string) string {
	return fmt.Sprintf("duplicate rule id %q in bundles %s and %s", id, a, b)
}

func sortedKeys(m map[string]Matcher) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// validateToolFingerprints accepts only mcp.call rules and the exact form
// the gateway computes, so a typo cannot silently match nothing.
func validateToolFingerprints(r *Rule, path string) error {
	if r.ToolFingerprints == nil {
		return nil
	}
	path += ".tool_fingerprints"
	if r.ActionType != action.TypeMCPCall {
		return errAt(path, "tool_fingerprints requires action_type %s, not %q", action.TypeMCPCall, r.ActionType)
	}
	if len(r.ToolFingerprints) == 0 {
		return errAt(path, "must list at least one fingerprint")
	}
	for i, fp := range r.ToolFingerprints {
		if !isToolFingerprint(fp) {
			return errAt(indexPath(path, i), "%q is not a tool fingerprint (sha256: and 64 lowercase hex digits)", fp)
		}
	}
	return nil
}

func isToolFingerprint(s string) bool {
	hexPart, ok := strings.CutPrefix(s, "sha256:")
	if !ok || len(hexPart) != 64 {
		return false
	}
	for _, c := range hexPart {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// writePathProblem checks an exec_write_paths entry: a clean relative
// workspace directory, never git metadata (.git, where a written config or
// hook runs code), and not the root ("."), which holds .git.
func writePathProblem(p string) string {
	if p == "." {
		return "the workspace root holds .git; name the directories below it"
	}
	if p == "" || strings.HasPrefix(p, "/") || strings.Contains(p, "\\") || p != pathpkg.Clean(p) || p == ".." || strings.HasPrefix(p, "../") {
		return "want a clean relative workspace directory"
	}
	for _, seg := range strings.Split(p, "/") {
		if strings.EqualFold(seg, ".git") {
			return "must not name git metadata (.git)"
		}
	}
	return ""
}

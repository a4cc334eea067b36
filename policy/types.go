package policy

import "encoding/json"

// Bundle is one policy file, typed. Its hash is the sha256 of the canonical
// JSON of this value, so the YAML and JSON forms of a bundle hash alike.
type Bundle struct {
	// Version must be "v1".
	Version string `json:"version"`
	// Rules is non-empty; rule ids are unique.
	Rules []Rule `json:"rules"`
}

// Rule matches an action when every condition it lists holds.
type Rule struct {
	// ID is unique across every loaded bundle.
	ID string `json:"id"`
	// ActionType is an exact action type or "*" for any.
	ActionType string `json:"action_type"`
	// Resource is a glob over the normalized resource.
	Resource string `json:"resource"`
	// Decision is ALLOW, DENY or REQUIRE_APPROVAL.
	Decision string `json:"decision"`
	// Principals, Agents and Environments restrict who may match; empty or
	// "*" means any.
	Principals   []string `json:"principals,omitempty"`
	Agents       []string `json:"agents,omitempty"`
	Environments []string `json:"environments,omitempty"`
	// RiskFlags must all be present on the action.
	RiskFlags []string `json:"risk_flags,omitempty"`
	// ExecMatch restricts process.exec argv.
	ExecMatch *ExecMatch `json:"exec_match,omitempty"`
	// ToolFingerprints restricts an mcp.call rule to the reviewed versions
	// of the tool: the action matches only when the gateway's pinned
	// fingerprint of the tool's definition ("sha256:<hex>") is listed. An
	// action without a fingerprint (not from an MCP gateway) never matches.
	ToolFingerprints []string `json:"tool_fingerprints,omitempty"`
	// ParamsMatch maps dot paths into the canonical params to matchers.
	ParamsMatch map[string]Matcher `json:"params_match,omitempty"`
	// Obligations apply when the rule's decision class wins.
	Obligations *Obligations `json:"obligations,omitempty"`
	// Source is the provenance "path#bundle_hash", set by Load. It is not
	// part of the bundle and not hashed.
	Source string `json:"-"`
}

// ExecMatch lists argv patterns; any one may match. In an allowing rule "*"
// is one operand (a token not beginning with "-"), "**" any number of
// operands, "-*" one token of any kind and "-**" any number of tokens of any
// kind; in a DENY rule every wildcard takes options too. Every other token
// is literal. See argv.go.
type ExecMatch struct {
	ArgvPatterns [][]string `json:"argv_patterns"`
}

// Matcher is one params_match condition; every operator it sets must hold.
// A plain value in a bundle is shorthand for Equals. Values are canonical
// JSON; numeric bounds keep the exact decimal text of the bundle.
type Matcher struct {
	Equals  json.RawMessage   `json:"equals,omitempty"`
	In      []json.RawMessage `json:"in,omitempty"`
	Present *bool             `json:"present,omitempty"`
	Glob    *string           `json:"glob,omitempty"`
	Lt      json.Number       `json:"lt,omitempty"`
	Lte     json.Number       `json:"lte,omitempty"`
	Gt      json.Number       `json:"gt,omitempty"`
	Gte     json.Number       `json:"gte,omitempty"`
}

// Obligations constrain how an allowed action may run. See
// docs/policy-language.md for how the obligations of several rules merge.
type Obligations struct {
	SandboxMode   string     `json:"sandbox_mode,omitempty"`
	NetAllowlist  []string   `json:"net_allowlist,omitempty"`
	ExecAllowlist [][]string `json:"exec_allowlist,omitempty"`
	// ExecWritePaths are the workspace directories a process.exec child
	// confined by the landlock sandbox may write to (never .git). Unset
	// means none: the workspace is read-only to the child.
	ExecWritePaths       []string `json:"exec_write_paths,omitempty"`
	HTTPRedirects        *bool    `json:"http_redirects,omitempty"`
	HTTPRedirectHopLimit *int     `json:"http_redirect_hop_limit,omitempty"`
	OutputMaxBytes       *int64   `json:"output_max_bytes,omitempty"`
	OutputMaxLines       *int64   `json:"output_max_lines,omitempty"`
	ApprovalScopeClass   string   `json:"approval_scope_class,omitempty"`
	Redact               []string `json:"redact,omitempty"`
	// ExecConstraints is derived by the engine: the sorted union of the
	// exec_match patterns of the winning rules. Bundles cannot set it.
	ExecConstraints *ExecMatch `json:"exec_constraints,omitempty"`
}

// Decision is the outcome of Evaluate. Its slices may alias the engine's
// compiled data: treat them as read-only.
type Decision struct {
	Decision         string      `json:"decision"`
	ReasonCode       string      `json:"reason_code"`
	MatchedRuleIDs   []string    `json:"matched_rule_ids"`
	Obligations      Obligations `json:"obligations"`
	PolicyBundleHash string      `json:"policy_bundle_hash"`
}

// BundleInput describes one loaded bundle.
type BundleInput struct {
	Path              string `json:"path"`
	Hash              string `json:"hash"`
	Role              string `json:"role,omitempty"`
	SignatureVerified bool   `json:"signature_verified,omitempty"`
}

// Finding is one lint result.
type Finding struct {
	// Severity is "warning" or "error".
	Severity string `json:"severity"`
	RuleID   string `json:"rule_id,omitempty"`
	Code     string `json:"code"`
	Message  string `json:"message"`
}

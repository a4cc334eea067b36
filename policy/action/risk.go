package action

// Risk flags, computed from the action and never supplied by the agent.
const (
	RiskExec    = "risk.exec"
	RiskLargeIO = "risk.large_io"
	RiskNet     = "risk.net"
	RiskSecrets = "risk.secrets"
	RiskWrite   = "risk.write"
)

// Risk levels, derived from the flags for audit and the UI.
const (
	RiskLevelHigh   = "high"
	RiskLevelMedium = "medium"
	RiskLevelLow    = "low"
)

// LargeIOBytes is the canonical params size from which an action carries
// risk.large_io.
const LargeIOBytes = 32 << 10

// ComputeRiskFlags derives the risk flags of a from its type and the size of
// its canonical params. The result is sorted (the constants above are listed
// in order) and never nil; a nil Action has no flags.
func ComputeRiskFlags(a *Action) []string {
	flags := make([]string, 0, 2)
	if a == nil {
		return flags
	}
	if a.ActionType == TypeProcessExec {
		flags = append(flags, RiskExec)
	}
	if len(a.Params) >= LargeIOBytes {
		flags = append(flags, RiskLargeIO)
	}
	if a.ActionType == TypeNetHTTPRequest {
		flags = append(flags, RiskNet)
	}
	if a.ActionType == TypeSecretsCheckout {
		flags = append(flags, RiskSecrets)
	}
	if a.ActionType == TypeFSWrite || a.ActionType == TypeRepoApplyPatch {
		flags = append(flags, RiskWrite)
	}
	return flags
}

// RiskLevel is high with risk.exec or risk.secrets, medium with risk.net,
// risk.write or risk.large_io, and low otherwise.
func RiskLevel(flags []string) string {
	level := RiskLevelLow
	for _, f := range flags {
		switch f {
		case RiskExec, RiskSecrets:
			return RiskLevelHigh
		case RiskNet, RiskWrite, RiskLargeIO:
			level = RiskLevelMedium
		}
	}
	return level
}

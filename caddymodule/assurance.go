package caddymodule

// Assurance levels, from strongest to none. The level describes the
// deployment; it never changes a decision.
const (
	AssuranceStrong     = "STRONG"
	AssuranceGuarded    = "GUARDED"
	AssuranceBestEffort = "BEST_EFFORT"
	AssuranceNone       = "NONE"
)

// assuranceLevel derives the level from configuration and the evidence the
// operator declared. Only a controlled runtime (ci, k8s) with a strong
// guarantee and all three pieces of evidence is STRONG.
func assuranceLevel(rt *RuntimeConfig, au *AuditConfig, id *IdentityConfig, ex *ExecutorConfig) string {
	switch rt.DeploymentMode {
	case "remote_dev", "unmanaged":
		return AssuranceBestEffort
	case "ci", "k8s":
	default:
		return AssuranceNone
	}
	if !rt.StrongGuarantee {
		return AssuranceGuarded
	}
	if evidenceComplete(rt.Evidence, au, id, ex) {
		return AssuranceStrong
	}
	return AssuranceGuarded
}

func evidenceComplete(ev *EvidenceConfig, au *AuditConfig, id *IdentityConfig, ex *ExecutorConfig) bool {
	if ev == nil {
		return false
	}
	isolation := ev.RuntimeIsolationVerified && ex != nil && ex.SandboxProfile == "container"
	workload := ev.WorkloadIdentityVerified && id != nil && (id.JWT != nil || id.MTLS != nil) &&
		len(id.APIKeys) == 0 && id.APIKeysFile == ""
	return isolation && workload && ev.DurableAuditVerified && durableAudit(au)
}

func durableAudit(au *AuditConfig) bool {
	for _, s := range au.Sinks {
		if s.Type == "sqlite" || s.Type == "webhook" {
			return true
		}
	}
	return false
}

package errcode

// Codes of the stable HTTP error shape.
const (
	Validation        = "validation_error"
	Auth              = "auth_error"
	NotEnabled        = "not_enabled"
	NotFound          = "not_found"
	RateLimited       = "rate_limited"
	Approval          = "approval_error"
	ApprovalForbidden = "approval_forbidden"
	Audit             = "audit_error"
	Internal          = "internal_error"
	Method            = "method_not_allowed"
	TooLarge          = "request_too_large"
	Forbidden         = "forbidden"
	InvalidSession    = "invalid_session"
	SessionIdentity   = "session_identity_mismatch"
	SessionLimit      = "session_limit"
	Conflict          = "conflict"
	// StateUnavailable: the shared state (Redis) could not be reached;
	// the request is refused rather than decided on local state.
	StateUnavailable = "state_unavailable"
)

// Reason is the reason member of the error shape: "<code>: <message>".
func Reason(code, msg string) string { return code + ": " + msg }

package executor

import (
	"fmt"

	"github.com/caddy-nomos/nomos/audit"
)

// Reason codes of executor refusals and failures.
const (
	CodeSandboxRequired         = "sandbox_required"
	CodeSandboxViolation        = "sandbox_violation"
	CodeNetNotAllowlisted       = "net_not_allowlisted"
	CodeExecConstraintViolation = "exec_constraint_violation"
	CodeExecNotAllowlisted      = "exec_not_allowlisted"
	CodeInvalidParams           = "invalid_params"
	CodeInvalidResource         = "invalid_resource"
	CodeNotFound                = "not_found"
	CodeCredentialsUnavailable  = "credentials_unavailable"
	CodeRedirectBlocked         = "redirect_blocked"
	CodeExecutionError          = "execution_error"
	CodeUnsupportedAction       = "unsupported_action"
	// CodeNotAllowed refuses a decision other than ALLOW: the caller must
	// never ask, and the executor fails closed if it does.
	CodeNotAllowed = "not_allowed"
)

// Error is an executor refusal or failure. Message is already redacted.
type Error struct {
	// Code is the reason code, one of the Code constants.
	Code string
	// Classification is the audit result classification.
	Classification string
	Message        string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// classOf maps each reason code to its classification.
var classOf = map[string]string{
	CodeSandboxRequired:         audit.ResultSandboxViolation,
	CodeSandboxViolation:        audit.ResultSandboxViolation,
	CodeNetNotAllowlisted:       audit.ResultDeniedPolicy,
	CodeExecConstraintViolation: audit.ResultDeniedPolicy,
	CodeExecNotAllowlisted:      audit.ResultDeniedPolicy,
	CodeRedirectBlocked:         audit.ResultDeniedPolicy,
	CodeCredentialsUnavailable:  audit.ResultDeniedPolicy,
	CodeNotAllowed:              audit.ResultDeniedPolicy,
	CodeInvalidParams:           audit.ResultValidationError,
	CodeInvalidResource:         audit.ResultValidationError,
	CodeUnsupportedAction:       audit.ResultValidationError,
	CodeNotFound:                audit.ResultExecutionError,
	CodeExecutionError:          audit.ResultExecutionError,
}

// fail builds an Error; the message is redacted when the action finishes.
func fail(code, format string, args ...any) *Error {
	class, ok := classOf[code]
	if !ok {
		class = audit.ResultExecutionError
	}
	return &Error{Code: code, Classification: class, Message: fmt.Sprintf(format, args...)}
}

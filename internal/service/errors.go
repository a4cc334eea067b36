package service

import (
	"errors"
	"fmt"
	"net/http"
)

// Error codes of the stable HTTP error shape.
const (
	CodeValidation        = "validation_error"
	CodeAuth              = "auth_error"
	CodeNotEnabled        = "not_enabled"
	CodeNotFound          = "not_found"
	CodeRateLimited       = "rate_limited"
	CodeApproval          = "approval_error"
	CodeApprovalForbidden = "approval_forbidden"
	CodeAudit             = "audit_error"
	CodeInternal          = "internal_error"
	CodeMethod            = "method_not_allowed"
	CodeTooLarge          = "request_too_large"
)

// Error is a transport-level failure: the request was not evaluated, or its
// evidence could not be recorded. Policy outcomes are never an Error.
type Error struct {
	Status int
	Code   string
	Msg    string
}

func (e *Error) Error() string { return e.Code + ": " + e.Msg }

// Errorf builds an Error.
func Errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Msg: fmt.Sprintf(format, args...)}
}

// AsError maps any error to an *Error, defaulting to a 500 that does not leak
// the underlying message.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Status: http.StatusInternalServerError, Code: CodeInternal, Msg: "internal error"}
}

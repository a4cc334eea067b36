package service

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/caddy-nomos/nomos/internal/errcode"
	"github.com/caddy-nomos/nomos/internal/sharedstate"
)

// Error codes of the stable HTTP error shape; the list lives in errcode,
// shared by every front door.
const (
	CodeValidation        = errcode.Validation
	CodeAuth              = errcode.Auth
	CodeNotEnabled        = errcode.NotEnabled
	CodeNotFound          = errcode.NotFound
	CodeRateLimited       = errcode.RateLimited
	CodeApproval          = errcode.Approval
	CodeApprovalForbidden = errcode.ApprovalForbidden
	CodeAudit             = errcode.Audit
	CodeInternal          = errcode.Internal
	CodeMethod            = errcode.Method
	CodeTooLarge          = errcode.TooLarge
	CodeStateUnavailable  = errcode.StateUnavailable
)

// Error is a transport-level failure: the request was not evaluated, or its
// evidence could not be recorded. Policy outcomes are never an Error.
type Error struct {
	Status int
	Code   string
	Msg    string
}

func (e *Error) Error() string { return errcode.Reason(e.Code, e.Msg) }

// Errorf builds an Error.
func Errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Msg: fmt.Sprintf(format, args...)}
}

// stateError is the 503 of a request that is not an action decision (an
// approval decision, a report) refused because the shared state is down.
func stateError() *Error {
	return Errorf(http.StatusServiceUnavailable, CodeStateUnavailable, "shared state unavailable; retry later")
}

// isStateDown reports whether err says the shared state could not be
// reached.
func isStateDown(err error) bool { return errors.Is(err, sharedstate.ErrUnavailable) }

// AsError maps any error to an *Error, defaulting to a 500 that does not leak
// the underlying message.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Status: http.StatusInternalServerError, Code: CodeInternal, Msg: "internal error"}
}

package policy

import (
	"errors"
	"fmt"
)

// Decisions.
const (
	Allow           = "ALLOW"
	Deny            = "DENY"
	RequireApproval = "REQUIRE_APPROVAL"
)

// Reason codes of a Decision.
const (
	ReasonDenyByDefault           = "deny_by_default"
	ReasonDenyByRule              = "deny_by_rule"
	ReasonRequireApprovalByRule   = "require_approval_by_rule"
	ReasonAllowByRule             = "allow_by_rule"
	ReasonDenyByExecModelConflict = "deny_by_exec_model_conflict"
	ReasonDenyByEvaluationError   = "deny_by_evaluation_error"
)

// ErrBundle is wrapped by every error that loading or parsing a bundle returns.
var ErrBundle = errors.New("policy bundle error")

// ErrSignature is wrapped (besides ErrBundle) when a bundle signature is
// missing or does not verify.
var ErrSignature = errors.New("policy bundle signature verification failed")

// bundleError names the file and the JSON path of the offender, so an
// operator can fix a 2,000-line bundle without bisecting it.
type bundleError struct {
	file  string
	path  string
	msg   string
	cause error
}

func (e *bundleError) Error() string {
	s := "bundle " + e.file + ": "
	if e.path != "" {
		s += e.path + ": "
	}
	return s + e.msg
}

func (e *bundleError) Unwrap() []error {
	if e.cause != nil {
		return []error{ErrBundle, e.cause}
	}
	return []error{ErrBundle}
}

// pathError is a decoding error before the file name is known.
type pathError struct {
	path string
	msg  string
}

func (e *pathError) Error() string { return e.path + ": " + e.msg }

func errAt(path, format string, args ...any) error {
	return &pathError{path: path, msg: fmt.Sprintf(format, args...)}
}

// inFile attaches the file name to an error from the decoder or compiler.
func inFile(file string, err error) error {
	var pe *pathError
	if errors.As(err, &pe) {
		return &bundleError{file: file, path: pe.path, msg: pe.msg}
	}
	var be *bundleError
	if errors.As(err, &be) {
		return err
	}
	return &bundleError{file: file, msg: err.Error(), cause: err}
}

package executor

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"syscall"

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

// Error is an executor refusal or failure. Message is already redacted and
// never holds what the host's resolver, network or file system said (which
// names internal addresses, resolvers, certificate names and absolute
// paths): that detail goes to the server log only.
type Error struct {
	// Code is the reason code, one of the Code constants.
	Code string
	// Classification is the audit result classification.
	Classification string
	Message        string
	// detail is what the client must not see, for the server log.
	detail string
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
// An argument that is a host error (resolver, network, TLS, file system,
// process start) is replaced in the message by a stable, generic reason and
// kept as the detail for the server log, so no call site can leak one.
func fail(code, format string, args ...any) *Error {
	class, ok := classOf[code]
	if !ok {
		class = audit.ResultExecutionError
	}
	var detail []string
	for i, a := range args {
		if err, ok := a.(error); ok && isHostError(err) {
			detail = append(detail, err.Error())
			args[i] = publicReason(err)
		}
	}
	return &Error{Code: code, Classification: class, Message: fmt.Sprintf(format, args...), detail: strings.Join(detail, "; ")}
}

// hostError marks an error from the host's resolver, network or file
// system whatever its type (a Config.Resolver or DialContext may return
// anything). reason, when set, is what the client is told.
type hostError struct {
	reason string
	err    error
}

func (h *hostError) Error() string { return h.err.Error() }
func (h *hostError) Unwrap() error { return h.err }

// isHostError reports an error whose text comes from the host: it may name
// addresses, resolvers, certificate names or paths.
func isHostError(err error) bool {
	var (
		marked  *hostError
		pathErr *fs.PathError
		linkErr *os.LinkError
		sysErr  *os.SyscallError
		netErr  net.Error
		opErr   *net.OpError
		dnsErr  *net.DNSError
		addrErr *net.AddrError
		urlErr  *url.Error
		execErr *exec.Error
		certErr *tls.CertificateVerificationError
		hostErr x509.HostnameError
		caErr   x509.UnknownAuthorityError
		invErr  x509.CertificateInvalidError
		recErr  tls.RecordHeaderError
	)
	return errors.As(err, &marked) || errors.As(err, &pathErr) || errors.As(err, &linkErr) || errors.As(err, &sysErr) ||
		errors.As(err, &netErr) || errors.As(err, &opErr) || errors.As(err, &dnsErr) || errors.As(err, &addrErr) ||
		errors.As(err, &urlErr) || errors.As(err, &execErr) || errors.As(err, &certErr) || errors.As(err, &hostErr) ||
		errors.As(err, &caErr) || errors.As(err, &invErr) || errors.As(err, &recErr)
}

// publicReason is the stable reason a client sees for a host error.
func publicReason(err error) string {
	var (
		dnsErr  *net.DNSError
		certErr *tls.CertificateVerificationError
		hostErr x509.HostnameError
		caErr   x509.UnknownAuthorityError
		invErr  x509.CertificateInvalidError
		recErr  tls.RecordHeaderError
		netErr  net.Error
	)
	switch {
	case markedReason(err) != "":
		return markedReason(err)
	case errors.As(err, &dnsErr):
		return "host lookup failed"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return "timed out"
	case errors.As(err, &certErr), errors.As(err, &hostErr), errors.As(err, &caErr), errors.As(err, &invErr):
		return "certificate verification failed"
	case errors.As(err, &recErr):
		return "tls handshake failed"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "connection reset"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "host unreachable"
	case errors.Is(err, fs.ErrNotExist):
		return "no such file"
	case errors.Is(err, fs.ErrPermission):
		return "permission denied"
	case errors.As(err, &netErr):
		return "network error"
	}
	return "host error"
}

// markedReason is the reason of the innermost hostError that has one.
func markedReason(err error) string {
	reason := ""
	for ; err != nil; err = errors.Unwrap(err) {
		if h, ok := err.(*hostError); ok && h.reason != "" {
			reason = h.reason
		}
	}
	return reason
}

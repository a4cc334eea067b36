package caddymodule

import (
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-nomos/nomos/audit"
	"github.com/caddy-nomos/nomos/internal/service"
	"github.com/caddy-nomos/nomos/policy"
)

// approvalBody is the 403 a REQUIRE_APPROVAL gets: the error shape plus
// what the client needs to retry once a reviewer approved.
type approvalBody struct {
	Decision          string `json:"decision"`
	Reason            string `json:"reason"`
	ApprovalID        string `json:"approval_id"`
	ApprovalExpiresAt string `json:"approval_expires_at,omitempty"`
}

// refuse answers a decision other than ALLOW without calling next, then
// completes the action in audit.
func (h *GuardHandler) refuse(w http.ResponseWriter, r *http.Request, g *guarded) error {
	resp := g.auth.Response
	defer h.completeLater(r, g.auth, "", nil)
	switch {
	case resp.Decision == policy.RequireApproval:
		w.Header().Set(headerApprovalID, resp.ApprovalID)
		return writeJSON(w, http.StatusForbidden, approvalBody{
			Decision: resp.Decision, ApprovalID: resp.ApprovalID, ApprovalExpiresAt: resp.ApprovalExpiresAt,
			Reason: withMessage(resp.Reason, "approval required; retry the same request with header "+headerApprovalID+" once it is approved"),
		})
	case isLimitDenial(resp.Reason):
		w.Header().Set("Retry-After", strconv.FormatInt(max(1, resp.RetryAfterSeconds), 10))
		return writeJSON(w, http.StatusTooManyRequests, errorBody{Decision: policy.Deny, Reason: resp.Reason})
	case reasonCode(resp.Reason) == service.ReasonStateUnavailable:
		// Refused, but not by policy: the client may retry the same request.
		w.Header().Set("Retry-After", "1")
		return writeJSON(w, http.StatusServiceUnavailable, errorBody{Decision: policy.Deny,
			Reason: withMessage(resp.Reason, "shared state unavailable; retry later")})
	}
	return writeJSON(w, http.StatusForbidden, errorBody{Decision: policy.Deny, Reason: withMessage(resp.Reason, denialMessage(resp.Reason))})
}

// denialMessage says in words what a DENY reason code means.
func denialMessage(code string) string {
	switch code {
	case service.ReasonApprovalDenied:
		return "a reviewer denied the approval for this request"
	case service.ReasonApprovalsNotEnabled:
		return "this request needs an approval, and approvals are not enabled"
	}
	return "denied by policy"
}

// withMessage gives a bare reason code the "<code>: <message>" form.
func withMessage(reason, msg string) string {
	if strings.Contains(reason, ": ") {
		return reason
	}
	return reason + ": " + msg
}

// isLimitDenial reports a DENY by a rate limit or a loop breaker, which the
// guard answers 429 with Retry-After so HTTP clients back off.
func isLimitDenial(reason string) bool {
	code := reasonCode(reason)
	return code == service.ReasonRateLimitExceeded || code == service.ReasonLoopBreakerTripped
}

// forward calls next under the breaker with the response filtered, and
// completes the action with what happened.
func (h *GuardHandler) forward(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, g *guarded) error {
	red, err := redactorFor(h.app.red, g.auth.Obligations)
	if err != nil {
		h.completeLater(r, g.auth, audit.ResultInternalError, nil)
		return writeError(w, service.Errorf(http.StatusInternalServerError, service.CodeInternal, "redaction obligation cannot be applied"))
	}
	done, open := h.breaker.allow()
	if open {
		return h.breakerOpen(w, r, g)
	}
	g.auth.Response.ExecutionMode = service.ModeHTTPForwarded
	fw := newFilterWriter(r, w, red, g.auth.Obligations, done, h.Breaker.latencyThreshold())
	return h.serveFiltered(fw, r, next, g)
}

// breakerOpen answers 503 without calling next; the decided action is
// completed as UPSTREAM_UNAVAILABLE.
func (h *GuardHandler) breakerOpen(w http.ResponseWriter, r *http.Request, g *guarded) error {
	h.logger.Warn("guard breaker open; request not forwarded", zap.String("guard", h.Name), zap.String("action_id", g.auth.Response.ActionID))
	h.completeLater(r, g.auth, audit.ResultUpstreamUnavailable, map[string]any{"breaker_state": "open"})
	w.Header().Set("Retry-After", h.openRetryAfter())
	return writeError(w, service.Errorf(http.StatusServiceUnavailable, audit.ResultUpstreamUnavailable, "upstream circuit breaker is open"))
}

// openRetryAfter is the Retry-After of an open breaker: the open timeout
// bounds how long it can stay open.
func (h *GuardHandler) openRetryAfter() string {
	return strconv.Itoa(max(1, int(math.Ceil(time.Duration(h.Breaker.OpenTimeout).Seconds()))))
}

// serveFiltered runs next through the filter. A panic (reverse_proxy
// aborts a broken stream that way) is completed in audit, then goes on.
func (h *GuardHandler) serveFiltered(fw *filterWriter, r *http.Request, next caddyhttp.Handler, g *guarded) error {
	completed := false
	defer func() {
		if p := recover(); p != nil {
			if !completed {
				fw.abandon()
				h.complete(r, g, fw, outcomeOf(r, fw, nil, true))
			}
			panic(p)
		}
	}()
	err := next.ServeHTTP(fw, r)
	fw.finish(err)
	h.complete(r, g, fw, outcomeOf(r, fw, err, false))
	completed = true
	if fw.stop != nil {
		// The client already has a status line; ending the connection is
		// the only way left to tell it the body is incomplete.
		panic(http.ErrAbortHandler)
	}
	return err
}

// complete records action.completed with the response's status, size and
// duration, once the client has the response.
func (h *GuardHandler) complete(r *http.Request, g *guarded, fw *filterWriter, class string) {
	resp := g.auth.Response
	resp.StatusCode, resp.BytesWritten, resp.Truncated = fw.status, fw.written, fw.truncated
	meta := map[string]any{
		"status_code": fw.status, "bytes_written": fw.written,
		"upstream_duration_ms": time.Since(fw.start).Milliseconds(),
	}
	if fw.truncated {
		meta["truncated"] = true
	}
	h.completeLater(r, g.auth, class, meta)
}

// completeLater records the completion of a decided request (action.completed
// and trace.end) after the handler returned, so no audit commit holds the
// client's response: the decision was committed before anything went on.
// The App waits for these at Cleanup (see afterResponse).
func (h *GuardHandler) completeLater(r *http.Request, auth *service.Authorization, class string, meta map[string]any) {
	ctx := completionContext(r)
	h.app.after.run(func() { h.svc.Complete(ctx, auth, class, meta) })
}

// outcomeOf classifies how an allowed request ended.
func outcomeOf(r *http.Request, fw *filterWriter, err error, panicked bool) string {
	switch {
	case fw.truncated:
		return audit.ResultOutputLimit
	case errors.Is(fw.stop, errUnfilterable):
		return audit.ResultUpstreamError
	case canceled(r.Context(), err):
		return audit.ResultUpstreamCanceled
	case err != nil:
		return errorClass(err)
	case panicked || fw.status >= 500:
		return audit.ResultUpstreamError
	}
	return audit.ResultSuccess
}

// errorClass maps an error next returned (reverse_proxy's 502 for an
// unreachable upstream, 504 for a timeout) to its audit classification.
func errorClass(err error) string {
	switch statusOf(err) {
	case http.StatusGatewayTimeout:
		return audit.ResultUpstreamTimeout
	case http.StatusBadGateway, http.StatusServiceUnavailable:
		return audit.ResultUpstreamUnavailable
	}
	return audit.ResultUpstreamError
}

// statusOf is the status Caddy answers for err: a HandlerError's own, else
// 500.
func statusOf(err error) int {
	var he caddyhttp.HandlerError
	if errors.As(err, &he) && he.StatusCode != 0 {
		return he.StatusCode
	}
	return http.StatusInternalServerError
}

package caddymodule

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-nomos/nomos/audit"
	"github.com/caddy-nomos/nomos/internal/approvals"
	"github.com/caddy-nomos/nomos/internal/service"
	"github.com/caddy-nomos/nomos/policy/action"
)

// uiRoute is one endpoint of the UI's API. read endpoints need a reader;
// decide needs a decider; session needs only a principal.
type uiRoute struct {
	method string
	need   string
	serve  func(h *UIHandler, r *http.Request, c uiCaller, body []byte) (any, error)
}

const (
	needPrincipal = "principal"
	needReader    = "reader"
	needDecider   = "decider"
)

// uiRoutes lists the endpoints under /api/ui/.
func uiRoutes() map[string]uiRoute {
	return map[string]uiRoute{
		"session":          {http.MethodGet, needPrincipal, (*UIHandler).apiSession},
		"readiness":        {http.MethodGet, needReader, (*UIHandler).apiReadiness},
		"approvals":        {http.MethodGet, needReader, (*UIHandler).apiApprovals},
		"approvals/decide": {http.MethodPost, needDecider, (*UIHandler).apiDecide},
		"events":           {http.MethodGet, needReader, (*UIHandler).apiEvents},
		"trace":            {http.MethodGet, needReader, (*UIHandler).apiTrace},
		"upstreams":        {http.MethodGet, needReader, (*UIHandler).apiUpstreams},
		"pins/decide":      {http.MethodPost, needDecider, (*UIHandler).apiPinDecide},
		"explain":          {http.MethodPost, needReader, (*UIHandler).apiExplain},
	}
}

// serveAPI authenticates (principal from the headers before any body is
// read; a GET reads none), authorizes, checks CSRF on POST, and only then
// runs the endpoint inside a concurrency slot: an unauthenticated or slow
// client never holds one of the slots the app's doors share.
func (h *UIHandler) serveAPI(w http.ResponseWriter, r *http.Request, name string) error {
	route, ok := h.routes[name]
	if !ok {
		return writeError(w, service.Errorf(http.StatusNotFound, service.CodeNotEnabled, "no such endpoint"))
	}
	if r.Method != route.method {
		w.Header().Set("Allow", route.method)
		return writeError(w, service.Errorf(http.StatusMethodNotAllowed, service.CodeMethod, "use %s", route.method))
	}
	limit := int64(0)
	if route.method == http.MethodPost {
		limit = maxBody
	}
	body, id, e := h.auth.admit(h.app, r, limit, false)
	if e != nil {
		return writeError(w, e)
	}
	c, e := h.authorize(r, id, route)
	if e != nil {
		return writeError(w, e)
	}
	if !h.app.acquire() {
		return writeError(w, service.Errorf(http.StatusTooManyRequests, service.CodeRateLimited, "concurrency limit reached"))
	}
	defer h.app.release()
	setPlaceholder(r, "principal", c.principal)
	resp, err := route.serve(h, r, c, body)
	if err != nil {
		se := service.AsError(err)
		if se.Status >= 500 {
			h.logger.Error("ui request failed: " + se.Code)
		}
		return writeError(w, se)
	}
	return writeJSON(w, http.StatusOK, resp)
}

func (h *UIHandler) authorize(r *http.Request, id action.Identity, route uiRoute) (uiCaller, *service.Error) {
	c, e := h.callerOf(id)
	if e != nil {
		return c, e
	}
	switch {
	case route.need == needReader && !c.canRead:
		return c, service.Errorf(http.StatusForbidden, service.CodeApprovalForbidden, "principal may not read the operator UI")
	case route.need == needDecider && !c.canDecide:
		return c, service.Errorf(http.StatusForbidden, service.CodeApprovalForbidden, "principal may not decide approvals")
	}
	if route.method == http.MethodPost {
		if e := h.checkCSRF(r, c.principal); e != nil {
			return c, e
		}
	}
	return c, nil
}

// uiSession tells the page who is signed in and what they may do.
type uiSession struct {
	Principal   string `json:"principal"`
	CanRead     bool   `json:"can_read"`
	CanDecide   bool   `json:"can_decide"`
	CSRFToken   string `json:"csrf_token"`
	Environment string `json:"environment"`
	Version     string `json:"engine_version"`
}

func (h *UIHandler) apiSession(_ *http.Request, c uiCaller, _ []byte) (any, error) {
	return uiSession{Principal: c.principal, CanRead: c.canRead, CanDecide: c.canDecide,
		CSRFToken: h.csrfToken(c.principal), Environment: h.app.Environment, Version: service.EngineVersion}, nil
}

// apiReadiness runs the doctor checks against the running config.
func (h *UIHandler) apiReadiness(r *http.Request, _ uiCaller, _ []byte) (any, error) {
	in := &doctorInput{ctx: h.ctx, app: h.app, live: h.app}
	if httpApp, err := h.ctx.AppIfConfigured("http"); err == nil {
		if a, ok := httpApp.(*caddyhttp.App); ok {
			in.servers = serversFromApp(a)
		}
	}
	return finishReport(in.run(r.Context()), in.assurance()), nil
}

// uiApproval is an approval as the inbox shows it.
type uiApproval struct {
	approvals.Record
	ExpiresInSeconds int64 `json:"expires_in_seconds"`
	Expired          bool  `json:"expired"`
}

// uiApprovals is the inbox: pending first, then the most recent decided.
type uiApprovals struct {
	Now       time.Time    `json:"now"`
	Pending   []uiApproval `json:"pending"`
	Decided   []uiApproval `json:"decided"`
	Approvers []string     `json:"approvers"`
}

func (h *UIHandler) apiApprovals(r *http.Request, _ uiCaller, _ []byte) (any, error) {
	st := h.app.approvals
	if st == nil {
		return nil, service.Errorf(http.StatusNotFound, service.CodeNotEnabled, "approvals are not enabled")
	}
	pending, err := st.List(r.Context(), approvals.Filter{Status: approvals.Pending, Limit: maxInboxPending})
	if err != nil {
		return nil, service.Errorf(http.StatusInternalServerError, service.CodeInternal, "approval store unavailable")
	}
	recent, err := st.List(r.Context(), approvals.Filter{Limit: 2 * maxInboxDecided})
	if err != nil {
		return nil, service.Errorf(http.StatusInternalServerError, service.CodeInternal, "approval store unavailable")
	}
	now := time.Now()
	out := uiApprovals{Now: now.UTC(), Pending: []uiApproval{}, Decided: []uiApproval{}, Approvers: h.app.Approvals.Approvers}
	for _, rec := range pending {
		if !rec.Expired(now) {
			out.Pending = append(out.Pending, inboxEntry(rec, now))
		}
	}
	for _, rec := range recent {
		if rec.Status != approvals.Pending && len(out.Decided) < maxInboxDecided {
			out.Decided = append(out.Decided, inboxEntry(rec, now))
		}
	}
	reverse(out.Pending) // soonest to expire first
	return out, nil
}

// The inbox shows at most this many pending and recently decided records.
const (
	maxInboxPending = 500
	maxInboxDecided = 20
)

func inboxEntry(rec approvals.Record, now time.Time) uiApproval {
	return uiApproval{Record: rec, ExpiresInSeconds: int64(rec.ExpiresAt.Sub(now).Seconds()), Expired: rec.Expired(now)}
}

func reverse[T any](s []T) {
	for i, j := 0, len(s)-1; i < j; i, j = i+1, j-1 {
		s[i], s[j] = s[j], s[i]
	}
}

// apiDecide goes through the same service call as POST /approvals/decide,
// so approver authorization and audit are the same.
func (h *UIHandler) apiDecide(r *http.Request, c uiCaller, body []byte) (any, error) {
	resp, err := h.svc.Decide(r.Context(), body, c.principal)
	if err == nil {
		h.logger.Info("approval decided in the operator UI", zap.String("approval_id", resp.ApprovalID),
			zap.String("status", resp.Status), zap.String("principal", c.principal))
	}
	return resp, err
}

// apiEvents searches the audit log.
func (h *UIHandler) apiEvents(r *http.Request, _ uiCaller, _ []byte) (any, error) {
	if h.events == nil {
		return nil, service.Errorf(http.StatusNotFound, service.CodeNotEnabled, "no sqlite audit sink: search needs one")
	}
	q, err := searchQuery(r)
	if err != nil {
		return nil, err
	}
	page, err := h.events.Search(r.Context(), q)
	if err != nil {
		return nil, service.Errorf(http.StatusInternalServerError, service.CodeInternal, "audit log unavailable")
	}
	if page.Events == nil {
		page.Events = []audit.StoredEvent{}
	}
	return page, nil
}

func searchQuery(r *http.Request) (audit.SearchQuery, error) {
	v := r.URL.Query()
	q := audit.SearchQuery{TraceID: v.Get("trace_id"), Principal: v.Get("principal"),
		Decision: strings.ToUpper(v.Get("decision")), EventType: v.Get("event_type")}
	var err error
	if q.Since, err = timeParam(v.Get("since")); err != nil {
		return q, err
	}
	if q.Until, err = timeParam(v.Get("until")); err != nil {
		return q, err
	}
	if s := v.Get("before"); s != "" {
		if q.Before, err = strconv.ParseInt(s, 10, 64); err != nil || q.Before < 0 {
			return q, service.Errorf(http.StatusBadRequest, service.CodeValidation, "before must be a sequence number")
		}
	}
	if s := v.Get("limit"); s != "" {
		if q.Limit, err = strconv.Atoi(s); err != nil || q.Limit < 1 || q.Limit > 200 {
			return q, service.Errorf(http.StatusBadRequest, service.CodeValidation, "limit must be 1 to 200")
		}
	}
	return q, nil
}

func timeParam(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return t, service.Errorf(http.StatusBadRequest, service.CodeValidation, "times are RFC 3339, e.g. 2026-01-02T15:04:05Z")
	}
	return t, nil
}

// apiTrace returns every event of one trace, oldest first: the timeline.
func (h *UIHandler) apiTrace(r *http.Request, _ uiCaller, _ []byte) (any, error) {
	id := r.URL.Query().Get("trace_id")
	if id == "" {
		return nil, service.Errorf(http.StatusBadRequest, service.CodeValidation, "trace_id is required")
	}
	if h.events == nil {
		return nil, service.Errorf(http.StatusNotFound, service.CodeNotEnabled, "no sqlite audit sink: timelines need one")
	}
	page, err := h.events.Search(r.Context(), audit.SearchQuery{TraceID: id, Limit: 1000})
	if err != nil {
		return nil, service.Errorf(http.StatusInternalServerError, service.CodeInternal, "audit log unavailable")
	}
	events := page.Events
	if events == nil {
		events = []audit.StoredEvent{}
	}
	reverse(events)
	return map[string]any{"trace_id": id, "events": events, "truncated": page.Next != 0}, nil
}

// uiExplainRequest is the explain form: an action envelope and, when the
// reader asks on behalf of someone, the principal and agent to decide for.
type uiExplainRequest struct {
	Action    json.RawMessage `json:"action"`
	Principal string          `json:"principal,omitempty"`
	Agent     string          `json:"agent,omitempty"`
}

// apiExplain decides without effects: Service.Explain creates no
// approval, runs nothing and writes no execution audit.
func (h *UIHandler) apiExplain(r *http.Request, c uiCaller, body []byte) (any, error) {
	var req uiExplainRequest
	if err := json.Unmarshal(body, &req); err != nil || len(req.Action) == 0 {
		return nil, service.Errorf(http.StatusBadRequest, service.CodeValidation, `body must be {"action": <envelope>, "principal": ..., "agent": ...}`)
	}
	id := action.Identity{Principal: c.principal, Agent: "nomos-ui"}
	if req.Principal != "" {
		id.Principal = req.Principal
	}
	if req.Agent != "" {
		id.Agent = req.Agent
	}
	return h.svc.Explain(r.Context(), req.Action, id)
}

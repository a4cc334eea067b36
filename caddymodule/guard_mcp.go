package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-nomos/nomos/audit"
	"github.com/caddy-nomos/nomos/internal/errcode"
	"github.com/caddy-nomos/nomos/internal/jsonrpc"
	"github.com/caddy-nomos/nomos/internal/service"
	"github.com/caddy-nomos/nomos/mcp"
	"github.com/caddy-nomos/nomos/policy"
	"github.com/caddy-nomos/nomos/policy/action"
)

// GuardMCPConfig is the MCP mode of a nomos_guard: the requests are the
// Streamable HTTP transport of a remote MCP server that the next handler
// (reverse_proxy) reaches. They are governed on the MCP doors' one path,
// mcp.Path, exactly as nomos_mcp governs them.
type GuardMCPConfig struct {
	// Server names the remote MCP server in actions (mcp://<server>/<tool>)
	// and audit (upstream_server): letters, digits, '-', '_' and '.'.
	// Default: none (required).
	Server string `json:"server"`
	MCPEndpointConfig
}

// validate refuses the HTTP mapping settings, which MCP mode replaces by
// the MCP action model.
func (c *GuardMCPConfig) validate(h *GuardHandler) error {
	if !mcp.ValidServerName(c.Server) {
		return fmt.Errorf("nomos_guard: mcp: server %q must be non-empty letters, digits, '-', '_' or '.'", c.Server)
	}
	if h.ActionType != "" || h.Resource != "" || len(h.Params) > 0 || len(h.BodyParams) > 0 || len(h.ParamHeaders) > 0 {
		return errors.New("nomos_guard: mcp mode takes its actions from the MCP messages; action_type, resource, param, body_param and param_headers do not apply")
	}
	return nil
}

// guardMCP is the provisioned MCP mode of a guard.
type guardMCP struct {
	path     *mcp.Path
	sessions *mcpBindings
	poolKey  string
}

// bindMCP builds the governed-call path and takes the session bindings
// from the pool, so an unchanged reload keeps its clients' sessions.
func (h *GuardHandler) bindMCP(app *App) error {
	gov := &governor{svc: h.svc, red: app.red, after: &app.after}
	m := &guardMCP{path: mcp.NewPath(gov, mcp.DownstreamStreamableHTTP, app.slog.With("guard", h.Name))}
	m.poolKey = app.uniqueGuardKey(configKey("guard_mcp_sessions", h.Name, h.MCP))
	var err error
	m.sessions, err = loadPooled(m.poolKey, func() (*mcpBindings, func() error, error) {
		b, err := newMCPBindings(h.MCP)
		return b, nil, err
	})
	if err != nil {
		return fmt.Errorf("nomos_guard: mcp sessions: %w", err)
	}
	h.mcp = m
	return nil
}

// mcpRequest is one MCP request through the guard.
type mcpRequest struct {
	h    *GuardHandler
	w    http.ResponseWriter
	r    *http.Request
	next caddyhttp.Handler
	body []byte
	id   mcp.Identity
	msg  *jsonrpc.Message // nil for GET and DELETE
	// holdsSlot: the request holds a concurrency slot (see serveMCP).
	holdsSlot bool
}

// releaseSlot gives the request's concurrency slot back, once.
func (q *mcpRequest) releaseSlot() {
	if q.holdsSlot {
		q.holdsSlot = false
		q.h.app.release()
	}
}

// serveMCP is the guard's MCP mode: the Streamable HTTP checks of nomos_mcp,
// the session binding, then each message governed on mcp.Path before next
// carries it to the remote server.
func (h *GuardHandler) serveMCP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if r.Method != http.MethodPost && r.Method != http.MethodGet && r.Method != http.MethodDelete {
		w.Header().Set("Allow", "GET, POST, DELETE")
		return mcpDeny(w, http.StatusMethodNotAllowed, errcode.Method, "use POST, GET or DELETE")
	}
	if reason := mcp.CheckOriginHost(r, h.MCP.AllowedOrigins, h.MCP.AllowedHosts); reason != "" {
		return mcpDeny(w, http.StatusForbidden, errcode.Forbidden, reason)
	}
	if isUpgrade(r) {
		return mcpDeny(w, http.StatusBadRequest, errcode.Validation, "protocol upgrades cannot be governed by nomos_guard")
	}
	q, e := h.admitMCP(w, r, next)
	if e != nil {
		return writeError(w, e)
	}
	// The slot covers the checks and the decision, not the upstream
	// exchange: carry releases it before next runs.
	if !h.app.acquire() {
		return writeError(w, service.Errorf(http.StatusTooManyRequests, service.CodeRateLimited, "concurrency limit reached"))
	}
	q.holdsSlot = true
	defer q.releaseSlot()
	q.r = q.r.WithContext(service.WithFrontDoor(q.r.Context(), service.FrontDoorGuard))
	if r.Method != http.MethodPost {
		return q.serveStream()
	}
	return q.servePost()
}

// mcpDeny writes the error shape nomos_mcp answers transport failures with.
func mcpDeny(w http.ResponseWriter, status int, code, msg string) error {
	return writeJSON(w, status, errorBody{Decision: policy.Deny, Reason: errcode.Reason(code, msg)})
}

// admitMCP reads the body and authenticates inside a concurrency slot.
func (h *GuardHandler) admitMCP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) (*mcpRequest, *service.Error) {
	maxBody := int64(0) // a GET or DELETE has no body to read
	if r.Method == http.MethodPost {
		maxBody = h.MaxBodyBytes
	}
	body, id, e := h.admit(h.app, r, maxBody, true)
	if e != nil {
		return nil, e
	}
	setPlaceholder(r, "principal", id.Principal)
	stripNomosHeaders(r, h.app.trustedHeaders())
	if r.Method == http.MethodPost {
		// Resumption is a GET's: a server that replayed a stream on a POST
		// could send an earlier call's answer under this request's id,
		// shaped by this request's decision.
		r.Header.Del("Last-Event-ID")
	}
	r.Body = newBodyReader(body)
	r.ContentLength, r.TransferEncoding = int64(len(body)), nil
	return &mcpRequest{h: h, w: w, r: r, next: next, body: body, id: mcp.Identity{Principal: id.Principal, Agent: id.Agent}}, nil
}

// serveStream checks the session of a GET (the server's stream) or DELETE
// and carries it on; a stream still has its server requests governed.
func (q *mcpRequest) serveStream() error {
	sid, ok := q.session()
	if !ok {
		return nil
	}
	if sid == "" {
		return mcpDeny(q.w, http.StatusBadRequest, errcode.InvalidSession, "missing Mcp-Session-Id")
	}
	x := q.exchange(sid, nil)
	err := q.carry(x, nil)
	if q.r.Method == http.MethodDelete && err == nil && (x.status/100 == 2 || x.status == http.StatusNotFound) {
		q.h.mcp.sessions.unbind(sid)
	}
	x.rethrow()
	return err
}

// session applies the binding of the Mcp-Session-Id the request presents:
// sent twice 400 (the server might read the other one), unknown or
// expired 404, another principal's 403. A refusal has been answered; a
// request without one passes with sid "".
func (q *mcpRequest) session() (sid string, ok bool) {
	ids := q.r.Header.Values(mcp.HeaderSessionID)
	switch {
	case len(ids) == 0:
		return "", true
	case len(ids) > 1:
		_ = mcpDeny(q.w, http.StatusBadRequest, errcode.InvalidSession, "Mcp-Session-Id must be sent once")
		return "", false
	}
	status, code, msg := q.h.mcp.sessions.check(ids[0], q.id)
	if status == 0 {
		return ids[0], true
	}
	if status == http.StatusForbidden {
		q.h.logger.Warn("guard mcp session presented by another principal", zap.String("guard", q.h.Name), zap.String("principal", q.id.Principal))
	}
	_ = mcpDeny(q.w, status, code, msg)
	return "", false
}

// servePost decodes the JSON-RPC message strictly, as nomos_mcp does, and
// routes it.
func (q *mcpRequest) servePost() error {
	if ct := q.r.Header.Get("Content-Type"); ct != "" {
		if mt, _, _ := mime.ParseMediaType(ct); mt != "application/json" {
			return mcpDeny(q.w, http.StatusUnsupportedMediaType, errcode.Validation, "Content-Type must be application/json")
		}
	}
	m, err := mcp.DecodeMessage(q.body)
	if err != nil {
		return writeRaw(q.w, http.StatusBadRequest, jsonrpc.ErrorResponse(nil, jsonrpc.CodeInvalidRequest, "invalid json-rpc message: "+err.Error(), nil))
	}
	if reason := mcp.CheckRoutingHeaders(q.r, m); reason != "" {
		return writeRaw(q.w, http.StatusBadRequest, jsonrpc.ErrorResponse(m.ID, jsonrpc.CodeInvalidRequest, reason, nil))
	}
	q.msg = m
	sid, ok := q.session() // an initialize that presents one is checked too
	if !ok {
		return nil
	}
	if m.IsRequest() && m.Method == "initialize" {
		return q.initialize()
	}
	if m.IsNotification() && !mcp.ClientNotifications[m.Method] {
		// A request sent without an id (tools/call as a notification) is
		// never decided: it is not carried to a server that might run it.
		// nomos_mcp drops such notifications alike.
		q.h.logger.Debug("guard dropped a client notification it does not carry", zap.String("guard", q.h.Name),
			zap.String("principal", q.id.Principal), zap.String("method", m.Method))
		q.w.WriteHeader(http.StatusAccepted)
		return nil
	}
	if !m.IsRequest() { // the notifications above and the client's answers pass
		return q.pass(sid)
	}
	return q.request(sid)
}

// writeRaw writes an already encoded JSON body.
func writeRaw(w http.ResponseWriter, status int, body []byte) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, err := w.Write(body)
	return err
}

// initialize refuses a principal at its session cap, then binds the
// session the upstream issues to the caller before the client sees it.
func (q *mcpRequest) initialize() error {
	b := q.h.mcp.sessions
	if !b.initLimit.Allow(q.id.Principal, b.now()) {
		q.h.logger.Warn("guard mcp initialize rate limited", zap.String("guard", q.h.Name), zap.String("principal", q.id.Principal))
		return mcpDeny(q.w, http.StatusTooManyRequests, errcode.RateLimited, "too many initialize requests; retry later")
	}
	if b.full(q.id.Principal) {
		q.h.logger.Warn("guard mcp session limit reached", zap.String("guard", q.h.Name), zap.String("principal", q.id.Principal))
		return mcpDeny(q.w, http.StatusTooManyRequests, errcode.SessionLimit,
			fmt.Sprintf("the principal holds %d live sessions; end one with DELETE or let one expire", b.perPrincipal))
	}
	x := q.exchange("", nil)
	x.bindTo = b
	err := q.carry(x, nil)
	x.rethrow()
	return err
}

// request routes a client request: governed surfaces through mcp.Path,
// lists filtered, the rest of the protocol carried as nomos_mcp relays it,
// and any other method answered as unknown, as nomos_mcp does.
func (q *mcpRequest) request(sid string) error {
	switch q.msg.Method {
	case "tools/call":
		return q.callTool(sid)
	case "prompts/get":
		return q.getPrompt(sid)
	case "resources/read":
		return q.readResource(sid)
	case "completion/complete":
		return q.complete(sid)
	case "resources/subscribe", "resources/unsubscribe":
		return q.subscribe(sid)
	case "tools/list", "prompts/list", "resources/list", "ping", "resources/templates/list", "logging/setLevel":
		return q.pass(sid)
	}
	return writeRaw(q.w, http.StatusOK, jsonrpc.ErrorResponse(q.msg.ID, jsonrpc.CodeMethodNotFound, "method not found: "+q.msg.Method, nil))
}

// exchange prepares the shaping of the response to this request.
func (q *mcpRequest) exchange(sid string, gov *governedCall) *mcpExchange {
	x := &mcpExchange{q: q, sid: sid, gov: gov}
	if q.msg != nil && q.msg.IsRequest() {
		x.reqID, x.method = q.msg.ID, q.msg.Method
	}
	return x
}

// inSession adds the guard's evidence and the session's trace to req, as
// the gateway does for its sessions.
func (q *mcpRequest) inSession(req mcp.AuthzRequest, sid, key, value string) mcp.AuthzRequest {
	req.Metadata = map[string]string{"transport": guardTransport, "guard": q.h.Name, "upstream_server": q.h.MCP.Server}
	if key != "" {
		req.Metadata[key] = value
	}
	if sid != "" {
		req.TraceID = "mcp-" + sid
		req.Metadata["downstream_session_id"] = sid
	}
	return req
}

// guardTransport labels the front door in audit (transport), beside the
// downstream_transport every MCP door records.
const guardTransport = "nomos_guard"

// callTool governs tools/call as mcp.call. A tool hidden by policy answers
// exactly as an unknown one, before its arguments are looked at.
func (q *mcpRequest) callTool(sid string) error {
	var p struct {
		Name      string          `json:"name"`
		Arguments json.RawMessage `json:"arguments"`
	}
	bad := json.Unmarshal(q.msg.Params, &p) != nil || p.Name == ""
	// The call is bound to the definition this session was shown; a
	// session shown none (or no session) has no fingerprint.
	fp := ""
	if sid != "" && !bad {
		fp = q.h.mcp.sessions.toolFingerprint(sid, p.Name)
	}
	bare := q.inSession(mcp.NewRequest(q.id, action.TypeMCPCall, q.h.MCP.Server, []string{p.Name}, nil), sid, "upstream_tool", p.Name).WithToolFingerprint(fp)
	if bad {
		const reason = "tools/call needs a tool name"
		q.refuse(bare, audit.ResultValidationError, reason)
		return writeRaw(q.w, http.StatusOK, jsonrpc.ErrorResponse(q.msg.ID, jsonrpc.CodeInvalidParams, reason, nil))
	}
	if !q.h.mcp.path.Visible(q.r.Context(), bare) {
		return q.unknown(bare, mcp.UnknownReason("tool", p.Name))
	}
	req, params, err := q.callRequest(sid, p.Name, p.Arguments)
	if err != nil {
		reason := audit.ResultValidationError + ": " + err.Error()
		bare.ApprovalID = req.ApprovalID
		q.refuse(bare, audit.ResultValidationError, reason)
		return writeRaw(q.w, http.StatusOK, mcp.ToolErrorResult(q.msg.ID, audit.ResultValidationError, reason))
	}
	return q.govern(sid, req.WithToolFingerprint(fp), params, "content", mcp.DeniedToolResult)
}

// callRequest builds the mcp.call of a tool call and the params to send
// on: the arguments without approval_id, which goes to the request.
func (q *mcpRequest) callRequest(sid, tool string, rawArgs json.RawMessage) (mcp.AuthzRequest, json.RawMessage, error) {
	args, approvalID, err := mcp.SplitApproval(rawArgs)
	if err != nil {
		return mcp.AuthzRequest{ApprovalID: approvalID}, nil, err
	}
	req, err := mcp.NewCallRequest(q.id, q.h.MCP.Server, tool, args)
	if err != nil {
		return mcp.AuthzRequest{ApprovalID: approvalID}, nil, err
	}
	params, err := setParam(q.msg.Params, "arguments", args)
	req = q.inSession(req, sid, "upstream_tool", tool)
	req.ApprovalID = approvalID
	return req, params, err
}

// getPrompt governs prompts/get as mcp.prompt_get.
func (q *mcpRequest) getPrompt(sid string) error {
	var p struct {
		Name      string          `json:"name"`
		Arguments json.RawMessage `json:"arguments"`
	}
	_ = json.Unmarshal(q.msg.Params, &p)
	req := q.inSession(mcp.PromptRequest(q.id, q.h.MCP.Server, p.Name, p.Arguments), sid, "prompt", p.Name)
	if p.Name == "" || !q.h.mcp.path.Visible(q.r.Context(), req) {
		return q.unknown(req, mcp.UnknownReason("prompt", p.Name))
	}
	return q.govern(sid, req, nil, "messages", mcp.DeniedError)
}

// readResource governs resources/read as mcp.resource_read.
func (q *mcpRequest) readResource(sid string) error {
	uri := mcp.MessageName(q.msg)
	req := q.inSession(mcp.ResourceRequest(q.id, q.h.MCP.Server, uri), sid, "upstream_uri", uri)
	if uri == "" || !q.h.mcp.path.Visible(q.r.Context(), req) {
		return q.unknown(req, mcp.UnknownReason("resource", uri))
	}
	return q.govern(sid, req, nil, "contents", mcp.DeniedError)
}

// complete governs completion/complete as mcp.completion; the ref must be
// visible both as a completion and as the prompt or resource it names.
func (q *mcpRequest) complete(sid string) error {
	ref := mcp.CompletionRefOf(q.msg.Params)
	target := ref.URI
	if ref.Type == "ref/prompt" {
		target = ref.Name
	}
	completion, named := mcp.CompletionRequests(q.id, q.h.MCP.Server, ref.Type, target)
	req := q.inSession(completion, sid, "completion_ref", target)
	ctx := q.r.Context()
	if target == "" || !q.h.mcp.path.Visible(ctx, req) || !q.h.mcp.path.Visible(ctx, named) {
		return q.unknown(req, "unknown completion ref")
	}
	return q.govern(sid, req, nil, "", mcp.DeniedError)
}

// subscribe carries resources/subscribe and unsubscribe of a resource the
// caller can see; a hidden one answers as unknown.
func (q *mcpRequest) subscribe(sid string) error {
	uri := mcp.MessageName(q.msg)
	if uri == "" || !q.h.mcp.path.Visible(q.r.Context(), mcp.ResourceRequest(q.id, q.h.MCP.Server, uri)) {
		return writeRaw(q.w, http.StatusOK, mcp.UnknownError(q.msg.ID, mcp.UnknownReason("resource", uri)))
	}
	return q.pass(sid)
}

// pass carries a message nothing is decided on; its response is still
// shaped (lists filtered, server requests governed).
func (q *mcpRequest) pass(sid string) error {
	x := q.exchange(sid, nil)
	err := q.carry(x, nil)
	x.rethrow()
	return err
}

// unknown records and answers a name that does not exist for the caller.
func (q *mcpRequest) unknown(req mcp.AuthzRequest, reason string) error {
	q.refuse(req, audit.ResultValidationError, reason)
	return writeRaw(q.w, http.StatusOK, mcp.UnknownError(q.msg.ID, reason))
}

func (q *mcpRequest) refuse(req mcp.AuthzRequest, class, reason string) {
	q.h.mcp.path.Refuse(q.r.Context(), req, class, reason)
}

// governedCall is the decision a response is shaped with.
type governedCall struct {
	res    mcp.AuthzResult
	capKey string
}

// govern runs req on mcp.Path: only an ALLOW reaches next, with params
// (when set) replacing the request's params; a refusal is answered with
// deny's shape of DenialText.
func (q *mcpRequest) govern(sid string, req mcp.AuthzRequest, params json.RawMessage, capKey string, deny func(json.RawMessage, mcp.AuthzResult) []byte) error {
	var err error
	var x *mcpExchange
	res, ok := q.h.mcp.path.Run(q.r.Context(), req, func(res mcp.AuthzResult) mcp.Outcome {
		q.decided(res)
		x = q.exchange(sid, &governedCall{res: res, capKey: capKey})
		err = q.carry(x, params)
		return x.outcome(q.r.Context(), err)
	})
	if !ok {
		q.decided(res)
		return writeRaw(q.w, http.StatusOK, deny(q.msg.ID, res))
	}
	x.rethrow() // after the completion is queued
	if x.breakerOpen || err != nil && !x.sent {
		// Nothing reached the client yet: it reads the failure as
		// nomos_mcp answers it, not as a bare HTTP error.
		class := x.outcome(q.r.Context(), err).Classification
		return writeRaw(q.w, http.StatusOK, mcp.UpstreamFailure(q.msg.ID, q.msg.Method, class, q.h.MCP.Server))
	}
	return err
}

// decided sets the decision placeholders and the action id header.
func (q *mcpRequest) decided(res mcp.AuthzResult) {
	if auth, ok := res.Handle.(*service.Authorization); ok {
		setDecisionPlaceholders(q.r, auth.Response)
		setPlaceholder(q.r, "approval_id", auth.Response.ApprovalID)
		q.w.Header().Set(headerActionID, auth.Response.ActionID)
	}
}

// setParam replaces one member of a request's params.
func setParam(raw json.RawMessage, key string, value json.RawMessage) (json.RawMessage, error) {
	var p map[string]json.RawMessage
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, fmt.Errorf("params must be an object")
	}
	p[key] = value
	return json.Marshal(p)
}

// carry calls next under the breaker with the response shaped by x. When
// params is set, the forwarded message carries it in place of the
// client's params (the approval id removed).
func (q *mcpRequest) carry(x *mcpExchange, params json.RawMessage) error {
	q.releaseSlot()
	r := q.r
	if params != nil {
		body, err := withParams(q.msg, params)
		if err != nil {
			return err
		}
		r.Body, r.ContentLength = newBodyReader(body), int64(len(body))
	}
	done, open := q.h.breaker.allow()
	if open {
		x.breakerOpen = true
		q.w.Header().Set("Retry-After", q.h.openRetryAfter())
		if x.gov != nil {
			return nil // answered by govern once the outcome is queued
		}
		return writeError(q.w, service.Errorf(http.StatusServiceUnavailable, audit.ResultUpstreamUnavailable, "upstream circuit breaker is open"))
	}
	fw := newFilterWriter(r, q.w, nil, policy.Obligations{}, done, q.h.Breaker.latencyThreshold())
	fw.shaper = x
	return serveMCPFiltered(fw, r, q.next, x)
}

// withParams re-encodes msg with other params.
func withParams(m *jsonrpc.Message, params json.RawMessage) ([]byte, error) {
	out := *m
	out.Params = params
	return json.Marshal(&out)
}

// serveMCPFiltered runs next through the filter. A panic of next
// (reverse_proxy aborts a broken stream that way), or a response that
// could not be delivered whole, is kept for x.rethrow, which the caller
// runs once the outcome is queued for audit.
func serveMCPFiltered(fw *filterWriter, r *http.Request, next caddyhttp.Handler, x *mcpExchange) (err error) {
	defer func() {
		if p := recover(); p != nil {
			fw.abandon()
			x.panicked = p
		}
		x.status, x.stop, x.sent = fw.status, fw.stop, fw.wroteHeader
	}()
	err = next.ServeHTTP(fw, r)
	fw.finish(err)
	return err
}

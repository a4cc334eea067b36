package caddymodule

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-nomos/nomos/internal/redact"
	"github.com/caddy-nomos/nomos/internal/service"
	"github.com/caddy-nomos/nomos/policy/action"
)

// guardMapping turns a request into the envelope the guard decides in
// plain HTTP mode. MCP mode (nomos_guard { mcp <server> }) does not map
// requests itself: it builds the MCP doors' requests with the mcp
// package's builders and decides them on mcp.Path (guard_mcp.go).
type guardMapping interface {
	// envelope builds the action for r. On a refusal it returns the
	// error and, when the action type and resource were known, an envelope
	// without request params for the audit record.
	envelope(r *http.Request, body []byte) (*action.Envelope, error)
}

// Param names the HTTP mapping sets itself.
const (
	paramMethod     = "method"
	paramQuery      = "query"
	paramHeaders    = "headers"
	paramBodySHA256 = "body_sha256"
)

// placeholderEscapedPath is the request path as the client escaped it, the
// path reverse_proxy sends on, for resource templates.
const placeholderEscapedPath = "nomos.request.escaped_path"

// methodOverrideHeaders make many frameworks run a request as another
// method than the one policy decides on; the guard refuses them.
var methodOverrideHeaders = []string{"X-Http-Method-Override", "X-Http-Method", "X-Method-Override"}

// headerApprovalID is how a client presents an approval on its retry.
const headerApprovalID = "X-Nomos-Approval-Id"

// headerActionID tells the client which audited action its request was.
const headerActionID = "X-Nomos-Action-Id"

// headerTraceID lets a client group its requests into one trace, as the
// trace_id of the HTTP API does. Default: a new trace per request.
const headerTraceID = "X-Nomos-Trace-Id"

// httpMapping is the plain HTTP mode: net.http_request on
// url://<host>/<path> by default, with every part configurable.
type httpMapping struct {
	actionType string
	resource   string // "" means the request's own url://host/path
	templates  []templateParam
	bodyParams []bodyParam
	headers    []string // canonical header names, sorted
}

type templateParam struct{ name, template string }

type bodyParam struct {
	name string
	path []string
}

// newHTTPMapping compiles the guard's mapping settings, refusing names that
// collide and templates that cannot form a valid action.
func newHTTPMapping(h *GuardHandler) (*httpMapping, error) {
	m := &httpMapping{actionType: h.ActionType, resource: h.Resource}
	for _, decoded := range []string{"{http.request.uri", "{http.request.orig_uri"} {
		if strings.Contains(h.Resource, decoded) {
			return nil, fmt.Errorf("resource %q uses a decoded path placeholder (%s...}): a request's %%3F or %%2F would change the resource policy sees but not the path the upstream gets; use {%s}",
				h.Resource, decoded, placeholderEscapedPath)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(h.Params)) {
		if err := checkParamName(name); err != nil {
			return nil, err
		}
		m.templates = append(m.templates, templateParam{name, h.Params[name]})
	}
	for _, name := range slices.Sorted(maps.Keys(h.BodyParams)) {
		if err := checkParamName(name); err != nil {
			return nil, err
		}
		path, err := parseBodyPath(h.BodyParams[name])
		if err != nil {
			return nil, fmt.Errorf("body_params %q: %w", name, err)
		}
		m.bodyParams = append(m.bodyParams, bodyParam{name, path})
	}
	for _, name := range h.ParamHeaders {
		m.headers = append(m.headers, http.CanonicalHeaderKey(name))
	}
	slices.Sort(m.headers)
	m.headers = slices.Compact(m.headers)
	return m, m.checkTemplates()
}

// checkTemplates builds a sample action from the templates with every
// placeholder replaced, so a type or resource that can never be valid
// (such as net.http_request on a custom scheme) refuses to load.
func (m *httpMapping) checkTemplates() error {
	repl := caddy.NewReplacer()
	resource := "url://example.com/"
	if m.resource != "" {
		resource = repl.ReplaceAll(m.resource, "x")
	}
	env := &action.Envelope{SchemaVersion: action.SchemaVersion, ActionID: "load-check", TraceID: "load-check",
		ActionType: repl.ReplaceAll(m.actionType, "x.x"), Resource: resource, Params: json.RawMessage("{}")}
	if _, err := action.New(env, action.Identity{Principal: "load-check", Environment: "load-check"}); err != nil {
		return fmt.Errorf("action_type %q with resource %q: %w", m.actionType, m.resource, err)
	}
	return nil
}

func checkParamName(name string) error {
	switch name {
	case "":
		return errors.New("a param name is empty")
	case paramMethod, paramQuery, paramHeaders, paramBodySHA256:
		return fmt.Errorf("param %q is set by the guard itself", name)
	}
	return nil
}

// checkParamHeader refuses headers that carry credentials or Nomos
// control values: their values would land in policy input and audit.
func checkParamHeader(name string) error {
	lower := strings.ToLower(name)
	if name == "" || redact.IsCredentialName(lower) || strings.HasPrefix(lower, "x-nomos-") {
		return fmt.Errorf("header %q cannot be a param", name)
	}
	return nil
}

func parseBodyPath(p string) ([]string, error) {
	segs := strings.Split(p, ".")
	for _, s := range segs {
		if s == "" {
			return nil, fmt.Errorf("invalid path %q (dot-separated names)", p)
		}
	}
	return segs, nil
}

// envelope builds the request's action.
func (m *httpMapping) envelope(r *http.Request, body []byte) (*action.Envelope, error) {
	repl := replacerOf(r)
	repl.Set(placeholderEscapedPath, r.URL.EscapedPath())
	resource := m.resourceOf(r, repl)
	if strings.ContainsAny(resource, "?#") {
		// The resource would be cut there, and the rest never decided on.
		return nil, service.Errorf(http.StatusBadRequest, service.CodeValidation, "the request's resource would contain a query or fragment")
	}
	if e := refuseAmbiguous(r, body, len(m.bodyParams) > 0); e != nil {
		return nil, e
	}
	env := action.NewEnvelope(repl.ReplaceAll(m.actionType, ""), resource,
		json.RawMessage("{}"), r.Header.Get(headerTraceID))
	if err := approvalExtension(r, env); err != nil {
		return env, err
	}
	if isUpgrade(r) {
		return env, service.Errorf(http.StatusBadRequest, service.CodeValidation, "protocol upgrades cannot be governed by nomos_guard")
	}
	params, err := m.params(r, repl, body)
	if err != nil {
		return env, err
	}
	env.Params = params
	return env, nil
}

// refuseAmbiguous refuses what would let the upstream run a request other
// than the one policy decides on: a method override (a header, or _method
// in the query or a form body, which Rails, Laravel and Symfony read),
// request trailers (headers sent after the body, which the guard never
// sees), and, when params come from the body, a body that is not declared
// as JSON in UTF-8 (a form parser reads {"amount":50,"x":"&amount=5000"}
// differently) or is content-encoded.
func refuseAmbiguous(r *http.Request, body []byte, bodyParams bool) *service.Error {
	bad := func(format string, args ...any) *service.Error {
		return service.Errorf(http.StatusBadRequest, service.CodeValidation, format, args...)
	}
	for _, name := range methodOverrideHeaders {
		if _, ok := r.Header[name]; ok {
			return bad("method override header %s is refused: policy decides on the request method", name)
		}
	}
	for key := range r.URL.Query() {
		if strings.EqualFold(key, "_method") {
			return bad("method override query parameter %q is refused: policy decides on the request method", key)
		}
	}
	if formOverridesMethod(r.Header.Get("Content-Type"), body) {
		return bad("a form body with a _method field is refused: policy decides on the request method")
	}
	if len(r.Trailer) > 0 || r.Header.Get("Trailer") != "" {
		return bad("request trailers are refused: they are not part of what policy decides on")
	}
	if !bodyParams {
		return nil
	}
	if enc := r.Header.Get("Content-Encoding"); enc != "" && !strings.EqualFold(enc, "identity") {
		return bad("a %s-encoded body cannot be read for body params", enc)
	}
	media, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if cs, ok := params["charset"]; err != nil || len(r.Header.Values("Content-Type")) != 1 ||
		(media != "application/json" && !strings.HasSuffix(media, "+json")) || ok && !strings.EqualFold(cs, "utf-8") {
		return service.Errorf(http.StatusUnsupportedMediaType, service.CodeValidation,
			"body params are read from a JSON body: Content-Type must be application/json (UTF-8)")
	}
	return nil
}

// formOverridesMethod reports whether a body could carry a method
// override for the framework behind the guard: a _method field in a form
// (urlencoded, or multipart), read as leniently as frameworks read them
// (keys percent-decoded; PHP turns ".", " " and "[" in names into "_"), a
// top-level _method in a JSON object (Laravel reads JSON bodies as input),
// or a multipart body whose boundary Go cannot parse but a lenient parser
// might. Letter case never matters.
func formOverridesMethod(contentType string, body []byte) bool {
	if len(body) == 0 {
		return false
	}
	_, params, err := mime.ParseMediaType(contentType)
	if strings.HasPrefix(strings.ToLower(strings.TrimSpace(contentType)), "multipart/") {
		if err != nil || params["boundary"] == "" {
			return true // cannot be read as the framework might read it
		}
		mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
		for {
			part, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil || isMethodField(part.FormName()) {
				return true
			}
		}
	}
	// The name can only be spelled without "method" through escapes.
	plain := bytes.Contains(bytes.ToLower(body), []byte("method"))
	var obj map[string]json.RawMessage
	if (plain || bytes.Contains(body, []byte(`\u`))) && json.Unmarshal(body, &obj) == nil {
		for k := range obj {
			if isMethodField(k) {
				return true
			}
		}
	}
	if !plain && bytes.IndexByte(body, '%') < 0 {
		return false
	}
	for _, pair := range strings.FieldsFunc(string(body), func(r rune) bool { return r == '&' || r == ';' }) {
		key, _, _ := strings.Cut(pair, "=")
		if decoded, err := url.QueryUnescape(key); err == nil {
			key = decoded
		}
		if isMethodField(key) {
			return true
		}
	}
	return false
}

// isMethodField reports whether a form field name is _method as a
// framework may read it: trimmed, any case, PHP's "." and " " for "_",
// and an array suffix ("_method[]") dropped.
func isMethodField(name string) bool {
	name = strings.TrimSpace(name)
	if i := strings.IndexByte(name, '['); i >= 0 {
		name = name[:i]
	}
	name = strings.NewReplacer(".", "_", " ", "_").Replace(name)
	return strings.EqualFold(name, "_method")
}

func (m *httpMapping) resourceOf(r *http.Request, repl *caddy.Replacer) string {
	if m.resource != "" {
		return repl.ReplaceAll(m.resource, "")
	}
	return "url://" + r.Host + r.URL.EscapedPath()
}

// params is the canonical params object of the request.
func (m *httpMapping) params(r *http.Request, repl *caddy.Replacer, body []byte) (json.RawMessage, error) {
	query, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil || !validQuery(query) {
		return nil, service.Errorf(http.StatusBadRequest, service.CodeValidation, "query string cannot be parsed unambiguously")
	}
	p := map[string]any{paramMethod: r.Method, paramQuery: query}
	if len(m.headers) > 0 {
		p[paramHeaders] = m.headerValues(r)
	}
	if len(body) > 0 {
		p[paramBodySHA256] = action.SHA256Hex(body)
	}
	for _, tp := range m.templates {
		p[tp.name] = repl.ReplaceAll(tp.template, "")
	}
	if !validStrings(p) {
		return nil, service.Errorf(http.StatusBadRequest, service.CodeValidation, "request params are not valid UTF-8")
	}
	if err := m.addBodyParams(p, body); err != nil {
		return nil, err
	}
	raw, err := action.CanonicalMarshal(p)
	if err != nil {
		return nil, service.Errorf(http.StatusBadRequest, service.CodeValidation, "request params: %v", err)
	}
	return raw, nil
}

func (m *httpMapping) headerValues(r *http.Request) map[string]string {
	out := make(map[string]string, len(m.headers))
	for _, name := range m.headers {
		if vals := r.Header.Values(name); len(vals) > 0 {
			out[strings.ToLower(name)] = strings.Join(vals, ", ")
		}
	}
	return out
}

// validQuery refuses keys and values that are not UTF-8: JSON would turn
// them into U+FFFD, and two different queries would become one action.
func validQuery(q url.Values) bool {
	for k, vals := range q {
		if !utf8.ValidString(k) {
			return false
		}
		for _, v := range vals {
			if !utf8.ValidString(v) {
				return false
			}
		}
	}
	return true
}

// validStrings checks the string params taken from the request (method,
// headers, templates) for the same reason.
func validStrings(p map[string]any) bool {
	for _, v := range p {
		switch s := v.(type) {
		case string:
			if !utf8.ValidString(s) {
				return false
			}
		case map[string]string:
			for _, hv := range s {
				if !utf8.ValidString(hv) {
					return false
				}
			}
		}
	}
	return true
}

// addBodyParams reads the configured fields from a strictly valid JSON
// body: duplicate keys, invalid UTF-8 and trailing data are refused, since
// the upstream might read a different value than policy did.
func (m *httpMapping) addBodyParams(p map[string]any, body []byte) error {
	if len(m.bodyParams) == 0 {
		return nil
	}
	// The strict check every door applies: keys equal under case folding or
	// Unicode compatibility form are duplicates, since the service behind
	// the guard may read {"amount":50,"Amount":5000} as 5000.
	if err := action.CheckStrictJSON(body); err != nil {
		return service.Errorf(http.StatusBadRequest, service.CodeValidation, "request body is not valid JSON (%s)", err.Error())
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var root any
	if err := dec.Decode(&root); err != nil {
		return service.Errorf(http.StatusBadRequest, service.CodeValidation, "request body is not valid JSON")
	}
	for _, bp := range m.bodyParams {
		v, ok, folded := lookupPath(root, bp.path)
		if folded != "" {
			// The service may read it as the field policy found missing.
			return service.Errorf(http.StatusBadRequest, service.CodeValidation,
				"request body key %q differs from the body param path %q only in case or Unicode form", folded, strings.Join(bp.path, "."))
		}
		if ok {
			p[bp.name] = v
		}
	}
	return nil
}

// lookupPath walks objects by key and arrays by index. Where a key is
// missing but another equals it under case folding or compatibility form,
// folded is that key.
func lookupPath(v any, path []string) (value any, found bool, folded string) {
	for _, seg := range path {
		switch node := v.(type) {
		case map[string]any:
			next, ok := node[seg]
			if !ok {
				for k := range node {
					if action.SameKey(k, seg) {
						return nil, false, k
					}
				}
				return nil, false, ""
			}
			v = next
		case []any:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(node) {
				return nil, false, ""
			}
			v = node[i]
		default:
			return nil, false, ""
		}
	}
	return v, true, ""
}

// approvalExtension binds the retry to the approval the client presents.
func approvalExtension(r *http.Request, env *action.Envelope) error {
	vals := r.Header.Values(headerApprovalID)
	if len(vals) == 0 {
		return nil
	}
	if len(vals) > 1 {
		return service.Errorf(http.StatusBadRequest, service.CodeValidation, "%s must be sent once", headerApprovalID)
	}
	env.WithApproval(vals[0])
	return nil
}

// isUpgrade reports a request for a protocol switch (WebSocket, h2c) or a
// tunnel: once switched, the bytes bypass the response filter.
func isUpgrade(r *http.Request) bool {
	return r.Method == http.MethodConnect || r.Header.Get("Upgrade") != ""
}

func replacerOf(r *http.Request) *caddy.Replacer {
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		return repl
	}
	return caddy.NewReplacer()
}

// newBodyReader restores the body that was read for the decision; an
// empty one stays http.NoBody, so a GET is not sent on with a chunked body.
func newBodyReader(body []byte) io.ReadCloser {
	if len(body) == 0 {
		return http.NoBody
	}
	return io.NopCloser(bytes.NewReader(body))
}

// Interface guards
var _ guardMapping = (*httpMapping)(nil)

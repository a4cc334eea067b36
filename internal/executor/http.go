package executor

import (
	"context"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/caddy-nomos/nomos/policy"
	"github.com/caddy-nomos/nomos/policy/action"
)

// DefaultRedirectHopLimit applies when redirects are obligated without a
// hop limit.
const DefaultRedirectHopLimit = 3

const urlResourcePrefix = "url://"

var allowedMethods = []string{"DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"}

// forbiddenHeaders are request headers params may not set: they would let
// the request differ from what policy saw (Host), confuse framing, or ask
// for a slice or an encoding of the response that redaction cannot read
// whole (two Range requests split a token so neither part matches its
// pattern; Accept-Encoding gets compressed bytes the transport does not
// decode).
var forbiddenHeaders = []string{
	"accept-encoding", "connection", "content-length", "host", "if-range", "keep-alive", "proxy-authorization",
	"proxy-connection", "range", "te", "trailer", "transfer-encoding", "upgrade",
}

// redirectError is a redirect the obligations refuse.
type redirectError struct{ msg string }

func (r *redirectError) Error() string { return r.msg }

type httpParams struct {
	method  string
	headers map[string]string
	body    *string
}

// httpRequest sends one request to an obligated host, following redirects
// only as obligated, and returns the status and the bounded body.
func (e *Executor) httpRequest(ctx context.Context, a *action.Action, d policy.Decision) (*Result, *Error) {
	p, xerr := decodeHTTPParams(a.Params)
	if xerr != nil {
		return nil, xerr
	}
	target, host, xerr := e.targetURL(a.Resource)
	if xerr != nil {
		return nil, xerr
	}
	allow := allowlist(d.Obligations.NetAllowlist)
	if !slices.Contains(allow, host) {
		return nil, fail(CodeNetNotAllowlisted, "host %s is not in the net_allowlist obligation", host)
	}
	req, xerr := newHTTPRequest(ctx, p, target)
	if xerr != nil {
		return nil, xerr
	}
	return e.send(req, d.Obligations, allow)
}

func decodeHTTPParams(raw []byte) (httpParams, *Error) {
	var p httpParams
	var method *string
	xerr := decodeParams(raw,
		field{name: "method", dst: &method}, field{name: "headers", dst: &p.headers}, field{name: "body", dst: &p.body})
	if xerr != nil {
		return p, xerr
	}
	p.method = "GET"
	if method != nil {
		p.method = strings.ToUpper(*method)
	}
	if !slices.Contains(allowedMethods, p.method) {
		return p, fail(CodeInvalidParams, "params: method must be one of %s", strings.Join(allowedMethods, ", "))
	}
	for name := range p.headers {
		if slices.Contains(forbiddenHeaders, strings.ToLower(name)) {
			return p, fail(CodeInvalidParams, "params: header %q may not be set", name)
		}
	}
	return p, nil
}

// targetURL maps url://host/path to https://host/path and returns the
// normalized host[:port] that the allowlist names.
func (e *Executor) targetURL(resource string) (*url.URL, string, *Error) {
	rest, ok := strings.CutPrefix(resource, urlResourcePrefix)
	if !ok {
		return nil, "", fail(CodeInvalidResource, "resource must be a url:// resource")
	}
	host, escapedPath, _ := strings.Cut(rest, "/")
	p, err := url.PathUnescape("/" + escapedPath)
	if err != nil || host == "" {
		return nil, "", fail(CodeInvalidResource, "invalid url resource")
	}
	return &url.URL{Scheme: e.httpScheme(), Host: host, Path: p}, host, nil
}

func (e *Executor) httpScheme() string {
	if e.cfg.InsecureHTTP {
		return "http"
	}
	return "https"
}

// allowlist normalizes net_allowlist entries exactly as url:// resources
// normalize their host (case, default ports, IP literal forms), so that an
// entry and a resource naming the same host compare equal. An entry that does
// not normalize matches nothing.
func allowlist(entries []string) []string {
	out := make([]string, 0, len(entries))
	for _, s := range entries {
		if host, ok := normalizedHost(strings.TrimSpace(s), "/"); ok {
			out = append(out, host)
		}
	}
	return out
}

// normalizedHost is the host[:port] of url://<host><path> once normalized.
func normalizedHost(host, path string) (string, bool) {
	n, err := action.NormalizeResource(action.TypeNetHTTPRequest, urlResourcePrefix+host+path)
	if err != nil {
		return "", false
	}
	h, _, _ := strings.Cut(strings.TrimPrefix(n, urlResourcePrefix), "/")
	return h, h != ""
}

func newHTTPRequest(ctx context.Context, p httpParams, target *url.URL) (*http.Request, *Error) {
	var body io.Reader
	if p.body != nil {
		body = strings.NewReader(*p.body)
	}
	req, err := http.NewRequestWithContext(ctx, p.method, target.String(), body)
	if err != nil {
		return nil, fail(CodeInvalidParams, "request: %v", &hostError{reason: "invalid request", err: err})
	}
	for _, name := range slices.Sorted(maps.Keys(p.headers)) {
		req.Header.Set(name, p.headers[name])
	}
	return req, nil
}

// send runs the request under the HTTP timeout and reads a bounded body.
func (e *Executor) send(req *http.Request, ob policy.Obligations, allow []string) (*Result, *Error) {
	ctx, cancel := context.WithTimeout(req.Context(), e.cfg.HTTPTimeout)
	defer cancel()
	hops := 0
	client := &http.Client{Transport: e.client, CheckRedirect: e.redirectPolicy(ob, allow, &hops, redirectCheckFrom(req.Context()))}
	resp, err := client.Do(req.WithContext(ctx))
	if err != nil {
		return nil, httpError(ctx, err)
	}
	defer resp.Body.Close()
	if enc := resp.Header.Get("Content-Encoding"); enc != "" && !strings.EqualFold(enc, "identity") && !resp.Uncompressed {
		// Bytes redaction cannot read never reach the agent.
		return nil, fail(CodeExecutionError, "the server sent a %s-encoded body, which cannot be redacted", enc)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, e.cfg.MaxOutputBytes+lookahead+1))
	if err != nil {
		return nil, httpError(ctx, err)
	}
	more := int64(len(body)) > e.cfg.MaxOutputBytes+lookahead
	if more {
		body = body[:e.cfg.MaxOutputBytes+lookahead]
	}
	return &Result{
		Output:     string(body),
		Truncated:  more,
		StatusCode: resp.StatusCode,
		Metadata: map[string]any{
			"method":           req.Method,
			"status_code":      resp.StatusCode,
			"final_resource":   resourceOf(resp.Request.URL),
			"redirect_hops":    hops,
			"response_headers": resp.Header,
		},
	}, nil
}

// redirectPolicy follows a redirect only when obligated, within the hop
// limit, to an http(s) target on an allowlisted host; it never downgrades
// https to http.
func (e *Executor) redirectPolicy(ob policy.Obligations, allow []string, hops *int, check func(resource string) error) func(*http.Request, []*http.Request) error {
	limit := DefaultRedirectHopLimit
	if ob.HTTPRedirectHopLimit != nil {
		limit = *ob.HTTPRedirectHopLimit
	}
	return func(req *http.Request, via []*http.Request) error {
		*hops = len(via)
		switch {
		case ob.HTTPRedirects == nil || !*ob.HTTPRedirects:
			return &redirectError{"http redirects are not allowed"}
		case len(via) > limit:
			return &redirectError{"http redirect hop limit exceeded"}
		}
		host, ok := e.redirectHost(req.URL)
		if !ok {
			return &redirectError{"http redirect target is invalid"}
		}
		if !slices.Contains(allow, host) {
			return &redirectError{"http redirect destination is not allowlisted"}
		}
		if check != nil {
			res := resourceOf(req.URL)
			if res == "" {
				return &redirectError{"http redirect target is invalid"}
			}
			if check(res) != nil {
				return &redirectError{"http redirect destination is refused by policy"}
			}
		}
		return nil
	}
}

type redirectCheckKey struct{}

// WithRedirectCheck returns ctx carrying check, which the net.http_request
// executor asks about each redirect hop's url:// resource (normalized)
// before following it; an error refuses the hop (redirect_blocked). The
// service decides each hop on policy this way: an allowlisted host can
// still redirect to a path policy denies.
func WithRedirectCheck(ctx context.Context, check func(resource string) error) context.Context {
	return context.WithValue(ctx, redirectCheckKey{}, check)
}

func redirectCheckFrom(ctx context.Context) func(string) error {
	check, _ := ctx.Value(redirectCheckKey{}).(func(string) error)
	return check
}

// redirectHost normalizes a redirect target as a url:// resource and
// returns its host, refusing other schemes, userinfo and downgrades.
func (e *Executor) redirectHost(u *url.URL) (string, bool) {
	if u.Scheme != "https" && u.Scheme != e.httpScheme() || u.User != nil {
		return "", false
	}
	return normalizedHost(u.Host, u.EscapedPath())
}

// resourceOf is the url:// resource of a URL, without query or fragment.
func resourceOf(u *url.URL) string {
	n, err := action.NormalizeResource(action.TypeNetHTTPRequest, urlResourcePrefix+u.Host+u.EscapedPath())
	if err != nil {
		return ""
	}
	return n
}

// isTimeout reports a transport timeout (such as the response header
// timeout) that fires just before the request's own deadline.
func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

// httpError maps a failed request to an executor error without echoing the
// URL, which after a refused redirect names a host policy never allowed, and
// without what the resolver, network or TLS stack said (resolver and
// internal addresses, certificate names): the client gets a stable reason,
// the server log the detail.
func httpError(ctx context.Context, err error) *Error {
	var re *redirectError
	switch {
	case errors.As(err, &re):
		return fail(CodeRedirectBlocked, "%s", re.msg)
	case errors.Is(err, errBlockedAddress):
		return fail(CodeNetNotAllowlisted, "%v", errBlockedAddress)
	case errors.Is(ctx.Err(), context.DeadlineExceeded), isTimeout(err):
		return fail(CodeExecutionError, "http request timed out")
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fail(CodeExecutionError, "http request failed: %v", &hostError{err: err})
}

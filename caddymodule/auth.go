package caddymodule

import (
	"errors"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-nomos/nomos/internal/identity"
	"github.com/caddy-nomos/nomos/internal/service"
	"github.com/caddy-nomos/nomos/internal/sharedstate"
	"github.com/caddy-nomos/nomos/policy/action"
)

// RouteAuth is the per-route identity setting shared by Nomos handlers.
type RouteAuth struct {
	// Anonymous gives requests that carry no credentials at all this fixed
	// principal. Meant for loopback development and protocol test suites;
	// nomos doctor reports it as weak. A request that presents a credential
	// is always verified. Default: off.
	Anonymous string `json:"anonymous,omitempty"`
	// AnonymousAgent is the agent of anonymous requests. Default: anonymous.
	AnonymousAgent string `json:"anonymous_agent,omitempty"`
	// PrincipalFrom takes the principal from an earlier Caddy authentication
	// handler, e.g. {http.auth.user.id}. Default: off.
	PrincipalFrom string `json:"principal_from,omitempty"`
	// RequireAgent demands a signed agent on action endpoints.
	// Default: true.
	RequireAgent *bool `json:"require_agent,omitempty"`
}

func (ra *RouteAuth) requireAgent() bool { return ra.RequireAgent == nil || *ra.RequireAgent }

// authenticate verifies the caller. withAgent demands an agent identity
// (action endpoints) unless the route turned that off.
func (ra *RouteAuth) authenticate(app *App, r *http.Request, body []byte, withAgent bool) (action.Identity, *service.Error) {
	p, e := ra.principal(app, r)
	if e != nil || !withAgent {
		return p.identity(), e
	}
	return ra.agent(app, r, body, p)
}

// admit is the front half of every door that decides a request: the
// principal is authenticated from the headers before the body is read,
// so a client without valid credentials costs no body buffer; then the
// body is read (when maxBody > 0) and the caller's agent verified over
// it. The caller takes its concurrency slot only after admit: a client
// that trickles its body or fails to authenticate never holds one (the
// server's read timeouts bound how long it can trickle).
func (ra *RouteAuth) admit(app *App, r *http.Request, maxBody int64, withAgent bool) ([]byte, action.Identity, *service.Error) {
	p, e := ra.principal(app, r)
	if e != nil {
		return nil, action.Identity{}, e
	}
	var body []byte
	if maxBody > 0 {
		if body, e = readBody(r, maxBody); e != nil {
			return nil, action.Identity{}, e
		}
	}
	if !withAgent {
		return body, p.identity(), nil
	}
	id, e := ra.agent(app, r, body, p)
	return body, id, e
}

// routePrincipal is an authenticated principal, before its agent is.
type routePrincipal struct {
	res       identity.Result
	anonymous bool // the route's anonymous principal: no credentials at all
	agent     string
}

func (p routePrincipal) identity() action.Identity {
	return action.Identity{Principal: p.res.Principal, Agent: p.agent}
}

func (ra *RouteAuth) principal(app *App, r *http.Request) (routePrincipal, *service.Error) {
	if ra.Anonymous != "" && !presentsCredentials(r, app.trustedHeaders()) && ra.upstreamPrincipal(r) == "" {
		agent := ra.AnonymousAgent
		if agent == "" {
			agent = "anonymous"
		}
		return routePrincipal{res: identity.Result{Principal: ra.Anonymous}, anonymous: true, agent: agent}, nil
	}
	res, err := app.auth.AuthenticatePrincipal(r.Context(), ra.identityInput(r, nil))
	if err != nil {
		return routePrincipal{}, authError(err)
	}
	return routePrincipal{res: res}, nil
}

func (ra *RouteAuth) agent(app *App, r *http.Request, body []byte, p routePrincipal) (action.Identity, *service.Error) {
	if p.anonymous {
		return p.identity(), nil
	}
	res, err := app.auth.AuthenticateAgent(r.Context(), ra.identityInput(r, body), p.res)
	if err != nil {
		return action.Identity{}, authError(err)
	}
	if ra.requireAgent() && res.Agent == "" {
		return action.Identity{}, service.Errorf(http.StatusUnauthorized, service.CodeAuth, "agent authentication failed: signed agent required")
	}
	return action.Identity{Principal: res.Principal, Agent: res.Agent}, nil
}

func (ra *RouteAuth) identityInput(r *http.Request, body []byte) identity.Input {
	method, target := clientRequestLine(r)
	return identity.Input{
		Header: r.Header, Body: body, TLS: r.TLS, Method: method, Target: target,
		UpstreamPrincipal: ra.upstreamPrincipal(r), FromTrustedProxy: fromTrustedProxy(r),
	}
}

// clientRequestLine returns the method and request target the client sent,
// which an agent signature covers: Caddy keeps them in the original request
// before handle_path, uri strip_prefix or rewrite change r.
func clientRequestLine(r *http.Request) (method, target string) {
	orig, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request)
	if !ok {
		orig = *r
	}
	target = orig.RequestURI
	if target == "" && orig.URL != nil {
		target = orig.URL.RequestURI()
	}
	return orig.Method, target
}

func authError(err error) *service.Error {
	if errors.Is(err, sharedstate.ErrUnavailable) {
		return service.Errorf(http.StatusServiceUnavailable, service.CodeStateUnavailable, "shared state unavailable; retry later")
	}
	msg := "authentication failed"
	if errors.Is(err, identity.ErrAuth) {
		msg = err.Error()
	}
	return service.Errorf(http.StatusUnauthorized, service.CodeAuth, "%s", msg)
}

// upstreamPrincipal is the value of the principal_from placeholder, ""
// when no earlier handler set it: an unset placeholder is no principal
// (a template would keep its literal text, and every caller that skipped
// the auth handler would share that name).
func (ra *RouteAuth) upstreamPrincipal(r *http.Request) string {
	key, ok := principalFromKey(ra.PrincipalFrom)
	if !ok {
		return ""
	}
	repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if !ok {
		return ""
	}
	v, _ := repl.GetString(key)
	return v
}

// principalFromKey is the placeholder key of a principal_from setting,
// which must be exactly one placeholder.
func principalFromKey(setting string) (string, bool) {
	if len(setting) < 3 || setting[0] != '{' || setting[len(setting)-1] != '}' {
		return "", false
	}
	key := setting[1 : len(setting)-1]
	if strings.ContainsAny(key, "{} ") {
		return "", false
	}
	return key, true
}

// presentsCredentials reports whether the request carries any credential
// Nomos would verify, including identity headers from a trusted proxy;
// such a request never falls back to anonymous.
func presentsCredentials(r *http.Request, trustedHeaders []string) bool {
	h := r.Header
	if h.Get("Authorization") != "" || h.Get(identity.HeaderAgentID) != "" || h.Get(identity.HeaderAgentSignature) != "" {
		return true
	}
	if fromTrustedProxy(r) {
		for _, name := range trustedHeaders {
			if h.Get(name) != "" {
				return true
			}
		}
	}
	return r.TLS != nil && len(r.TLS.PeerCertificates) > 0
}

func fromTrustedProxy(r *http.Request) bool {
	trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool)
	return trusted
}

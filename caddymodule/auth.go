package caddymodule

import (
	"errors"
	"net/http"

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
	auth := app.auth
	if ra.Anonymous != "" && !presentsCredentials(r, app.trustedHeaders()) && ra.upstreamPrincipal(r) == "" {
		agent := ra.AnonymousAgent
		if agent == "" {
			agent = "anonymous"
		}
		return action.Identity{Principal: ra.Anonymous, Agent: agent}, nil
	}
	method, target := clientRequestLine(r)
	in := identity.Input{
		Header: r.Header, Body: body, TLS: r.TLS, Method: method, Target: target,
		UpstreamPrincipal: ra.upstreamPrincipal(r), FromTrustedProxy: fromTrustedProxy(r),
	}
	var res identity.Result
	var err error
	if withAgent {
		res, err = auth.Authenticate(r.Context(), in)
	} else {
		res, err = auth.AuthenticatePrincipal(r.Context(), in)
	}
	if err != nil {
		return action.Identity{}, authError(err)
	}
	if withAgent && ra.requireAgent() && res.Agent == "" {
		return action.Identity{}, service.Errorf(http.StatusUnauthorized, service.CodeAuth, "agent authentication failed: signed agent required")
	}
	return action.Identity{Principal: res.Principal, Agent: res.Agent}, nil
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

func (ra *RouteAuth) upstreamPrincipal(r *http.Request) string {
	if ra.PrincipalFrom == "" {
		return ""
	}
	repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if !ok {
		return ""
	}
	return repl.ReplaceKnown(ra.PrincipalFrom, "")
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

package caddymodule

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
)

// Validate checks the app's configuration with each package's own
// validation. Caddy calls it after Provision; any error refuses the
// config and the old one keeps serving.
func (a *App) Validate() error {
	if err := a.validateRuntime(); err != nil {
		return err
	}
	names := slices.Sorted(maps.Keys(a.Upstreams))
	for _, name := range names {
		c := a.Upstreams[name]
		if c == nil {
			return fmt.Errorf("nomos: upstream %q: empty configuration", name)
		}
		cfg, err := c.toMCP(name)
		if err == nil {
			err = cfg.Validate()
		}
		if err != nil {
			return fmt.Errorf("nomos: upstream %q: %w", name, err)
		}
	}
	return nil
}

// Validate checks the handler's identity settings.
func (h *APIHandler) Validate() error {
	if err := h.RouteAuth.validate(); err != nil {
		return fmt.Errorf("nomos_api: %w", err)
	}
	return nil
}

// validate refuses settings that cannot take effect.
func (ra *RouteAuth) validate() error {
	if ra.AnonymousAgent != "" && ra.Anonymous == "" {
		return errors.New("anonymous_agent needs anonymous")
	}
	return validatePrincipalFrom(ra.PrincipalFrom)
}

// principalFromSources are the placeholders principal_from may name: set
// by an authentication handler (basic_auth and other http.authentication
// providers set http.auth.user.*; forward_auth leaves its auth server's
// answer in http.reverse_proxy.header.*), by a handler of the operator's
// (vars), or from the client certificate Caddy's TLS verified.
var principalFromSources = []string{"http.auth.user.", "http.reverse_proxy.header.", "http.vars.", "http.request.tls.client."}

// validatePrincipalFrom accepts exactly one placeholder among
// principalFromSources, never one the client writes itself (a request
// header, query, cookie, path or a regexp capture of them would let any
// caller name its principal).
func validatePrincipalFrom(setting string) error {
	if setting == "" {
		return nil
	}
	key, ok := principalFromKey(setting)
	if !ok {
		return fmt.Errorf("principal_from %q must be exactly one placeholder, such as {http.auth.user.id}", setting)
	}
	for _, prefix := range principalFromSources {
		if strings.HasPrefix(key, prefix) {
			return nil
		}
	}
	return fmt.Errorf("principal_from %q is not set by an authentication handler; use {http.auth.user.*} (basic_auth), {http.reverse_proxy.header.*} (the auth server's answer to forward_auth), {http.vars.*}, {http.request.tls.client.*}, or trusted_headers from a trusted proxy", setting)
}

// Interface guards
var (
	_ caddy.Validator = (*App)(nil)
	_ caddy.Validator = (*APIHandler)(nil)
)

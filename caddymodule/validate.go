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

// validatePrincipalFrom accepts exactly one placeholder that an earlier
// handler sets ({http.auth.user.id}, {http.vars.*}), never one the client
// writes itself: a request header, query, cookie or path would let any
// caller name its principal.
func validatePrincipalFrom(setting string) error {
	if setting == "" {
		return nil
	}
	key, ok := principalFromKey(setting)
	if !ok {
		return fmt.Errorf("principal_from %q must be exactly one placeholder, such as {http.auth.user.id}", setting)
	}
	if strings.HasPrefix(key, "http.request.") && !strings.HasPrefix(key, "http.request.tls.client.") {
		return fmt.Errorf("principal_from %q is a value the client sends; take the principal from an authentication handler ({http.auth.user.id}), a verified client certificate, or trusted_headers from a trusted proxy", setting)
	}
	return nil
}

// Interface guards
var (
	_ caddy.Validator = (*App)(nil)
	_ caddy.Validator = (*APIHandler)(nil)
)

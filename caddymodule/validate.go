package caddymodule

import (
	"errors"
	"fmt"
	"maps"
	"slices"

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
	return nil
}

// Interface guards
var (
	_ caddy.Validator = (*App)(nil)
	_ caddy.Validator = (*APIHandler)(nil)
)

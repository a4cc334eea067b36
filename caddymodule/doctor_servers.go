package caddymodule

import (
	"encoding/json"
	"fmt"
	"net"
	"sort"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddytls"
)

// serverPosture is what doctor needs to know about one HTTP server: where
// it listens, whether it speaks TLS and verifies client certificates, and
// which of its Nomos handlers accept anonymous requests.
type serverPosture struct {
	Name               string
	Listen             []string
	TLS                bool
	ClientAuthVerified bool
	// Nomos is true when a route reaches a Nomos handler.
	Nomos bool
	// Anonymous lists "<handler> as <principal>" for anonymous routes.
	Anonymous []string
}

// loopbackOnly reports whether every listener is bound to a loopback
// address (a port alone binds every interface).
func (s serverPosture) loopbackOnly() bool {
	if len(s.Listen) == 0 {
		return false
	}
	for _, l := range s.Listen {
		addr, err := caddy.ParseNetworkAddress(l)
		if err != nil || addr.IsUnixNetwork() {
			if err == nil {
				continue
			}
			return false
		}
		ip := net.ParseIP(addr.Host)
		if addr.Host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return false
		}
	}
	return true
}

// serversFromJSON reads the http app of an adapted config.
func serversFromJSON(raw json.RawMessage) ([]serverPosture, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	var app struct {
		Servers map[string]struct {
			Listen []string                    `json:"listen"`
			TLS    caddytls.ConnectionPolicies `json:"tls_connection_policies"`
			Routes []jsonRoute                 `json:"routes"`
		} `json:"servers"`
	}
	if err := json.Unmarshal(raw, &app); err != nil {
		return nil, fmt.Errorf("reading the http app: %w", err)
	}
	out := make([]serverPosture, 0, len(app.Servers))
	for name, s := range app.Servers {
		p := serverPosture{Name: name, Listen: s.Listen}
		p.TLS, p.ClientAuthVerified = tlsPosture(s.Listen, s.TLS)
		walkJSONRoutes(s.Routes, &p)
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// tlsPosture: a server speaks TLS when it has connection policies or
// listens on 443 (automatic HTTPS adds them at provision time).
func tlsPosture(listen []string, pols caddytls.ConnectionPolicies) (tls, verified bool) {
	tls = len(pols) > 0
	for _, l := range listen {
		if strings.HasSuffix(l, ":443") {
			tls = true
		}
	}
	for _, p := range pols {
		ca := p.ClientAuthentication
		if ca != nil && (ca.Mode == "require_and_verify" || (ca.Mode == "" && hasTrust(ca))) {
			verified = true
		}
	}
	return tls, verified
}

// hasTrust mirrors Caddy's default: with trusted CAs or leaves and no
// mode, client certificates are required and verified.
func hasTrust(ca *caddytls.ClientAuthentication) bool {
	return len(ca.CARaw) > 0 || len(ca.TrustedCACerts) > 0 || len(ca.TrustedCACertPEMFiles) > 0 || len(ca.TrustedLeafCerts) > 0
}

type jsonRoute struct {
	Handle []json.RawMessage `json:"handle"`
}

// jsonHandler holds the fields doctor reads from any handler.
type jsonHandler struct {
	Handler        string      `json:"handler"`
	Anonymous      string      `json:"anonymous"`
	AnonymousAgent string      `json:"anonymous_agent"`
	Routes         []jsonRoute `json:"routes"`
}

func walkJSONRoutes(routes []jsonRoute, p *serverPosture) {
	for _, r := range routes {
		for _, raw := range r.Handle {
			var h jsonHandler
			if json.Unmarshal(raw, &h) != nil {
				continue
			}
			notePosture(p, h.Handler, h.Anonymous)
			walkJSONRoutes(h.Routes, p)
		}
	}
}

func notePosture(p *serverPosture, handler, anonymous string) {
	if !strings.HasPrefix(handler, "nomos_") {
		return
	}
	p.Nomos = true
	if anonymous != "" {
		p.Anonymous = append(p.Anonymous, handler+" as "+anonymous)
	}
}

// serversFromApp reads the running http app (its raw handler JSON is
// gone after provisioning, so the handlers themselves are inspected).
func serversFromApp(app *caddyhttp.App) []serverPosture {
	out := make([]serverPosture, 0, len(app.Servers))
	for name, s := range app.Servers {
		p := serverPosture{Name: name, Listen: s.Listen}
		p.TLS, p.ClientAuthVerified = tlsPosture(s.Listen, s.TLSConnPolicies)
		walkRoutes(s.Routes, &p)
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func walkRoutes(routes caddyhttp.RouteList, p *serverPosture) {
	for _, r := range routes {
		for _, h := range r.Handlers {
			switch h := h.(type) {
			case *APIHandler:
				notePosture(p, "nomos_api", h.Anonymous)
			case *MCPHandler:
				notePosture(p, "nomos_mcp", h.Anonymous)
			case *UIHandler:
				notePosture(p, "nomos_ui", "")
			case *caddyhttp.Subroute:
				walkRoutes(h.Routes, p)
			}
		}
	}
}

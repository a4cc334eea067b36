package mcp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"

	"github.com/mark3labs/mcp-go/client/transport"
)

// remoteClient is the HTTP side of a remote upstream: TLS settings and the
// allowed_hosts check applied to every request, redirects included.
type remoteClient struct {
	hc      *http.Client
	headers map[string]string
}

func newRemoteClient(cfg UpstreamConfig) (*remoteClient, error) {
	tlsCfg, err := upstreamTLS(cfg)
	if err != nil {
		return nil, err
	}
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.TLSClientConfig = tlsCfg
	rt := &hostGuard{next: base, allowed: cfg.allowedHosts()}
	hc := &http.Client{Transport: rt}
	return &remoteClient{hc: hc, headers: cfg.Headers}, nil
}

func upstreamTLS(cfg UpstreamConfig) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.TrustedCA != "" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		pem, err := os.ReadFile(cfg.TrustedCA)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("ca_file: no PEM certificates found")
		}
		tc.RootCAs = pool
	}
	if cfg.ClientCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.ClientCert, cfg.ClientKey)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// hostGuard refuses requests to hosts outside allowed_hosts, including
// redirects and the endpoint a legacy SSE server advertises.
type hostGuard struct {
	next    http.RoundTripper
	allowed []string
}

func (g *hostGuard) RoundTrip(r *http.Request) (*http.Response, error) {
	if !hostMatches(r.URL.Hostname(), g.allowed) {
		return nil, fmt.Errorf("upstream host %q is not in allowed_hosts", r.URL.Hostname())
	}
	return g.next.RoundTrip(r)
}

// openRemote starts a Streamable HTTP or SSE transport. Only the static
// configured headers are sent: the downstream client's credentials never
// reach the upstream.
func (u *Upstream) openRemote(dedicated *session) (*conn, error) {
	t, err := u.newRemoteTransport()
	if err != nil {
		return nil, newUpstreamError(ErrUpstreamUnavailable, err, "upstream %q: transport", u.cfg.Name)
	}
	c := newConn(u, t, dedicated)
	ctx, cancel := context.WithCancel(u.ctx)
	c.stop = cancel
	if err := t.Start(ctx); err != nil {
		cancel()
		return nil, newUpstreamError(ErrUpstreamUnavailable, err, "upstream %q: connect", u.cfg.Name)
	}
	return c, nil
}

func (u *Upstream) newRemoteTransport() (transport.Interface, error) {
	rc := u.remote
	if u.cfg.Transport == TransportSSE {
		return transport.NewSSE(u.cfg.URL, transport.WithHTTPClient(rc.hc),
			transport.WithHeaders(rc.headers), transport.WithSSELogger(u.log))
	}
	return transport.NewStreamableHTTP(u.cfg.URL, transport.WithHTTPBasicClient(rc.hc),
		transport.WithHTTPHeaders(rc.headers), transport.WithContinuousListening(),
		transport.WithHTTPLogger(u.log))
}

package mcp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"time"

	"github.com/caddy-nomos/nomos/internal/errcode"
)

// SessionRegistry shares downstream sessions among the replicas of a
// route: which replica owns a session and for which principal, and how
// many live sessions each principal holds. The session itself (its
// upstream sessions, stdio children and streams) stays in the replica
// that created it; another replica that receives one of its requests
// forwards it there (see Gateway.forwardToOwner). An error means the registry
// could not answer: initialize is refused (state_unavailable), and so is a
// request for a session this replica does not hold.
type SessionRegistry interface {
	// Admit binds a new session to principal and to this replica, unless
	// principal already holds limit live sessions (limit <= 0: no
	// limit). It reports whether the session was admitted.
	Admit(ctx context.Context, sessionID, principal string, limit int, ttl time.Duration) (bool, error)
	// Touch keeps the binding of a session in use alive for ttl more.
	Touch(ctx context.Context, sessionID, principal string, ttl time.Duration) error
	// Owner returns the URL of the replica that owns sessionID ("" when
	// no replica holds it, or when it is this one).
	Owner(ctx context.Context, sessionID string) (string, error)
	// Release drops the binding of a session that ended.
	Release(ctx context.Context, sessionID string) error
}

// headerForwarded marks a request one replica forwarded to the owner of
// its session, so that it is never forwarded again. A client that sets it
// only stops its own request from being forwarded.
const headerForwarded = "Nomos-Mcp-Forwarded"

// registryTimeout bounds one registry call on the request path.
const registryTimeout = 2 * time.Second

// touchEvery is how often (in session TTLs) a session in use refreshes
// its shared binding: often enough that it never expires while in use,
// rarely enough that a busy session costs no Redis call per request.
const touchEvery = 4

// forwardForeign forwards a request for a session this replica does not
// hold to the replica that owns it. It reports whether the request was
// answered here (forwarded, or refused because the registry is down).
func (g *Gateway) forwardForeign(w http.ResponseWriter, r *http.Request, body []byte) bool {
	reg := g.route.Registry
	sid := r.Header.Get(HeaderSessionID)
	if reg == nil || sid == "" || r.Header.Get(headerForwarded) != "" || g.sessions.get(sid) != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(r.Context(), registryTimeout)
	owner, err := reg.Owner(ctx, sid)
	cancel()
	if err != nil {
		g.log.Error("mcp session registry unavailable", "error", err)
		httpDeny(w, http.StatusServiceUnavailable, errcode.StateUnavailable, "shared state unavailable; retry later")
		return true
	}
	if owner == "" {
		return false // unknown here and everywhere: 404 below
	}
	target, err := ParseAdvertise(owner)
	if err != nil {
		g.log.Error("mcp session registry names an owner this replica will not forward to", "error", err)
		return false
	}
	g.forwardToOwner(w, r, body, target, sid)
	return true
}

// forwardToOwner relays the request to the owner over the replicas' private
// network, keeping the path, the Host and the credentials: the owner
// authenticates the caller itself and checks that the session is bound to
// it. Streams (SSE) are flushed as they come. An owner that cannot be
// reached is gone: its binding is dropped and the client gets 404, so it
// initializes a new session, as the MCP specification expects. A client
// that goes away first says nothing about the owner: the binding stays.
func (g *Gateway) forwardToOwner(w http.ResponseWriter, r *http.Request, body []byte, target *url.URL, sid string) {
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
			pr.Out.Header.Set(headerForwarded, "1")
		},
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			if r.Context().Err() != nil {
				return // the client went away (a cancelled call), not the owner
			}
			g.log.Warn("mcp session owner unreachable; session dropped", "owner", target.Host, "error", err)
			ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), registryTimeout)
			defer cancel()
			if err := g.route.Registry.Release(ctx, sid); err != nil && !errors.Is(err, context.Canceled) {
				g.log.Error("mcp session registry: release failed", "error", err)
			}
			httpDeny(w, http.StatusNotFound, errcode.InvalidSession, "unknown or terminated session")
		},
	}
	out := r.Clone(r.Context())
	if g.route.UntrustedHeaders != nil {
		for _, name := range g.route.UntrustedHeaders(r) {
			out.Header.Del(name)
		}
	}
	out.Body, out.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
	if len(body) == 0 {
		out.Body = http.NoBody
	}
	out.Header.Set("Content-Length", strconv.Itoa(len(body)))
	rp.ServeHTTP(w, out)
}

// ParseAdvertise checks the URL a replica advertises to the others (and
// the owner URL read back from the registry): http or https, an IP address
// that is loopback or private, a port, no path. Requests carry the
// client's credentials to it, so a registry entry naming any other place
// is refused rather than followed.
func ParseAdvertise(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Port() == "" ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return nil, fmt.Errorf("advertise %q must be http(s)://<ip>:<port> with no path", raw)
	}
	ip := net.ParseIP(u.Hostname())
	if ip == nil || !(ip.IsLoopback() || ip.IsPrivate()) {
		return nil, fmt.Errorf("advertise %q must name a loopback or private IP address, not a public one or a host name", raw)
	}
	return u, nil
}

// shareAdmit binds a new session in the registry. A refusal has been
// answered.
func (g *Gateway) shareAdmit(w http.ResponseWriter, r *http.Request, s *session) bool {
	reg := g.route.Registry
	if reg == nil {
		return true
	}
	ctx, cancel := context.WithTimeout(r.Context(), registryTimeout)
	defer cancel()
	ok, err := reg.Admit(ctx, s.id, s.identity.Principal, g.route.MaxSessionsPerPrincipal, g.route.SessionTTL)
	if err != nil {
		g.log.Error("mcp session registry unavailable; initialize refused", "error", err)
		httpDeny(w, http.StatusServiceUnavailable, errcode.StateUnavailable, "shared state unavailable; retry later")
		return false
	}
	if !ok {
		g.denySessionLimit(w, s.identity)
		return false
	}
	s.sharedAt.Store(g.now().UnixNano())
	return true
}

// shareTouch refreshes the binding of a session in use, at most once per
// SessionTTL/touchEvery. A failure is logged: the session lives here, and
// its binding only matters to the other replicas.
func (g *Gateway) shareTouch(ctx context.Context, s *session, now time.Time) {
	reg := g.route.Registry
	if reg == nil || now.UnixNano()-s.sharedAt.Load() < int64(g.route.SessionTTL/touchEvery) {
		return
	}
	s.sharedAt.Store(now.UnixNano())
	ctx, cancel := context.WithTimeout(ctx, registryTimeout)
	defer cancel()
	if err := reg.Touch(ctx, s.id, s.identity.Principal, g.route.SessionTTL); err != nil {
		g.log.Warn("mcp session registry: touch failed", "error", err)
	}
}

// shareRelease drops the binding of a session that ended here.
func (g *Gateway) shareRelease(s *session) {
	reg := g.route.Registry
	if reg == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), registryTimeout)
	defer cancel()
	if err := reg.Release(ctx, s.id); err != nil {
		g.log.Warn("mcp session registry: release failed", "error", err)
	}
}

package mcp

import (
	"errors"
	"sync/atomic"
	"time"
)

// RequestObservation describes one request the gateway sent to an
// upstream, for metrics. It carries no arguments or payloads.
type RequestObservation struct {
	Upstream string
	// Method is the JSON-RPC method as sent (tools/call, tools/list, ...).
	Method string
	// Outcome is success, rpc_error (the upstream answered with a JSON-RPC
	// error) or error (no answer).
	Outcome string
	// ErrorClass is none, transport, protocol, timeout, canceled or
	// breaker_open.
	ErrorClass string
	Duration   time.Duration
}

// observer holds the function told about every upstream request.
type observer struct {
	fn atomic.Pointer[func(RequestObservation)]
}

// SetObserver makes fn see every request sent to this upstream from now
// on (nil stops it). fn must not block.
func (u *Upstream) SetObserver(fn func(RequestObservation)) {
	if fn == nil {
		u.obs.fn.Store(nil)
		return
	}
	u.obs.fn.Store(&fn)
}

func (u *Upstream) observe(method string, start time.Time, rerr *rpcError, err error) {
	fn := u.obs.fn.Load()
	if fn == nil {
		return
	}
	o := RequestObservation{Upstream: u.cfg.Name, Method: method, Outcome: "success", ErrorClass: "none", Duration: u.now().Sub(start)}
	switch {
	case err != nil:
		_, o.ErrorClass = classify(err)
		o.Outcome = "error"
		if errors.Is(err, ErrBreakerOpen) {
			o.ErrorClass = "breaker_open"
		}
	case rerr != nil:
		o.Outcome = "rpc_error"
	}
	(*fn)(o)
}

// Sessions is the number of live downstream sessions.
func (g *Gateway) Sessions() int {
	g.sessions.mu.Lock()
	defer g.sessions.mu.Unlock()
	return len(g.sessions.byID)
}

// adopted finds a session a newer gateway took over in a reload, for a
// request that reached this gateway while the old configuration was still
// serving: between the new config's provisioning (which moves the
// sessions) and the switch to it, the session must not look unknown.
func (g *Gateway) adopted(sid string) *session {
	for next := g.successor.Load(); next != nil; next = next.successor.Load() {
		if s := next.sessions.get(sid); s != nil {
			return s
		}
	}
	return nil
}

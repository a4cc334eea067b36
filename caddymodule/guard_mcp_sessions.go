package caddymodule

import (
	"net/http"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/caddy-nomos/nomos/internal/errcode"
	"github.com/caddy-nomos/nomos/internal/ratelimit"
	"github.com/caddy-nomos/nomos/mcp"
)

// maxGuardSessions bounds the session bindings one guard remembers; past
// it the least recently used binding is forgotten (its client gets 404
// and initializes again).
const maxGuardSessions = 1 << 16

// mcpBindings binds each Mcp-Session-Id the upstream issued to the
// principal that initialized it, as nomos_mcp binds its own sessions:
// bounded in number, idle bindings expire, and a principal holds at most
// perPrincipal of them.
type mcpBindings struct {
	mu           sync.Mutex
	ttl          time.Duration
	perPrincipal int
	now          func() time.Time
	byID         *lru.Cache[string, *mcpBinding]
	count        map[string]int // live bindings per principal
	// initLimit paces initialize per principal.
	initLimit *ratelimit.Limiter
}

type mcpBinding struct {
	id       mcp.Identity
	lastSeen time.Time
}

func newMCPBindings(c *GuardMCPConfig) (*mcpBindings, error) {
	limit, err := ratelimit.New(ratelimit.Config{Events: c.InitializePerMinute, Interval: time.Minute})
	if err != nil {
		return nil, err
	}
	b := &mcpBindings{ttl: time.Duration(c.SessionTTL), perPrincipal: c.MaxSessionsPerPrincipal, now: time.Now,
		count: map[string]int{}, initLimit: limit}
	// The eviction callback runs inside Add and Remove, under b.mu.
	b.byID, _ = lru.NewWithEvict(maxGuardSessions, func(_ string, v *mcpBinding) {
		if b.count[v.id.Principal]--; b.count[v.id.Principal] <= 0 {
			delete(b.count, v.id.Principal)
		}
	})
	return b, nil
}

// bind records sid as id's session.
func (b *mcpBindings) bind(sid string, id mcp.Identity) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if old, ok := b.byID.Peek(sid); ok && old.id != id {
		return // an upstream reusing a live id for another principal keeps the first owner
	}
	if !b.byID.Contains(sid) {
		b.count[id.Principal]++
	}
	b.byID.Add(sid, &mcpBinding{id: id, lastSeen: b.now()})
}

// check applies the binding of sid for id: 0 when id may use it, else the
// status, error code and message to answer.
func (b *mcpBindings) check(sid string, id mcp.Identity) (int, string, string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	s, ok := b.byID.Get(sid)
	if ok && now.Sub(s.lastSeen) > b.ttl {
		b.byID.Remove(sid)
		ok = false
	}
	switch {
	case !ok:
		return http.StatusNotFound, errcode.InvalidSession, "unknown or terminated session"
	case s.id != id:
		return http.StatusForbidden, errcode.SessionIdentity, "the session belongs to another identity"
	}
	s.lastSeen = now
	return 0, "", ""
}

func (b *mcpBindings) unbind(sid string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.byID.Remove(sid)
}

// full reports whether principal holds perPrincipal live bindings, after
// forgetting the expired ones (least recently used first, stopping at the
// first live one, so the work is what expires).
func (b *mcpBindings) full(principal string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	for {
		sid, s, ok := b.byID.GetOldest()
		if !ok || now.Sub(s.lastSeen) <= b.ttl {
			break
		}
		b.byID.Remove(sid)
	}
	return b.count[principal] >= b.perPrincipal
}

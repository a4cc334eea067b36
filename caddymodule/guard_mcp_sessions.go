package caddymodule

import (
	"crypto/sha256"
	"encoding/binary"
	"maps"
	"net/http"
	"slices"
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
	// listings interns the sessions' tool listings by content.
	listings *lru.Cache[[sha256.Size]byte, toolListing]
}

type mcpBinding struct {
	id       mcp.Identity
	lastSeen time.Time
	// tools is what the session was shown by tools/list; its calls are
	// bound to these definitions (tool_fingerprints).
	tools toolListing
}

// toolListing maps the tools a session was shown to the fingerprints of
// their definitions ("" for one that cannot be fingerprinted). It is
// immutable once interned, and shared by the sessions shown the same.
type toolListing map[string]string

const (
	// maxToolListings bounds the distinct listings a guard interns.
	maxToolListings = 1024
	// maxListedTools bounds the tools remembered for one session; a call
	// of a tool past it has no known definition (see policy toolMatches).
	maxListedTools = 1000
)

func newMCPBindings(c *GuardMCPConfig) (*mcpBindings, error) {
	limit, err := ratelimit.New(ratelimit.Config{Events: c.InitializePerMinute, Interval: time.Minute})
	if err != nil {
		return nil, err
	}
	b := &mcpBindings{ttl: time.Duration(c.SessionTTL), perPrincipal: c.MaxSessionsPerPrincipal, now: time.Now,
		count: map[string]int{}, initLimit: limit}
	// The eviction callback runs inside Add and Remove, under b.mu.
	b.listings, _ = lru.New[[sha256.Size]byte, toolListing](maxToolListings)
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

// listed records the tools session sid was shown: the first page of a
// tools/list (no cursor) replaces what it was shown before, a later page
// adds to it.
func (b *mcpBindings) listed(sid string, page toolListing, nextPage bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s, ok := b.byID.Peek(sid)
	if !ok {
		return
	}
	merged := page
	if nextPage && len(s.tools) > 0 {
		merged = maps.Clone(s.tools)
		for name, fp := range page {
			if _, seen := merged[name]; seen || len(merged) < maxListedTools {
				merged[name] = fp
			}
		}
	}
	key := listingKey(merged)
	if l, ok := b.listings.Get(key); ok {
		s.tools = l
		return
	}
	b.listings.Add(key, merged)
	s.tools = merged
}

// toolFingerprint is the fingerprint of the definition of tool that
// session sid was last shown, "" when it was shown none.
func (b *mcpBindings) toolFingerprint(sid, tool string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if s, ok := b.byID.Peek(sid); ok {
		return s.tools[tool]
	}
	return ""
}

func listingKey(l toolListing) [sha256.Size]byte {
	h := sha256.New()
	for _, name := range slices.Sorted(maps.Keys(l)) {
		for _, s := range []string{name, l[name]} { // length-prefixed: no two listings share a key
			_ = binary.Write(h, binary.BigEndian, uint32(len(s)))
			h.Write([]byte(s))
		}
	}
	var key [sha256.Size]byte
	h.Sum(key[:0])
	return key
}

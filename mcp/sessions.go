package mcp

import (
	"container/list"
	"sync"
	"time"
)

// sessionStore holds the live downstream sessions of a gateway. Besides
// the index by id it keeps the sessions in least-recently-used order, so
// expiring idle sessions looks only at the ones that expire (plus one),
// never at every session, and it counts the sessions of each principal so
// one principal cannot hold more than its share.
type sessionStore struct {
	mu          sync.Mutex
	byID        map[string]*session
	idle        *list.List // *session, least recently used first
	byPrincipal map[string]int
	// visited counts the sessions sweep examined (for tests: expiry work
	// must be proportional to what expires).
	visited int
}

func newSessionStore() sessionStore {
	return sessionStore{byID: map[string]*session{}, idle: list.New(), byPrincipal: map[string]int{}}
}

// add stores s unless its principal already holds limit sessions (limit
// <= 0: no limit); it reports whether s was stored.
func (st *sessionStore) add(s *session, limit int) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if limit > 0 && st.byPrincipal[s.identity.Principal] >= limit {
		return false
	}
	st.byID[s.id] = s
	s.idle = st.idle.PushBack(s)
	st.byPrincipal[s.identity.Principal]++
	return true
}

func (st *sessionStore) get(id string) *session {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.byID[id]
}

// touch marks s used at now: it moves to the back of the idle order.
func (st *sessionStore) touch(s *session, now time.Time) {
	st.mu.Lock()
	defer st.mu.Unlock()
	s.lastSeen.Store(now.UnixNano())
	if s.idle != nil && st.byID[s.id] == s {
		st.idle.MoveToBack(s.idle)
	}
}

func (st *sessionStore) remove(id string) *session {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.removeLocked(id)
}

func (st *sessionStore) removeLocked(id string) *session {
	s := st.byID[id]
	if s == nil {
		return nil
	}
	delete(st.byID, id)
	st.idle.Remove(s.idle)
	s.idle = nil
	if st.byPrincipal[s.identity.Principal]--; st.byPrincipal[s.identity.Principal] <= 0 {
		delete(st.byPrincipal, s.identity.Principal)
	}
	return s
}

// sweep removes and returns the sessions idle for longer than ttl. It
// walks the idle order from the least recently used and stops at the
// first session still in use.
func (st *sessionStore) sweep(now time.Time, ttl time.Duration) []*session {
	st.mu.Lock()
	defer st.mu.Unlock()
	var out []*session
	for e := st.idle.Front(); e != nil; e = st.idle.Front() {
		st.visited++
		s := e.Value.(*session)
		if !s.expired(now, ttl) {
			break
		}
		out = append(out, st.removeLocked(s.id))
	}
	return out
}

func (st *sessionStore) all() []*session {
	st.mu.Lock()
	defer st.mu.Unlock()
	out := make([]*session, 0, len(st.byID))
	for e := st.idle.Front(); e != nil; e = e.Next() {
		out = append(out, e.Value.(*session))
	}
	return out
}

// count is the number of live sessions of principal.
func (st *sessionStore) count(principal string) int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.byPrincipal[principal]
}

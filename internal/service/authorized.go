package service

import (
	"container/list"
	"context"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// Defaults of the memory of authorized external actions.
const (
	// DefaultReportWindow is how long after its authorization an external
	// action can be reported.
	DefaultReportWindow = time.Hour
	// DefaultReportCapacity bounds how many authorized actions are
	// remembered; the least recently authorized or reported go first, and
	// one principal holds at most an eighth of them.
	DefaultReportCapacity = 32768
)

// principalShare is how many principals at their quota it takes to fill
// the memory: one principal holds at most capacity/principalShare entries.
const principalShare = 8

// ReportIndex remembers the external actions Nomos authorized, for
// POST /actions/report. *Authorized keeps them in the process; the Redis
// index (NewRedisReportIndex) shares them among replicas, so an action
// authorized by one can be reported to another. An error means the index
// could not answer: the action is denied, the report refused.
type ReportIndex interface {
	// Add remembers that the action was authorized for principal at now.
	Add(ctx context.Context, principal, traceID, actionID string, now time.Time) error
	// Reportable reports whether the action was authorized for principal
	// and its window has not passed at now.
	Reportable(ctx context.Context, principal, traceID, actionID string, now time.Time) (bool, error)
}

// Authorized remembers the external actions Nomos authorized, so that
// POST /actions/report accepts a report only from the principal an action
// was authorized for, and only for a while. It is bounded in memory (an LRU
// of fixed capacity) and in time (expiry is checked on read; nothing runs
// in the background). Each principal holds at most a share of it: a
// principal that authorizes more loses its own oldest entries, so flooding
// the memory cannot evict what other principals may still report. It is
// safe for concurrent use and survives reloads when the caller keeps it.
type Authorized struct {
	mu     sync.Mutex
	cache  *simplelru.LRU[authorizedKey, time.Time]
	owned  map[string]*list.List // per principal, its keys, oldest first
	elems  map[authorizedKey]*list.Element
	quota  int
	window time.Duration
}

type authorizedKey struct {
	principal, traceID, actionID string
}

// NewAuthorized returns a memory of capacity actions reportable for window
// each. Zero values take the defaults.
func NewAuthorized(capacity int, window time.Duration) (*Authorized, error) {
	if capacity <= 0 {
		capacity = DefaultReportCapacity
	}
	if window <= 0 {
		window = DefaultReportWindow
	}
	m := &Authorized{owned: map[string]*list.List{}, elems: map[authorizedKey]*list.Element{},
		quota: max(capacity/principalShare, 1), window: window}
	c, err := simplelru.NewLRU[authorizedKey, time.Time](capacity, m.forget)
	if err != nil {
		return nil, err
	}
	m.cache = c
	return m, nil
}

// forget drops an entry the LRU evicted or removed from its principal's
// list. It runs inside Add or Reportable, with mu held.
func (m *Authorized) forget(k authorizedKey, _ time.Time) {
	el, ok := m.elems[k]
	if !ok {
		return
	}
	delete(m.elems, k)
	l := m.owned[k.principal]
	l.Remove(el)
	if l.Len() == 0 {
		delete(m.owned, k.principal)
	}
}

// Add implements ReportIndex; it never fails. A principal at its quota
// gives up its own oldest entry first.
func (m *Authorized) Add(_ context.Context, principal, traceID, actionID string, now time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := authorizedKey{principal, traceID, actionID}
	if _, ok := m.elems[k]; !ok {
		if l := m.owned[principal]; l != nil && l.Len() >= m.quota {
			m.cache.Remove(l.Front().Value.(authorizedKey))
		}
		l := m.owned[principal]
		if l == nil {
			l = list.New()
			m.owned[principal] = l
		}
		m.elems[k] = l.PushBack(k)
	}
	m.cache.Add(k, now.Add(m.window))
	return nil
}

// Reportable implements ReportIndex. An expired entry is dropped.
func (m *Authorized) Reportable(_ context.Context, principal, traceID, actionID string, now time.Time) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := authorizedKey{principal, traceID, actionID}
	until, ok := m.cache.Get(k)
	if !ok {
		return false, nil
	}
	if !now.Before(until) {
		m.cache.Remove(k)
		return false, nil
	}
	return true, nil
}

// Interface guards
var _ ReportIndex = (*Authorized)(nil)

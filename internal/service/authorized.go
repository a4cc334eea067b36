package service

import (
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// Defaults of the memory of authorized external actions.
const (
	// DefaultReportWindow is how long after its authorization an external
	// action can be reported.
	DefaultReportWindow = time.Hour
	// DefaultReportCapacity bounds how many authorized actions are
	// remembered; the least recently authorized or reported go first.
	DefaultReportCapacity = 32768
)

// Authorized remembers the external actions Nomos authorized, so that
// POST /actions/report accepts a report only from the principal an action
// was authorized for, and only for a while. It is bounded in memory (an LRU
// of fixed capacity) and in time (expiry is checked on read; nothing runs
// in the background). It is safe for concurrent use and survives reloads
// when the caller keeps it.
type Authorized struct {
	cache  *lru.Cache[authorizedKey, time.Time]
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
	c, err := lru.New[authorizedKey, time.Time](capacity)
	if err != nil {
		return nil, err
	}
	return &Authorized{cache: c, window: window}, nil
}

// add remembers that the action was authorized for principal at now.
func (m *Authorized) add(principal, traceID, actionID string, now time.Time) {
	m.cache.Add(authorizedKey{principal, traceID, actionID}, now.Add(m.window))
}

// reportable reports whether the action was authorized for principal and
// its window has not passed at now. An expired entry is dropped.
func (m *Authorized) reportable(principal, traceID, actionID string, now time.Time) bool {
	k := authorizedKey{principal, traceID, actionID}
	until, ok := m.cache.Get(k)
	if !ok {
		return false
	}
	if !now.Before(until) {
		m.cache.Remove(k)
		return false
	}
	return true
}

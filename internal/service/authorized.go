package service

import (
	"context"
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

// Add implements ReportIndex; it never fails.
func (m *Authorized) Add(_ context.Context, principal, traceID, actionID string, now time.Time) error {
	m.cache.Add(authorizedKey{principal, traceID, actionID}, now.Add(m.window))
	return nil
}

// Reportable implements ReportIndex. An expired entry is dropped.
func (m *Authorized) Reportable(_ context.Context, principal, traceID, actionID string, now time.Time) (bool, error) {
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

package approvals

import (
	"context"
	"time"
)

// Disabled is the Store of a configuration without approvals (stateless
// mode): every call fails with ErrDisabled, so REQUIRE_APPROVAL stays a
// denial and nothing is written.
type Disabled struct{}

// CreateOrGetPending fails with ErrDisabled.
func (Disabled) CreateOrGetPending(context.Context, Request, time.Duration, time.Time) (Record, bool, error) {
	return Record{}, false, ErrDisabled
}

// Get fails with ErrDisabled.
func (Disabled) Get(context.Context, string) (Record, error) { return Record{}, ErrDisabled }

// Decide fails with ErrDisabled.
func (Disabled) Decide(context.Context, string, string, string, time.Time) (Record, error) {
	return Record{}, ErrDisabled
}

// Use fails with ErrDisabled.
func (Disabled) Use(context.Context, string, string, string, string, string, time.Time) (Record, error) {
	return Record{}, ErrDisabled
}

// List fails with ErrDisabled.
func (Disabled) List(context.Context, Filter) ([]Record, error) { return nil, ErrDisabled }

// Close does nothing.
func (Disabled) Close() error { return nil }

// Interface guards
var _ Store = Disabled{}

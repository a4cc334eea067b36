package approvals

import (
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"
)

// validateRequest refuses requests that could never be matched safely.
func validateRequest(req Request, ttl time.Duration) error {
	switch {
	case ttl <= 0:
		return fmt.Errorf("%w: ttl must be positive", ErrInvalid)
	case req.Fingerprint == "":
		return fmt.Errorf("%w: empty fingerprint", ErrInvalid)
	case req.ScopeKey == "":
		return fmt.Errorf("%w: empty scope key", ErrInvalid)
	case req.Principal == "":
		return fmt.Errorf("%w: empty principal", ErrInvalid)
	}
	switch req.ScopeType {
	case ScopeFingerprint:
		if req.ScopeKey != req.Fingerprint {
			return fmt.Errorf("%w: fingerprint scope key must equal the fingerprint", ErrInvalid)
		}
	case ScopeClass:
		var tuple []string
		if json.Unmarshal([]byte(req.ScopeKey), &tuple) != nil || len(tuple) < 2 || tuple[0] == "" || tuple[1] == "" {
			return fmt.Errorf("%w: class scope key must be a JSON array [action_type, resource, ...]", ErrInvalid)
		}
	default:
		return fmt.Errorf("%w: unknown scope type %q", ErrInvalid, req.ScopeType)
	}
	return nil
}

// newRecord builds the pending record for req.
func newRecord(req Request, ttl time.Duration, now time.Time) Record {
	now = now.UTC()
	return Record{
		ID: NewID(), Fingerprint: req.Fingerprint, ScopeType: req.ScopeType, ScopeKey: req.ScopeKey,
		Status: Pending, TraceID: req.TraceID, ActionID: req.ActionID, ActionType: req.ActionType,
		Resource: req.Resource, ParamsHash: req.ParamsHash, Principal: req.Principal, Agent: req.Agent,
		Environment: req.Environment, SingleUse: req.SingleUse, ParamsPreview: capPreview(req.ParamsPreview),
		CreatedAt: now, ExpiresAt: now.Add(ttl), UpdatedAt: now,
	}
}

// reusable reports whether rec is a pending record req may reuse.
func reusable(rec Record, req Request, now time.Time) bool {
	return rec.Status == Pending && !rec.Expired(now) &&
		rec.ScopeType == req.ScopeType && rec.ScopeKey == req.ScopeKey &&
		rec.Principal == req.Principal && rec.Agent == req.Agent && rec.Environment == req.Environment
}

// decide applies a decision to rec and reports whether rec changed.
func decide(rec *Record, decision, approver string, now time.Time) (bool, error) {
	if decision != Approved && decision != Denied {
		return false, fmt.Errorf("%w: decision %q", ErrInvalid, decision)
	}
	switch {
	case rec.Status == decision:
		return false, nil
	case rec.Status != Pending:
		return false, fmt.Errorf("%w: %s is %s", ErrConflict, rec.ID, rec.Status)
	case rec.Expired(now):
		return false, fmt.Errorf("%w: %s expired at %s", ErrExpired, rec.ID, rec.ExpiresAt.Format(time.RFC3339))
	}
	rec.Status, rec.DecidedBy, rec.UpdatedAt = decision, approver, now.UTC()
	return true, nil
}

// use checks that rec authorizes a retry of the action with scopeKey by the
// given identity, and consumes a single-use record. Identity is checked
// first so another identity learns nothing about the record's state.
func use(rec *Record, scopeKey, principal, agent, environment string, now time.Time) (bool, error) {
	switch {
	case rec.Principal != principal || rec.Agent != agent || rec.Environment != environment:
		return false, fmt.Errorf("%w: %s was requested by another identity", ErrMismatch, rec.ID)
	case rec.ScopeKey != scopeKey:
		return false, fmt.Errorf("%w: %s covers a different action (changed params need a new approval)", ErrMismatch, rec.ID)
	case rec.Status != Approved:
		return false, fmt.Errorf("%w: %s is %s", ErrNotApproved, rec.ID, rec.Status)
	case rec.Expired(now):
		return false, fmt.Errorf("%w: %s expired at %s", ErrExpired, rec.ID, rec.ExpiresAt.Format(time.RFC3339))
	case !rec.SingleUse:
		return false, nil
	case rec.Consumed:
		return false, fmt.Errorf("%w: %s is single-use", ErrConsumed, rec.ID)
	}
	rec.Consumed, rec.UpdatedAt = true, now.UTC()
	return true, nil
}

func validateFilter(f Filter) error {
	switch f.Status {
	case "", Pending, Approved, Denied:
		return nil
	}
	return fmt.Errorf("%w: unknown status %q", ErrInvalid, f.Status)
}

func notFound(id string) error { return fmt.Errorf("%w: %s", ErrNotFound, id) }

// capPreview cuts a preview to MaxPreviewBytes on a rune boundary, marking
// the cut with an ellipsis.
func capPreview(s string) string {
	if len(s) <= MaxPreviewBytes {
		return s
	}
	const mark = "…"
	cut := MaxPreviewBytes - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

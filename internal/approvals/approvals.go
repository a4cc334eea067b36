package approvals

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Errors returned by stores. Callers map them to HTTP statuses: ErrNotFound
// 404, ErrConflict 409, ErrExpired 400, ErrForbidden 403, ErrDisabled 404
// not_enabled; ErrNotApproved, ErrMismatch and ErrConsumed mean the retry is
// not authorized by this approval.
var (
	ErrNotFound    = errors.New("approval not found")
	ErrConflict    = errors.New("approval already decided differently")
	ErrExpired     = errors.New("approval expired")
	ErrForbidden   = errors.New("approval forbidden")
	ErrDisabled    = errors.New("approvals not enabled")
	ErrNotApproved = errors.New("approval not approved")
	ErrMismatch    = errors.New("approval does not match the action")
	ErrConsumed    = errors.New("approval already used")
	ErrInvalid     = errors.New("invalid approval request")
)

// Statuses.
const (
	Pending  = "PENDING"
	Approved = "APPROVED"
	Denied   = "DENIED"
)

// Scope types.
const (
	// ScopeFingerprint binds an approval to one exact action: its scope key
	// is the action fingerprint, so changed params need a new approval.
	ScopeFingerprint = "fingerprint"
	// ScopeClass binds an approval to "<action_type>|<resource>".
	ScopeClass = "class"
)

// Record is one approval.
type Record struct {
	ID          string `json:"approval_id"`
	Fingerprint string `json:"fingerprint"`
	ScopeType   string `json:"scope_type"`
	ScopeKey    string `json:"scope_key"`
	Status      string `json:"status"`
	TraceID     string `json:"trace_id,omitempty"`
	ActionID    string `json:"action_id,omitempty"`
	ActionType  string `json:"action_type"`
	Resource    string `json:"resource"`
	ParamsHash  string `json:"params_hash,omitempty"`
	// ParamsPreview is a redacted, capped rendering of the action's
	// params (at most MaxPreviewBytes), so a reviewer sees what they
	// approve. It is never used for matching; the scope key is.
	ParamsPreview string    `json:"params_preview,omitempty"`
	Principal     string    `json:"principal"`
	Agent         string    `json:"agent"`
	Environment   string    `json:"environment"`
	DecidedBy     string    `json:"decided_by,omitempty"`
	SingleUse     bool      `json:"single_use"`
	Consumed      bool      `json:"consumed"`
	CreatedAt     time.Time `json:"created_at"`
	ExpiresAt     time.Time `json:"expires_at"`
	UpdatedAt     time.Time `json:"updated_at"`
}

// Expired reports whether the record's TTL has run out at now.
func (r Record) Expired(now time.Time) bool { return !now.Before(r.ExpiresAt) }

// Request asks for an approval of one action.
type Request struct {
	Fingerprint string
	ScopeType   string
	ScopeKey    string
	TraceID     string
	ActionID    string
	ActionType  string
	Resource    string
	ParamsHash  string
	// ParamsPreview must already be redacted; the store only caps it.
	ParamsPreview string
	Principal     string
	Agent         string
	Environment   string
	SingleUse     bool
}

// MaxPreviewBytes caps Record.ParamsPreview.
const MaxPreviewBytes = 1024

// Filter selects records for List.
type Filter struct {
	// Status keeps only records with this status. Empty keeps all.
	Status string
	// Limit caps the number of records. Zero or less means no cap.
	Limit int
}

// Store persists approvals. Implementations are safe for concurrent use.
type Store interface {
	// CreateOrGetPending returns the PENDING, unexpired record with the
	// request's scope type, scope key, principal, agent and environment,
	// or creates one that expires after ttl. created reports which.
	CreateOrGetPending(ctx context.Context, req Request, ttl time.Duration, now time.Time) (rec Record, created bool, err error)
	// Get returns the record with id, or ErrNotFound.
	Get(ctx context.Context, id string) (Record, error)
	// Decide records a reviewer's decision (Approved or Denied). Deciding a
	// record again the same way returns it unchanged; differently,
	// ErrConflict. A pending record past its TTL gives ErrExpired.
	Decide(ctx context.Context, id, decision, approver string, now time.Time) (Record, error)
	// Use authorizes a retry: the record must be APPROVED, unexpired, of the
	// same scope key and identity, and, when single-use, not yet consumed;
	// a single-use record is consumed atomically.
	Use(ctx context.Context, id, scopeKey, principal, agent, environment string, now time.Time) (Record, error)
	// List returns records, newest first.
	List(ctx context.Context, f Filter) ([]Record, error)
	// Close releases the store.
	Close() error
}

// NewID returns a fresh approval id: "apr_" and 24 hex digits.
func NewID() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return "apr_" + hex.EncodeToString(b[:])
}

// ParseDecision maps the accepted decision words to Approved or Denied:
// approve/approved and deny/denied, in any letter case.
func ParseDecision(s string) (string, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "approve", "approved":
		return Approved, nil
	case "deny", "denied":
		return Denied, nil
	}
	return "", fmt.Errorf("%w: decision %q (want APPROVE or DENY)", ErrInvalid, s)
}

// CheckApprover returns ErrForbidden unless principal is listed. An empty
// list authorizes nobody.
func CheckApprover(approvers []string, principal string) error {
	if principal == "" {
		return ErrForbidden
	}
	for _, a := range approvers {
		if a == principal {
			return nil
		}
	}
	return ErrForbidden
}

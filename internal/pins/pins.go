package pins

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/caddy-nomos/nomos/policy/action"
)

// Mode says what a changed or new tool does to its upstream's listing.
type Mode string

const (
	// ModeOff records nothing and hides nothing.
	ModeOff Mode = "off"
	// ModeWarn records and reports changes but keeps every tool visible.
	ModeWarn Mode = "warn"
	// ModeEnforce quarantines a changed or new tool until it is accepted.
	ModeEnforce Mode = "enforce"
)

// ParseMode reads a mode; "" is enforce.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case "":
		return ModeEnforce, nil
	case ModeOff, ModeWarn, ModeEnforce:
		return m, nil
	}
	return "", fmt.Errorf("pin mode %q: want off, warn or enforce", s)
}

// Status is where a tool stands with its reviewers.
type Status string

const (
	// StatusTrusted: the upstream offers the accepted definition.
	StatusTrusted Status = "trusted"
	// StatusQuarantined: the upstream offers a definition nobody accepted.
	StatusQuarantined Status = "quarantined"
	// StatusRejected: the upstream offers a definition an operator refused.
	StatusRejected Status = "rejected"
)

// Change kinds, as audited.
const (
	KindFirstUse = "first_use" // the upstream's first listing, trusted as it is
	KindNewTool  = "new_tool"  // a tool that was not in the pinned listing
	KindChanged  = "changed"   // a pinned tool whose definition differs
)

// ErrNotFound is returned when no pin or no pending definition matches.
var ErrNotFound = errors.New("pins: no such pending tool definition")

// Definition is a tool definition as the upstream listed it.
type Definition struct {
	Name         string          `json:"name"`
	Title        string          `json:"title,omitempty"`
	Description  string          `json:"description,omitempty"`
	InputSchema  json.RawMessage `json:"inputSchema,omitempty"`
	OutputSchema json.RawMessage `json:"outputSchema,omitempty"`
	Annotations  json.RawMessage `json:"annotations,omitempty"`
}

// Fingerprint is "sha256:" and the hex sha256 of the definition's
// canonical JSON.
func Fingerprint(d Definition) (string, error) {
	canon, err := canonical(d)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(canon)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

func canonical(d Definition) ([]byte, error) {
	canon, err := action.CanonicalMarshal(d)
	if err != nil {
		return nil, fmt.Errorf("pins: tool %q: %w", d.Name, err)
	}
	return canon, nil
}

// Pin is the stored state of one upstream tool.
type Pin struct {
	Upstream string `json:"upstream"`
	Tool     string `json:"tool"`
	Status   Status `json:"status"`
	// Fingerprint and Definition are the accepted definition; empty for a
	// new tool nobody accepted yet.
	Fingerprint string          `json:"fingerprint,omitempty"`
	Definition  json.RawMessage `json:"definition,omitempty"`
	// Offered is what the upstream lists now, when it differs from the
	// accepted definition.
	OfferedFingerprint string          `json:"offered_fingerprint,omitempty"`
	OfferedDefinition  json.RawMessage `json:"offered_definition,omitempty"`
	// Kind is why the tool is not trusted: new_tool or changed.
	Kind      string    `json:"kind,omitempty"`
	DecidedBy string    `json:"decided_by,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Change is one difference an observation found, for the audit log.
type Change struct {
	Upstream       string   `json:"upstream"`
	Tool           string   `json:"tool"`
	Kind           string   `json:"kind"`
	OldFingerprint string   `json:"old_fingerprint,omitempty"`
	NewFingerprint string   `json:"new_fingerprint"`
	ChangedFields  []string `json:"changed_fields,omitempty"`
	Status         Status   `json:"status"`
}

// Store persists pins. Implementations make Observe's read-compare-write
// atomic across processes sharing the store.
type Store interface {
	// Update runs fn on the upstream's pins and writes back the pins fn
	// returns, atomically.
	Update(ctx context.Context, upstream string, fn func(map[string]Pin) ([]Pin, error)) error
	// List returns the pins of one upstream, or of all when upstream is "".
	List(ctx context.Context, upstream string) ([]Pin, error)
	Close() error
}

// ChangedFields names the top-level fields in which two canonical
// definitions differ, sorted.
func ChangedFields(old, cur json.RawMessage) []string {
	var a, b map[string]json.RawMessage
	_ = json.Unmarshal(old, &a)
	_ = json.Unmarshal(cur, &b)
	var out []string
	for k, v := range b {
		if !bytes.Equal(a[k], v) {
			out = append(out, k)
		}
	}
	for k := range a {
		if _, ok := b[k]; !ok {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

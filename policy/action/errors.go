package action

import (
	"errors"
	"fmt"
	"strings"
)

// ErrValidation is wrapped by every error about a malformed or oversized
// envelope, action file, params or extension.
var ErrValidation = errors.New("validation error")

// ErrNormalization is wrapped by every error about a resource that cannot be
// normalized safely.
var ErrNormalization = errors.New("normalization error")

// validationError joins several problems found in one step so a client can
// fix them all at once.
func validationError(step string, problems ...string) error {
	return fmt.Errorf("%s: %s: %w", step, strings.Join(problems, "; "), ErrValidation)
}

// normalizationError wraps the reason a resource was refused.
func normalizationError(step string, reason error) error {
	return fmt.Errorf("%s: %v: %w", step, reason, ErrNormalization)
}

// quoteKey quotes an offending key for an error message, bounded so a huge
// key cannot blow up logs.
func quoteKey(k string) string {
	const maxEcho = 64
	if len(k) > maxEcho {
		return fmt.Sprintf("%q...", k[:maxEcho])
	}
	return fmt.Sprintf("%q", k)
}

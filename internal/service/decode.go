package service

import (
	"net/http"

	"github.com/caddy-nomos/nomos/policy/action"
)

// decodeStrict decodes a small JSON object whose keys must be exactly the
// allowed ones, with action's strict rules (no duplicate or case-variant key
// at any depth, no trailing data). Go's encoding/json alone would accept
// case variants and keep the last duplicate.
func decodeStrict(body []byte, v any, allowed ...string) error {
	if err := action.DecodeStrictObject(body, v, allowed...); err != nil {
		return Errorf(http.StatusBadRequest, CodeValidation, "%s", err.Error())
	}
	return nil
}

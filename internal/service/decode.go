package service

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
)

// decodeStrict decodes a small JSON object whose keys must be exactly the
// allowed ones (case-sensitive, no duplicates, no trailing data). Go's
// encoding/json alone would accept case variants and keep the last duplicate.
func decodeStrict(body []byte, v any, allowed ...string) error {
	raw, err := objectKeys(body)
	if err != nil {
		return Errorf(http.StatusBadRequest, CodeValidation, "%s", err.Error())
	}
	for k := range raw {
		if !slices.Contains(allowed, k) {
			return Errorf(http.StatusBadRequest, CodeValidation, "unknown field %q", k)
		}
	}
	if err := json.Unmarshal(body, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return Errorf(http.StatusBadRequest, CodeValidation, "field %q has the wrong type", te.Field)
		}
		return Errorf(http.StatusBadRequest, CodeValidation, "body is not valid JSON")
	}
	return nil
}

// objectKeys walks the top-level object, rejecting duplicate keys and
// trailing data.
func objectKeys(body []byte) (map[string]bool, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, errString("body must be a JSON object")
	}
	keys := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, errString("invalid JSON")
		}
		k, _ := t.(string)
		if keys[k] {
			return nil, errString("duplicate field " + quote(k))
		}
		keys[k] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil, errString("invalid JSON")
		}
	}
	if _, err := dec.Token(); err != nil {
		return nil, errString("invalid JSON")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errString("trailing data after JSON body")
	}
	return keys, nil
}

type errString string

func (e errString) Error() string { return string(e) }

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

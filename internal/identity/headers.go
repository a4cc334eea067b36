package identity

import (
	"errors"
	"net/http"
	"strings"
)

// singleHeader returns the one value of header name. A repeated header is an
// error: two values would let a client and a proxy disagree on which counts.
// An empty value counts as absent.
func singleHeader(h http.Header, name string) (string, bool, error) {
	values := h.Values(name)
	switch len(values) {
	case 0:
		return "", false, nil
	case 1:
		v := strings.TrimSpace(values[0])
		return v, v != "", nil
	}
	return "", false, errors.New("duplicate " + strings.ToLower(name) + " header")
}

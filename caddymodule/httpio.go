package caddymodule

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/caddy-nomos/nomos/internal/service"
	"github.com/caddy-nomos/nomos/policy/action"
)

// errorBody is the stable error shape of every Nomos endpoint.
type errorBody struct {
	Decision string `json:"decision"`
	Reason   string `json:"reason"`
}

// writeError writes {"decision":"DENY","reason":"<code>: <message>"}.
func writeError(w http.ResponseWriter, e *service.Error) error {
	return writeJSON(w, e.Status, errorBody{Decision: "DENY", Reason: e.Code + ": " + e.Msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, err = w.Write(append(b, '\n'))
	return err
}

// readBody reads at most limit bytes; a larger body is a 413 without
// reading the rest.
func readBody(r *http.Request, limit int64) ([]byte, *service.Error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, service.Errorf(http.StatusRequestEntityTooLarge, service.CodeTooLarge, "body exceeds %d bytes", limit)
		}
		return nil, service.Errorf(http.StatusBadRequest, service.CodeValidation, "could not read body")
	}
	if int64(len(body)) > limit {
		return nil, service.Errorf(http.StatusRequestEntityTooLarge, service.CodeTooLarge, "body exceeds %d bytes", limit)
	}
	return body, nil
}

// maxBody is the v1 envelope limit for every POST endpoint.
const maxBody = action.MaxBodyBytes

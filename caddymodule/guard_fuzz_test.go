package caddymodule

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddy-nomos/nomos/internal/redact"
	"github.com/caddy-nomos/nomos/mcp"
	"github.com/caddy-nomos/nomos/policy"
)

// filterAll runs body through a response filter in the given chunks, as
// an upstream copy would: it stops at the first write error.
func filterAll(t *testing.T, red *redact.Redactor, obl policy.Obligations, contentType string, chunks [][]byte) string {
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	fw := newFilterWriter(req, rec, red, obl, nil, 0)
	fw.Header().Set("Content-Type", contentType)
	fw.WriteHeader(http.StatusOK)
	for _, c := range chunks {
		if _, err := fw.Write(c); err != nil {
			if err != errOutputLimit {
				t.Fatalf("write: %v", err)
			}
			return rec.Body.String()
		}
	}
	fw.finish(nil)
	return rec.Body.String()
}

// FuzzFilterChunking checks that the streamed redaction does not depend on
// how the upstream's body is cut into writes: a secret split across writes
// is masked exactly as it would be in one piece.
func FuzzFilterChunking(f *testing.F) {
	key := "-----BEGIN RSA PRIVATE KEY-----\nMIIEabc\n-----END RSA PRIVATE KEY-----\n"
	f.Add([]byte("token ghp_0123456789abcdefghij0123456789abcdef\nok\n"), uint16(9), uint16(30), false)
	f.Add([]byte("data: Authorization: Bearer abcdefghijklmnop1234\n\ndata: x\n\n"), uint16(20), uint16(40), true)
	f.Add([]byte("a\n"+key+"b\n"), uint16(12), uint16(50), false)
	f.Add([]byte("x "+key+key), uint16(3), uint16(70), false)
	red, err := redact.New(nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte, a, b uint16, sse bool) {
		ct := "text/plain"
		if sse {
			ct = "text/event-stream"
		}
		i, j := int(a)%(len(body)+1), int(b)%(len(body)+1)
		if i > j {
			i, j = j, i
		}
		whole := filterAll(t, red, policy.Obligations{}, ct, [][]byte{body})
		parts := filterAll(t, red, policy.Obligations{}, ct, [][]byte{body[:i], body[i:j], body[j:]})
		if whole != parts {
			t.Fatalf("chunking changed the output\nbody  %q (cuts %d, %d)\nwhole %q\nparts %q", body, i, j, whole, parts)
		}
		// A capped response is a prefix of the uncapped one, within the cap.
		limit := int64(a%64) + 1
		capped := filterAll(t, red, policy.Obligations{OutputMaxBytes: &limit}, ct, [][]byte{body[:i], body[i:j], body[j:]})
		if int64(len(capped)) > limit || !strings.HasPrefix(whole, capped) {
			t.Fatalf("cap %d broke the output\nbody   %q\nwhole  %q\ncapped %q", limit, body, whole, capped)
		}
	})
}

// strictShaper passes only what decodes as strict JSON-RPC, re-encoded.
type strictShaper struct{}

func (strictShaper) header(int, http.Header) {}

func (strictShaper) message(data []byte) []byte {
	m, err := mcp.DecodeMessage(data)
	if err != nil {
		return nil
	}
	out, _ := json.Marshal(m)
	return out
}

// shapeAll runs an MCP-mode response through the filter in chunks.
func shapeAll(contentType string, chunks [][]byte) string {
	rec := httptest.NewRecorder()
	fw := newFilterWriter(httptest.NewRequest(http.MethodPost, "/", nil), rec, nil, policy.Obligations{}, nil, 0)
	fw.shaper = strictShaper{}
	fw.Header().Set("Content-Type", contentType)
	fw.WriteHeader(http.StatusOK)
	for _, c := range chunks {
		if _, err := fw.Write(c); err != nil {
			return rec.Body.String()
		}
	}
	fw.finish(nil)
	return rec.Body.String()
}

// FuzzGuardMCPShaping checks MCP mode's filter: what the client gets does
// not depend on how the upstream cut its stream into writes, and every
// event's data is a message the shaper accepted (or empty, a priming
// event), never raw upstream bytes.
func FuzzGuardMCPShaping(f *testing.F) {
	f.Add([]byte("event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n"), uint16(7), uint16(30), true)
	f.Add([]byte("data: {\"jsonrpc\":\"2.0\",\r\ndata: \"method\":\"ping\",\"id\":2}\r\n\r\n: c\n\n"), uint16(3), uint16(44), true)
	f.Add([]byte("data: {\"jsonrpc\":\"2.0\",\"id\":1,\"id\":2,\"result\":{}}\n\ndata: x\n\n"), uint16(1), uint16(9), true)
	f.Add([]byte("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[]}}"), uint16(5), uint16(20), false)
	f.Fuzz(func(t *testing.T, body []byte, a, b uint16, sse bool) {
		ct := "application/json"
		if sse {
			ct = "text/event-stream"
		}
		i, j := int(a)%(len(body)+1), int(b)%(len(body)+1)
		if i > j {
			i, j = j, i
		}
		whole := shapeAll(ct, [][]byte{body})
		if parts := shapeAll(ct, [][]byte{body[:i], body[i:j], body[j:]}); parts != whole {
			t.Fatalf("chunking changed the output\nbody  %q (cuts %d, %d)\nwhole %q\nparts %q", body, i, j, whole, parts)
		}
		if !sse {
			if whole != "" {
				if _, err := mcp.DecodeMessage([]byte(whole)); err != nil {
					t.Fatalf("client got %q: %v", whole, err)
				}
			}
			return
		}
		for _, line := range strings.Split(whole, "\n") {
			if data, ok := strings.CutPrefix(line, "data:"); ok && data != "" { // "data:" alone: a priming event
				if _, err := mcp.DecodeMessage([]byte(strings.TrimPrefix(data, " "))); err != nil {
					t.Fatalf("client got data %q from %q: %v", data, body, err)
				}
			}
		}
	})
}

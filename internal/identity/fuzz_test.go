package identity

import (
	"context"
	"errors"
	"net/http"
	"testing"
)

// FuzzAuthenticate feeds arbitrary header values and bodies through the
// whole chain: it must never panic, and every failure must wrap ErrAuth.
func FuzzAuthenticate(f *testing.F) {
	f.Add("Bearer key-alice-0123456789", "agent-1", SignLegacyBody("s3cret", "", []byte("{}")), "", []byte("{}"))
	f.Add("Bearer a.b.c", "", "", "1800000000", []byte(""))
	f.Add("Bearer eyJhbGciOiJub25lIn0.e30.", "x", "zz", "-1", []byte("x"))
	f.Add("Basic Zm9v", "agent-1", SignLegacyBody("s3cret", "1800000000", []byte("b")), "1800000000", []byte("b"))
	cfg := baseConfig()
	cfg.JWT = &JWTConfig{Issuer: "https://idp.example", Audiences: []string{"nomos"}, StaticKeys: [][]byte{pemPublic(f, edKey().Public())}}
	a, err := New(cfg)
	if err != nil {
		f.Fatal(err)
	}
	v2 := v2Req("alice", "nonce-0123456789abcdef")
	f.Add("Bearer key-alice-0123456789", "agent-1", Sign("s3cret", v2), unix(t0), []byte(body))
	f.Fuzz(func(t *testing.T, authz, agentID, sig, ts string, body []byte) {
		h := http.Header{}
		for k, v := range map[string]string{"Authorization": authz, HeaderAgentID: agentID, HeaderAgentSignature: sig, HeaderTimestamp: ts, HeaderNonce: "nonce-0123456789abcdef"} {
			if v != "" {
				h.Set(k, v)
			}
		}
		_, err := a.Authenticate(context.Background(), Input{Header: h, Body: body, FromTrustedProxy: true, Method: "POST", Target: "/action"})
		if err != nil && !errors.Is(err, ErrAuth) {
			t.Fatalf("error %v does not wrap ErrAuth", err)
		}
	})
}

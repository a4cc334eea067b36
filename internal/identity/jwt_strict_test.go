package identity

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"testing"
)

// rawEdDSAToken signs header and payload exactly as given, so tests can put
// duplicate keys in them that no JWT library would write.
func rawEdDSAToken(header, payload string) string {
	enc := base64.RawURLEncoding.EncodeToString
	input := enc([]byte(header)) + "." + enc([]byte(payload))
	return input + "." + enc(ed25519.Sign(edKey(), []byte(input)))
}

// TestJWTDuplicateKeys: issue 8 #13. A validly signed token whose header or
// payload holds a key twice (or twice under case folding) is refused with
// 401 and a stable reason, never read as "last wins".
func TestJWTDuplicateKeys(t *testing.T) {
	c := goodClaims()
	claims := func(extra string) string {
		return fmt.Sprintf(`{"iss":%q,"aud":"nomos","exp":%d,"iat":%d,%s}`, c.Issuer, c.Expiry, c.IssuedAt, extra)
	}
	head := `{"alg":"EdDSA","typ":"JWT"}`
	cases := []struct{ name, header, payload, wantErr string }{
		{"valid", head, claims(`"sub":"jwt-user"`), ""},
		{"two sub claims", head, claims(`"sub":"jwt-user","sub":"reviewer"`), "jwt has duplicate keys"},
		{"case-variant sub", head, claims(`"sub":"jwt-user","SUB":"reviewer"`), "jwt has duplicate keys"},
		{"escaped sub", head, claims(`"sub":"jwt-user","\u0073ub":"reviewer"`), "jwt has duplicate keys"},
		{"case-variant exp", head, claims(`"sub":"jwt-user","EXP":1`), "jwt has duplicate keys"},
		{"nested duplicate", head, claims(`"sub":"jwt-user","ctx":{"role":"a","Role":"b"}`), "jwt has duplicate keys"},
		{"two alg", `{"alg":"EdDSA","alg":"none","typ":"JWT"}`, claims(`"sub":"jwt-user"`), "jwt has duplicate keys"},
		{"case-variant kid", `{"alg":"EdDSA","kid":"a","KID":"b"}`, claims(`"sub":"jwt-user"`), "jwt has duplicate keys"},
		{"trailing data in header", `{"alg":"EdDSA"} {}`, claims(`"sub":"jwt-user"`), "invalid bearer token"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig()
			cfg.JWT = jwtConfig(t)
			a := mustNew(t, cfg)
			got, err := a.AuthenticatePrincipal(context.Background(), Input{Header: bearer(rawEdDSAToken(tc.header, tc.payload))})
			checkResult(t, got, err, Result{Principal: "jwt-user", Method: MethodJWT}, tc.wantErr)
		})
	}
}

func TestJWKSDuplicateKeysRefused(t *testing.T) {
	if _, err := parseJWKS([]byte(`{"keys":[],"Keys":[]}`)); err == nil {
		t.Fatal("a jwks with case-variant members was accepted")
	}
}

package identity

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

func jwtConfig(t *testing.T) *JWTConfig {
	return &JWTConfig{
		Issuer:     "https://idp.example",
		Audiences:  []string{"other", "nomos"},
		StaticKeys: [][]byte{pemPublic(t, &rsaKey1().PublicKey), pemPublic(t, &ecKey().PublicKey), pemPublic(t, edKey().Public())},
	}
}

func unsignedToken(t *testing.T, alg string) string {
	t.Helper()
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"`+alg+`","typ":"JWT"}`)) + "." + enc([]byte(`{"iss":"https://idp.example","sub":"alice","aud":"nomos","exp":1900000000}`)) + "."
}

func TestJWT(t *testing.T) {
	mod := func(f func(*claims)) claims {
		c := goodClaims()
		f(&c)
		return c
	}
	rsaTok := func(c claims) func(t *testing.T) string {
		return func(t *testing.T) string { return signToken(t, jose.RS256, rsaKey1(), "", c) }
	}
	tests := []struct {
		name    string
		claim   string
		token   func(t *testing.T) string
		want    string
		wantErr string
	}{
		{name: "rs256", token: rsaTok(goodClaims()), want: "alice"},
		{name: "es256", token: func(t *testing.T) string { return signToken(t, jose.ES256, ecKey(), "", goodClaims()) }, want: "alice"},
		{name: "eddsa", token: func(t *testing.T) string { return signToken(t, jose.EdDSA, edKey(), "", goodClaims()) }, want: "alice"},
		{name: "principal claim", claim: "email", token: rsaTok(mod(func(c *claims) { c.Email = "alice@example.org" })), want: "alice@example.org"},
		{name: "principal claim not a string", claim: "email", token: rsaTok(mod(func(c *claims) { c.Email = 42 })), wantErr: "jwt principal claim missing or not a string"},
		{name: "empty sub", token: rsaTok(mod(func(c *claims) { c.Subject = "" })), wantErr: "jwt principal claim missing"},
		{name: "wrong issuer", token: rsaTok(mod(func(c *claims) { c.Issuer = "https://evil.example" })), wantErr: "jwt issuer mismatch"},
		{name: "wrong audience", token: rsaTok(mod(func(c *claims) { c.Audience = []string{"someone-else"} })), wantErr: "jwt audience mismatch"},
		{name: "no audience", token: rsaTok(mod(func(c *claims) { c.Audience = nil })), wantErr: "jwt audience mismatch"},
		{name: "expired", token: rsaTok(mod(func(c *claims) { c.Expiry = t0.Add(-time.Minute).Unix() })), wantErr: "jwt expired"},
		{name: "expired within leeway", token: rsaTok(mod(func(c *claims) { c.Expiry = t0.Add(-10 * time.Second).Unix() })), want: "alice"},
		{name: "no exp", token: rsaTok(mod(func(c *claims) { c.Expiry = 0 })), wantErr: "jwt has no exp claim"},
		{name: "not yet valid", token: rsaTok(mod(func(c *claims) { c.NotBefore = t0.Add(time.Minute).Unix() })), wantErr: "jwt not yet valid"},
		{name: "nbf within leeway", token: rsaTok(mod(func(c *claims) { c.NotBefore = t0.Add(10 * time.Second).Unix() })), want: "alice"},
		{name: "issued in the future", token: rsaTok(mod(func(c *claims) { c.IssuedAt = t0.Add(time.Hour).Unix() })), wantErr: "jwt issued in the future"},
		{name: "alg none", token: func(t *testing.T) string { return unsignedToken(t, "none") }, wantErr: "jwt algorithm not allowed"},
		{name: "hs256 keyed with the public key", token: func(t *testing.T) string {
			return signToken(t, jose.HS256, pemPublic(t, &rsaKey1().PublicKey), "", goodClaims())
		}, wantErr: "jwt algorithm not allowed"},
		{name: "rs512 not allowed", token: func(t *testing.T) string { return signToken(t, jose.RS512, rsaKey1(), "", goodClaims()) }, wantErr: "jwt algorithm not allowed"},
		{name: "unknown signing key", token: func(t *testing.T) string { return signToken(t, jose.RS256, rsaKey2(), "", goodClaims()) }, wantErr: "jwt signature invalid"},
		{name: "tampered payload", token: func(t *testing.T) string {
			tok := signToken(t, jose.RS256, rsaKey1(), "", goodClaims())
			other := signToken(t, jose.RS256, rsaKey1(), "", mod(func(c *claims) { c.Subject = "root" }))
			return headOf(tok) + "." + payloadOf(other) + "." + sigOf(tok)
		}, wantErr: "jwt signature invalid"},
		{name: "not a jwt", token: func(t *testing.T) string { return "opaque-token" }, wantErr: "invalid bearer token"},
		{name: "garbage header", token: func(t *testing.T) string { return "!!.!!.!!" }, wantErr: "invalid bearer token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := baseConfig()
			cfg.JWT = jwtConfig(t)
			cfg.JWT.PrincipalClaim = tt.claim
			a := mustNew(t, cfg)
			got, err := a.AuthenticatePrincipal(context.Background(), Input{Header: bearer(tt.token(t))})
			checkResult(t, got, err, Result{Principal: tt.want, Method: MethodJWT}, tt.wantErr)
		})
	}
}

func TestAPIKeyBeforeJWT(t *testing.T) {
	cfg := baseConfig()
	cfg.JWT = jwtConfig(t)
	a := mustNew(t, cfg)
	got, err := a.AuthenticatePrincipal(context.Background(), Input{Header: bearer("key-bob-0123456789")})
	checkResult(t, got, err, Result{Principal: "bob", Method: MethodAPIKey}, "")
}

func TestStaticKeyFromCertificate(t *testing.T) {
	cs := certificate(t, "idp")
	cfg := baseConfig()
	cfg.JWT = &JWTConfig{Issuer: "https://idp.example", Audiences: []string{"nomos"}, StaticKeys: [][]byte{pemCert(cs)}}
	a := mustNew(t, cfg)
	// certificate() issues leaves for ecKey's public key.
	got, err := a.AuthenticatePrincipal(context.Background(), Input{Header: bearer(signToken(t, jose.ES256, ecKey(), "", goodClaims()))})
	checkResult(t, got, err, Result{Principal: "alice", Method: MethodJWT}, "")
}

func headOf(tok string) string    { return strings.Split(tok, ".")[0] }
func payloadOf(tok string) string { return strings.Split(tok, ".")[1] }
func sigOf(tok string) string     { return strings.Split(tok, ".")[2] }

func pemCert(cs *tls.ConnectionState) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cs.PeerCertificates[0].Raw})
}

package identity

import (
	"strings"
	"testing"
	"time"
)

func TestNewRejectsBadConfig(t *testing.T) {
	priv := []byte("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIKU0cXzg7jC1fL7kY1q1Yw0Zqf9t6u1hX8m2V7Hn7kTa\n-----END PRIVATE KEY-----\n")
	tests := []struct {
		name    string
		cfg     func(t *testing.T) Config
		wantErr string
	}{
		{name: "empty api key", cfg: func(*testing.T) Config { return Config{APIKeys: []APIKey{{Key: "", Principal: "a"}}} }, wantErr: "api key 0: empty key"},
		{name: "empty principal", cfg: func(*testing.T) Config { return Config{APIKeys: []APIKey{{Key: "k", Principal: ""}}} }, wantErr: "api key 0: principal"},
		{name: "duplicate api key", cfg: func(*testing.T) Config {
			return Config{APIKeys: []APIKey{{Key: "secret-key", Principal: "a"}, {Key: "secret-key", Principal: "b"}}}
		}, wantErr: "api key 1: duplicate key"},
		{name: "empty agent secret", cfg: func(*testing.T) Config { return Config{AgentSecrets: []AgentSecret{{AgentID: "a", Secret: ""}}} }, wantErr: "empty secret"},
		{name: "empty agent id", cfg: func(*testing.T) Config { return Config{AgentSecrets: []AgentSecret{{AgentID: "", Secret: "s"}}} }, wantErr: "agent id"},
		{name: "duplicate agent", cfg: func(*testing.T) Config {
			return Config{AgentSecrets: []AgentSecret{{AgentID: "a", Secret: "s"}, {AgentID: "a", Secret: "t"}}}
		}, wantErr: "duplicate agent id"},
		{name: "negative skew", cfg: func(*testing.T) Config { return Config{MaxClockSkew: -1} }, wantErr: "skew"},
		{name: "negative cache", cfg: func(*testing.T) Config { return Config{ReplayCacheSize: -1} }, wantErr: "replay cache"},
		{name: "jwt without issuer", cfg: func(t *testing.T) Config { c := jwtConfig(t); c.Issuer = ""; return Config{JWT: c} }, wantErr: "issuer is required"},
		{name: "jwt without audience", cfg: func(t *testing.T) Config { c := jwtConfig(t); c.Audiences = nil; return Config{JWT: c} }, wantErr: "audience"},
		{name: "jwt without keys", cfg: func(t *testing.T) Config { c := jwtConfig(t); c.StaticKeys = nil; return Config{JWT: c} }, wantErr: "static keys or a jwks url"},
		{name: "bad pem", cfg: func(t *testing.T) Config {
			c := jwtConfig(t)
			c.StaticKeys = [][]byte{[]byte("not pem")}
			return Config{JWT: c}
		}, wantErr: "static key 0: no pem block"},
		{name: "private key pem", cfg: func(t *testing.T) Config { c := jwtConfig(t); c.StaticKeys = [][]byte{priv}; return Config{JWT: c} }, wantErr: "private key was given"},
		{name: "http jwks url", cfg: func(t *testing.T) Config {
			return Config{JWT: &JWTConfig{Issuer: "i", Audiences: []string{"a"}, JWKSURL: "http://idp.example/jwks"}}
		}, wantErr: "must use https"},
		{name: "http jwks url to a name starting with 127", cfg: func(t *testing.T) Config {
			return Config{JWT: &JWTConfig{Issuer: "i", Audiences: []string{"a"}, JWKSURL: "http://127.evil.example/jwks"}}
		}, wantErr: "must use https"},
		{name: "unknown mtls mode", cfg: func(*testing.T) Config { return Config{MTLS: &MTLSConfig{Mode: "cn"}} }, wantErr: "unknown mode"},
		{name: "spiffe without trust domain", cfg: func(*testing.T) Config { return Config{MTLS: &MTLSConfig{Mode: "spiffe"}} }, wantErr: "trust domain"},
		{name: "bad trust domain", cfg: func(*testing.T) Config {
			return Config{MTLS: &MTLSConfig{Mode: "spiffe", TrustDomain: "Example.org/x"}}
		}, wantErr: "invalid trust domain"},
		{name: "trusted headers naming nothing", cfg: func(*testing.T) Config { return Config{TrustedHeaders: &TrustedHeaderConfig{}} }, wantErr: "no header named"},
		{name: "trusted header authorization", cfg: func(*testing.T) Config {
			return Config{TrustedHeaders: &TrustedHeaderConfig{PrincipalHeader: "authorization"}}
		}, wantErr: "cannot carry"},
		{name: "anonymous agent without anonymous principal", cfg: func(*testing.T) Config { return Config{AnonymousAgent: "a"} }, wantErr: "without an anonymous principal"},
		{name: "anonymous with newline", cfg: func(*testing.T) Config { return Config{Anonymous: "dev\n"} }, wantErr: "anonymous principal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg(t))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestNewErrorsNeverEchoSecrets(t *testing.T) {
	_, err := New(Config{APIKeys: []APIKey{{Key: "super-secret-value", Principal: "a"}, {Key: "super-secret-value", Principal: "b"}}})
	if err == nil || strings.Contains(err.Error(), "super-secret-value") {
		t.Fatalf("error %v", err)
	}
}

func TestNewDefaults(t *testing.T) {
	a := mustNew(t, Config{JWT: &JWTConfig{Issuer: "i", Audiences: []string{"a"}, JWKSURL: "https://idp.example/jwks"}})
	if a.skew != DefaultMaxClockSkew || a.replay.(*ReplayCache).skew != int64(DefaultMaxClockSkew/time.Second) {
		t.Fatalf("skew %v replay %+v", a.skew, a.replay)
	}
	if a.jwt.claim != "sub" || a.jwt.jwks.refresh != DefaultJWKSRefresh || a.jwt.jwks.client == nil {
		t.Fatalf("jwt defaults not applied: %+v", a.jwt)
	}
	if a.clock == nil {
		t.Fatal("no clock")
	}
}

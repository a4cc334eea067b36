package identity

import (
	"context"
	"net/http"
	"strings"
	"testing"
)

func baseConfig() Config {
	return Config{
		APIKeys: []APIKey{
			{Key: "key-alice-0123456789", Principal: "alice"},
			{Key: "key-bob-0123456789", Principal: "bob"},
		},
		AgentSecrets: []AgentSecret{{AgentID: "agent-1", Secret: "s3cret"}},
		TrustedHeaders: &TrustedHeaderConfig{
			PrincipalHeader: "X-Proxy-User",
			AgentHeader:     "X-Proxy-Agent",
		},
		MTLS:  &MTLSConfig{Mode: MTLSModeSPIFFE, TrustDomain: "example.org"},
		Clock: newTestClock().Now,
	}
}

func TestPrincipalSources(t *testing.T) {
	spiffe := certificate(t, "ignored", "spiffe://example.org/ns/prod/sa/agent")
	tests := []struct {
		name      string
		anonymous string
		in        Input
		want      Result
		wantErr   string
	}{
		{name: "api key", in: Input{Header: bearer("key-alice-0123456789")}, want: Result{Principal: "alice", Method: MethodAPIKey}},
		{name: "second api key", in: Input{Header: bearer("key-bob-0123456789")}, want: Result{Principal: "bob", Method: MethodAPIKey}},
		{name: "bearer scheme is case-insensitive", in: Input{Header: hdr("Authorization", "bearer key-bob-0123456789")}, want: Result{Principal: "bob", Method: MethodAPIKey}},
		{name: "unknown api key", in: Input{Header: bearer("nope")}, wantErr: "principal authentication failed: unknown api key"},
		{name: "prefix of a key", in: Input{Header: bearer("key-alice")}, wantErr: "unknown api key"},
		{name: "empty bearer", in: Input{Header: hdr("Authorization", "Bearer ")}, wantErr: "empty bearer token"},
		{name: "duplicate authorization", in: Input{Header: hdr("Authorization", "Bearer key-bob-0123456789", "Authorization", "Bearer x")}, wantErr: "duplicate authorization header"},
		{name: "basic auth is not a nomos credential", in: Input{Header: hdr("Authorization", "Basic Zm9vOmJhcg=="), UpstreamPrincipal: "carol"}, want: Result{Principal: "carol", Method: MethodUpstreamAuth}},
		{name: "mtls spiffe", in: Input{Header: http.Header{}, TLS: spiffe}, want: Result{Principal: "spiffe://example.org/ns/prod/sa/agent", Method: MethodMTLS}},
		{name: "bearer beats mtls", in: Input{Header: bearer("key-bob-0123456789"), TLS: spiffe}, want: Result{Principal: "bob", Method: MethodAPIKey}},
		{name: "invalid bearer with valid cert fails", in: Input{Header: bearer("nope"), TLS: spiffe}, wantErr: "unknown api key"},
		{name: "valid bearer with unverified cert fails", in: Input{Header: bearer("key-bob-0123456789"), TLS: unverified(spiffe)}, wantErr: "mtls client certificate not verified"},
		{name: "mtls beats upstream", in: Input{TLS: spiffe, UpstreamPrincipal: "carol"}, want: Result{Principal: "spiffe://example.org/ns/prod/sa/agent", Method: MethodMTLS}},
		{name: "upstream auth", in: Input{UpstreamPrincipal: "carol"}, want: Result{Principal: "carol", Method: MethodUpstreamAuth}},
		{name: "upstream beats trusted header", in: Input{Header: hdr("X-Proxy-User", "dave"), FromTrustedProxy: true, UpstreamPrincipal: "carol"}, want: Result{Principal: "carol", Method: MethodUpstreamAuth}},
		{name: "upstream with control character", in: Input{UpstreamPrincipal: "carol\n"}, wantErr: "invalid principal name"},
		{name: "trusted header from trusted proxy", in: Input{Header: hdr("X-Proxy-User", "dave"), FromTrustedProxy: true}, want: Result{Principal: "dave", Method: MethodTrustedHeader}},
		{name: "trusted header lower-case name", in: Input{Header: http.Header{"X-Proxy-User": {"dave"}}, FromTrustedProxy: true}, want: Result{Principal: "dave", Method: MethodTrustedHeader}},
		{name: "trusted header from untrusted peer is ignored", in: Input{Header: hdr("X-Proxy-User", "dave")}, wantErr: "no credentials"},
		{name: "trusted header from untrusted peer falls to anonymous", anonymous: "anon", in: Input{Header: hdr("X-Proxy-User", "dave")}, want: Result{Principal: "anon", Method: MethodAnonymous}},
		{name: "duplicate trusted header", in: Input{Header: hdr("X-Proxy-User", "dave", "X-Proxy-User", "eve"), FromTrustedProxy: true}, wantErr: "duplicate x-proxy-user header"},
		{name: "trusted header with control character", in: Input{Header: hdr("X-Proxy-User", "da\x01ve"), FromTrustedProxy: true}, wantErr: "invalid principal name"},
		{name: "anonymous", anonymous: "anon", in: Input{}, want: Result{Principal: "anon", Method: MethodAnonymous}},
		{name: "invalid key never falls to anonymous", anonymous: "anon", in: Input{Header: bearer("nope")}, wantErr: "unknown api key"},
		{name: "unverified cert never falls to anonymous", anonymous: "anon", in: Input{TLS: unverified(spiffe)}, wantErr: "mtls client certificate not verified"},
		{name: "no credentials", in: Input{}, wantErr: "principal authentication failed: no credentials"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := baseConfig()
			cfg.Anonymous = tt.anonymous
			a := mustNew(t, cfg)
			got, err := a.AuthenticatePrincipal(context.Background(), tt.in)
			checkResult(t, got, err, tt.want, tt.wantErr)
		})
	}
}

func TestMTLS(t *testing.T) {
	inDomain := certificate(t, "svc", "spiffe://example.org/workload")
	tests := []struct {
		name    string
		mtls    MTLSConfig
		tls     func(t *testing.T) Input
		want    Result
		wantErr string
	}{
		{name: "spiffe in trust domain", mtls: MTLSConfig{Mode: "spiffe", TrustDomain: "example.org"},
			tls: func(t *testing.T) Input { return Input{TLS: inDomain} }, want: Result{Principal: "spiffe://example.org/workload", Method: MethodMTLS}},
		{name: "mode defaults to spiffe", mtls: MTLSConfig{TrustDomain: "example.org"},
			tls: func(t *testing.T) Input { return Input{TLS: inDomain} }, want: Result{Principal: "spiffe://example.org/workload", Method: MethodMTLS}},
		{name: "trust domain given as uri", mtls: MTLSConfig{Mode: "spiffe", TrustDomain: "spiffe://example.org"},
			tls: func(t *testing.T) Input { return Input{TLS: inDomain} }, want: Result{Principal: "spiffe://example.org/workload", Method: MethodMTLS}},
		{name: "spiffe outside trust domain", mtls: MTLSConfig{Mode: "spiffe", TrustDomain: "example.org"},
			tls: func(t *testing.T) Input {
				return Input{TLS: certificate(t, "svc", "spiffe://evil.example/workload")}
			}, wantErr: "outside the trust domain"},
		{name: "trust domain suffix is not the trust domain", mtls: MTLSConfig{Mode: "spiffe", TrustDomain: "example.org"},
			tls: func(t *testing.T) Input {
				return Input{TLS: certificate(t, "svc", "spiffe://example.org.evil/workload")}
			}, wantErr: "outside the trust domain"},
		{name: "spiffe id without path", mtls: MTLSConfig{Mode: "spiffe", TrustDomain: "example.org"},
			tls: func(t *testing.T) Input { return Input{TLS: certificate(t, "svc", "spiffe://example.org")} }, wantErr: "invalid spiffe id"},
		{name: "spiffe id with dot-dot", mtls: MTLSConfig{Mode: "spiffe", TrustDomain: "example.org"},
			tls: func(t *testing.T) Input { return Input{TLS: certificate(t, "svc", "spiffe://example.org/a/../b")} }, wantErr: "invalid spiffe id"},
		{name: "two spiffe ids", mtls: MTLSConfig{Mode: "spiffe", TrustDomain: "example.org"},
			tls: func(t *testing.T) Input {
				return Input{TLS: certificate(t, "svc", "spiffe://example.org/a", "spiffe://example.org/b")}
			}, wantErr: "exactly one spiffe id"},
		{name: "no spiffe id", mtls: MTLSConfig{Mode: "spiffe", TrustDomain: "example.org"},
			tls: func(t *testing.T) Input { return Input{TLS: certificate(t, "svc", "https://example.org/x")} }, wantErr: "exactly one spiffe id"},
		{name: "subject common name", mtls: MTLSConfig{Mode: "subject"},
			tls: func(t *testing.T) Input { return Input{TLS: certificate(t, "svc-a")} }, want: Result{Principal: "svc-a", Method: MethodMTLS}},
		{name: "subject without common name", mtls: MTLSConfig{Mode: "subject"},
			tls: func(t *testing.T) Input { return Input{TLS: certificate(t, "")} }, wantErr: "no usable subject common name"},
		{name: "unverified peer certificate", mtls: MTLSConfig{Mode: "subject"},
			tls: func(t *testing.T) Input { return Input{TLS: unverified(certificate(t, "svc-a"))} }, wantErr: "not verified"},
		{name: "peer certificate verified by caddy", mtls: MTLSConfig{Mode: "subject", TrustPeerCertificates: true},
			tls: func(t *testing.T) Input { return Input{TLS: unverified(certificate(t, "svc-a"))} }, want: Result{Principal: "svc-a", Method: MethodMTLS}},
		{name: "missing cert when required", mtls: MTLSConfig{Mode: "subject", Require: true},
			tls: func(t *testing.T) Input { return Input{Header: bearer("key-alice-0123456789")} }, wantErr: "mtls client certificate required"},
		{name: "tls without cert when required", mtls: MTLSConfig{Mode: "subject", Require: true},
			tls: func(t *testing.T) Input { return Input{TLS: &tlsNoCert} }, wantErr: "mtls client certificate required"},
		{name: "required cert plus bearer gives bearer principal", mtls: MTLSConfig{Mode: "subject", Require: true},
			tls: func(t *testing.T) Input {
				return Input{Header: bearer("key-alice-0123456789"), TLS: certificate(t, "svc-a")}
			}, want: Result{Principal: "alice", Method: MethodAPIKey}},
		{name: "required cert must map even with bearer", mtls: MTLSConfig{Mode: "spiffe", TrustDomain: "example.org", Require: true},
			tls: func(t *testing.T) Input {
				return Input{Header: bearer("key-alice-0123456789"), TLS: certificate(t, "svc", "spiffe://other.org/x")}
			}, wantErr: "outside the trust domain"},
		{name: "optional cert absent falls through", mtls: MTLSConfig{Mode: "subject"},
			tls: func(t *testing.T) Input { return Input{UpstreamPrincipal: "carol"} }, want: Result{Principal: "carol", Method: MethodUpstreamAuth}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := baseConfig()
			cfg.MTLS = &tt.mtls
			a := mustNew(t, cfg)
			got, err := a.AuthenticatePrincipal(context.Background(), tt.tls(t))
			checkResult(t, got, err, tt.want, tt.wantErr)
		})
	}
}

func TestCertificatesIgnoredWithoutMTLSConfig(t *testing.T) {
	cfg := baseConfig()
	cfg.MTLS = nil
	a := mustNew(t, cfg)
	_, err := a.AuthenticatePrincipal(context.Background(), Input{TLS: certificate(t, "svc", "spiffe://example.org/x")})
	checkResult(t, Result{}, err, Result{}, "no credentials")
}

func TestAPIKeyLookupChecksEveryKey(t *testing.T) {
	cfg := Config{}
	for i := range 50 {
		cfg.APIKeys = append(cfg.APIKeys, APIKey{Key: strings.Repeat("k", i+1), Principal: "p" + strings.Repeat("x", i)})
	}
	a := mustNew(t, cfg)
	for i, k := range cfg.APIKeys {
		got, ok := a.lookupAPIKey(k.Key)
		if !ok || got != cfg.APIKeys[i].Principal {
			t.Fatalf("key %d: got %q %v", i, got, ok)
		}
	}
	if _, ok := a.lookupAPIKey(strings.Repeat("k", 51)); ok {
		t.Fatal("unknown key matched")
	}
}

func TestAnonymousAgent(t *testing.T) {
	b := []byte(body)
	tests := []struct {
		name    string
		header  http.Header
		want    Result
		wantErr string
	}{
		{name: "no credentials at all", header: http.Header{}, want: Result{Principal: "anon", Agent: "anon-agent", Method: MethodAnonymous}},
		{name: "anonymous principal with signed agent", header: func() http.Header {
			h := v2Header("s3cret", v2Req("anon", "n-anon-0123456789"))
			h.Del("Authorization")
			return h
		}(), want: Result{Principal: "anon", Agent: "agent-1", Method: MethodAnonymous}},
		{name: "anonymous principal with bad agent signature", header: func() http.Header {
			h := v2Header("wrong", v2Req("anon", "n-anon-0123456789"))
			h.Del("Authorization")
			return h
		}(), wantErr: "invalid agent signature"},
		{name: "authenticated principal gets no anonymous agent", header: bearer("key-alice-0123456789"), wantErr: "missing agent credentials"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := baseConfig()
			cfg.RequireAgent = true
			cfg.Anonymous, cfg.AnonymousAgent = "anon", "anon-agent"
			a := mustNew(t, cfg)
			got, err := a.Authenticate(context.Background(), Input{Header: tt.header, Body: b, Method: "POST", Target: "/action"})
			checkResult(t, got, err, tt.want, tt.wantErr)
		})
	}
}

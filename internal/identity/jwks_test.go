package identity

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// jwksServer serves a replaceable JWKS on loopback and counts fetches.
type jwksServer struct {
	*httptest.Server
	mu     sync.Mutex
	doc    []byte
	status int
	hits   atomic.Int32
	hit    chan struct{}
}

func newJWKSServer(t *testing.T) *jwksServer {
	s := &jwksServer{status: http.StatusOK, hit: make(chan struct{}, 100)}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		defer func() { s.hit <- struct{}{} }()
		s.mu.Lock()
		defer s.mu.Unlock()
		w.WriteHeader(s.status)
		w.Write(s.doc)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) serve(t *testing.T, status int, keys ...jose.JSONWebKey) {
	t.Helper()
	doc, err := json.Marshal(jose.JSONWebKeySet{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	s.serveRaw(status, doc)
}

func (s *jwksServer) serveRaw(status int, doc []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status, s.doc = status, doc
}

func jwk(kid string, key any, alg jose.SignatureAlgorithm) jose.JSONWebKey {
	return jose.JSONWebKey{KeyID: kid, Key: key, Algorithm: string(alg), Use: "sig"}
}

func jwksAuth(t *testing.T, srv *jwksServer, clock *testClock) *Authenticator {
	cfg := baseConfig()
	cfg.Clock = clock.Now
	cfg.JWT = &JWTConfig{Issuer: "https://idp.example", Audiences: []string{"nomos"}, JWKSURL: srv.URL + "/jwks.json"}
	return mustNew(t, cfg)
}

func authJWT(a *Authenticator, tok string) (Result, error) {
	return a.AuthenticatePrincipal(context.Background(), Input{Header: bearer(tok)})
}

func TestJWKSKeyRotation(t *testing.T) {
	srv := newJWKSServer(t)
	clock := newTestClock()
	srv.serve(t, http.StatusOK, jwk("k1", &rsaKey1().PublicKey, jose.RS256))
	a := jwksAuth(t, srv, clock)
	tok1 := signToken(t, jose.RS256, rsaKey1(), "k1", goodClaims())
	tok2 := signToken(t, jose.RS256, rsaKey2(), "k2", goodClaims())

	got, err := authJWT(a, tok1)
	checkResult(t, got, err, Result{Principal: "alice", Method: MethodJWT}, "")
	if _, err := authJWT(a, tok1); err != nil || srv.hits.Load() != 1 {
		t.Fatalf("cached key: err %v, fetches %d, want 1", err, srv.hits.Load())
	}

	srv.serve(t, http.StatusOK, jwk("k2", &rsaKey2().PublicKey, jose.RS256))
	_, err = authJWT(a, tok2)
	checkResult(t, Result{}, err, Result{}, "jwt signing key not found")
	if srv.hits.Load() != 1 {
		t.Fatalf("unknown kid refetched within the rate limit: %d fetches", srv.hits.Load())
	}

	clock.Advance(jwksMissInterval)
	got, err = authJWT(a, tok2)
	checkResult(t, got, err, Result{Principal: "alice", Method: MethodJWT}, "")
	if srv.hits.Load() != 2 {
		t.Fatalf("fetches = %d, want 2", srv.hits.Load())
	}
	_, err = authJWT(a, tok1)
	checkResult(t, Result{}, err, Result{}, "jwt signing key not found")
}

func TestJWKSKidMustMatch(t *testing.T) {
	srv := newJWKSServer(t)
	srv.serve(t, http.StatusOK, jwk("k1", &rsaKey1().PublicKey, jose.RS256), jwk("k2", &rsaKey2().PublicKey, jose.RS256))
	a := jwksAuth(t, srv, newTestClock())
	// Signed by key 1 but naming key 2: only key 2 is tried.
	_, err := authJWT(a, signToken(t, jose.RS256, rsaKey1(), "k2", goodClaims()))
	checkResult(t, Result{}, err, Result{}, "jwt signature invalid")
	// Without a kid every fitting key is tried.
	got, err := authJWT(a, signToken(t, jose.RS256, rsaKey2(), "", goodClaims()))
	checkResult(t, got, err, Result{Principal: "alice", Method: MethodJWT}, "")
}

func TestJWKSKeyAlgorithmMustMatch(t *testing.T) {
	srv := newJWKSServer(t)
	srv.serve(t, http.StatusOK, jwk("ec", &ecKey().PublicKey, jose.ES256))
	a := jwksAuth(t, srv, newTestClock())
	_, err := authJWT(a, signToken(t, jose.RS256, rsaKey1(), "ec", goodClaims()))
	checkResult(t, Result{}, err, Result{}, "jwt signing key not found")
	got, err := authJWT(a, signToken(t, jose.ES256, ecKey(), "ec", goodClaims()))
	checkResult(t, got, err, Result{Principal: "alice", Method: MethodJWT}, "")
}

func TestJWKSSkipsUnusableKeys(t *testing.T) {
	srv := newJWKSServer(t)
	good, err := json.Marshal(jwk("ed", edKey().Public(), jose.EdDSA))
	if err != nil {
		t.Fatal(err)
	}
	enc, _ := json.Marshal(jose.JSONWebKey{KeyID: "enc", Key: &rsaKey2().PublicKey, Use: "enc"})
	srv.serveRaw(http.StatusOK, []byte(`{"keys":[
		{"kty":"oct","kid":"hmac","k":"c2VjcmV0"},
		{"kty":"weird","kid":"x"},
		`+string(enc)+`,
		`+string(good)+`]}`))
	a := jwksAuth(t, srv, newTestClock())
	got, err := authJWT(a, signToken(t, jose.EdDSA, edKey(), "ed", goodClaims()))
	checkResult(t, got, err, Result{Principal: "alice", Method: MethodJWT}, "")
	_, err = authJWT(a, signToken(t, jose.RS256, rsaKey2(), "enc", goodClaims()))
	checkResult(t, Result{}, err, Result{}, "jwt signing key not found")
}

func TestJWKSFailureKeepsLastGoodKeys(t *testing.T) {
	srv := newJWKSServer(t)
	clock := newTestClock()
	srv.serve(t, http.StatusOK, jwk("k1", &rsaKey1().PublicKey, jose.RS256))
	a := jwksAuth(t, srv, clock)
	tok1 := signToken(t, jose.RS256, rsaKey1(), "k1", goodClaims())
	if _, err := authJWT(a, tok1); err != nil {
		t.Fatal(err)
	}
	srv.serveRaw(http.StatusInternalServerError, []byte("down"))
	a.jwt.jwks.refreshNow(context.Background())
	if _, lastErr := a.JWKSStatus(); lastErr == nil || !strings.Contains(lastErr.Error(), "status 500") {
		t.Fatalf("JWKSStatus error = %v, want status 500", lastErr)
	}
	if _, err := authJWT(a, tok1); err != nil {
		t.Fatalf("last good keys dropped: %v", err)
	}
}

func TestJWKSUnreachableFailsClosed(t *testing.T) {
	srv := newJWKSServer(t)
	srv.serveRaw(http.StatusOK, []byte(`{"keys":[]}`))
	a := jwksAuth(t, srv, newTestClock())
	_, err := authJWT(a, signToken(t, jose.RS256, rsaKey1(), "k1", goodClaims()))
	checkResult(t, Result{}, err, Result{}, "jwt signing key not found")
}

func TestStartFetchesAndStops(t *testing.T) {
	srv := newJWKSServer(t)
	srv.serve(t, http.StatusOK, jwk("k1", &rsaKey1().PublicKey, jose.RS256))
	a := jwksAuth(t, srv, newTestClock())
	ctx, cancel := context.WithCancel(context.Background())
	a.Start(ctx)
	a.Start(ctx) // a second call starts nothing
	select {
	case <-srv.hit:
	case <-time.After(10 * time.Second):
		t.Fatal("Start did not fetch the JWKS")
	}
	// The request waits for the in-flight fetch instead of starting another.
	got, err := authJWT(a, signToken(t, jose.RS256, rsaKey1(), "k1", goodClaims()))
	checkResult(t, got, err, Result{Principal: "alice", Method: MethodJWT}, "")
	cancel()
	if n := srv.hits.Load(); n != 1 {
		t.Fatalf("fetches = %d, want 1", n)
	}
	if ok, _ := a.JWKSStatus(); ok.IsZero() {
		t.Fatal("JWKSStatus reports no successful fetch")
	}
}

func TestJWKSConcurrentMissesFetchOnce(t *testing.T) {
	srv := newJWKSServer(t)
	srv.serve(t, http.StatusOK, jwk("k1", &rsaKey1().PublicKey, jose.RS256))
	a := jwksAuth(t, srv, newTestClock())
	tok := signToken(t, jose.RS256, rsaKey1(), "k1", goodClaims())
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			if _, err := authJWT(a, tok); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := srv.hits.Load(); n != 1 {
		t.Fatalf("fetches = %d, want 1", n)
	}
}

type panicTransport struct{}

func (panicTransport) RoundTrip(*http.Request) (*http.Response, error) { panic("boom") }

func TestRefresherRecoversPanicsAndStopsOnCancel(t *testing.T) {
	cfg := baseConfig()
	cfg.JWT = &JWTConfig{Issuer: "i", Audiences: []string{"a"}, JWKSURL: "https://idp.example/jwks", HTTPClient: &http.Client{Transport: panicTransport{}}}
	a := mustNew(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	a.jwt.jwks.run(ctx) // returns: the context is done
	if _, err := a.JWKSStatus(); err == nil || !strings.Contains(err.Error(), "panicked") {
		t.Fatalf("JWKSStatus error = %v, want a recovered panic", err)
	}
}

func TestJWKSRotationWithStaticKeysToo(t *testing.T) {
	srv := newJWKSServer(t)
	srv.serve(t, http.StatusOK, jwk("k1", &rsaKey1().PublicKey, jose.RS256))
	cfg := baseConfig()
	cfg.Clock = newTestClock().Now
	cfg.JWT = &JWTConfig{Issuer: "https://idp.example", Audiences: []string{"nomos"}, JWKSURL: srv.URL,
		StaticKeys: [][]byte{pemPublic(t, &rsaKey1().PublicKey)}}
	a := mustNew(t, cfg)
	// A static RSA key fits, but the token names a kid only the JWKS has.
	srv.serve(t, http.StatusOK, jwk("k2", &rsaKey2().PublicKey, jose.RS256))
	got, err := authJWT(a, signToken(t, jose.RS256, rsaKey2(), "k2", goodClaims()))
	checkResult(t, got, err, Result{Principal: "alice", Method: MethodJWT}, "")
}

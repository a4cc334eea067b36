package identity

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// v2Req is a request signed by agent-1 for principal, at t0, to POST /action.
func v2Req(principal, nonce string) SignedRequest {
	return SignedRequest{Method: http.MethodPost, Target: "/action", Principal: principal, Agent: "agent-1",
		Timestamp: unix(t0), Nonce: nonce, Body: []byte(body)}
}

// v2Header carries alice's API key and the v2 signature headers of r.
func v2Header(secret string, r SignedRequest) http.Header {
	h := bearer("key-alice-0123456789")
	h.Set(HeaderAgentID, r.Agent)
	h.Set(HeaderTimestamp, r.Timestamp)
	h.Set(HeaderNonce, r.Nonce)
	h.Set(HeaderAgentSignature, Sign(secret, r))
	return h
}

// sent is the request the server sees: r's headers with what the transport
// reports, which tests vary independently of what was signed.
type sent struct {
	h              http.Header
	method, target string
	body           []byte
}

func sentAs(r SignedRequest, h http.Header) sent {
	return sent{h: h, method: r.Method, target: r.Target, body: r.Body}
}

func (s sent) auth(a *Authenticator) (Result, error) {
	return a.Authenticate(context.Background(), Input{Header: s.h, Body: s.body, Method: s.method, Target: s.target})
}

// TestSignV2KnownVector pins the string to sign and the MAC: the worked
// example in docs/identity.md prints the same values, and so must any
// client.
func TestSignV2KnownVector(t *testing.T) {
	r := SignedRequest{Method: "POST", Target: "/action", Principal: "alice", Agent: "demo-agent",
		Timestamp: "1700000000", Nonce: "4f2d1c0b9a8e7d6c5b4a39281706f5e4", Body: []byte(`{"hello":"world"}`)}
	want := "nomos-agent-signature-v2\nPOST\n/action\nalice\ndemo-agent\n1700000000\n4f2d1c0b9a8e7d6c5b4a39281706f5e4\n" +
		"93a23971a914e5eacbf0a8d25154cda309c3c1c72fbb9914d47c60f3cb681588"
	if got := r.StringToSign(); got != want {
		t.Fatalf("StringToSign =\n%s\nwant\n%s", got, want)
	}
	if got := Sign("demo-secret", r); got != "v2="+docV2MAC {
		t.Fatalf("Sign = %s", got)
	}
}

func TestAgentV2(t *testing.T) {
	const nonce = "nonce-0123456789abcdef"
	alice := v2Req("alice", nonce)
	ok := func() sent { return sentAs(alice, v2Header("s3cret", alice)) }
	with := func(f func(*sent)) func() sent {
		return func() sent { s := ok(); f(&s); return s }
	}
	resign := func(f func(*SignedRequest)) func() sent {
		return func() sent { r := alice; f(&r); return sentAs(alice, v2Header("s3cret", r)) }
	}
	tests := []struct {
		name    string
		req     func() sent
		wantErr string
	}{
		{"valid", ok, ""},
		{"signed for another principal", resign(func(r *SignedRequest) { r.Principal = "bob" }), "invalid agent signature"},
		{"signed for another path", resign(func(r *SignedRequest) { r.Target = "/explain" }), "invalid agent signature"},
		{"signed for another method", resign(func(r *SignedRequest) { r.Method = "PUT" }), "invalid agent signature"},
		{"path sent in another case", with(func(s *sent) { s.target = "/Action" }), "invalid agent signature"},
		{"path sent percent-encoded", with(func(s *sent) { s.target = "/%61ction" }), "invalid agent signature"},
		{"path sent with a query", with(func(s *sent) { s.target = "/action?x=1" }), "invalid agent signature"},
		{"method changed", with(func(s *sent) { s.method = "PUT" }), "invalid agent signature"},
		{"body changed", with(func(s *sent) { s.body = append([]byte(body), ' ') }), "invalid agent signature"},
		{"nonce changed", with(func(s *sent) { s.h.Set(HeaderNonce, "nonce-0123456789abcdeX") }), "invalid agent signature"},
		{"timestamp changed", with(func(s *sent) { s.h.Set(HeaderTimestamp, unix(t0.Add(time.Second))) }), "invalid agent signature"},
		{"agent id changed", with(func(s *sent) { s.h.Set(HeaderAgentID, "agent-2") }), "invalid agent signature"},
		{"wrong secret", func() sent { return sentAs(alice, v2Header("other", alice)) }, "invalid agent signature"},
		{"missing nonce", with(func(s *sent) { s.h.Del(HeaderNonce) }), "missing nonce"},
		{"short nonce", resign(func(r *SignedRequest) { r.Nonce = "0123456789abcde" }), "malformed nonce"},
		{"long nonce", resign(func(r *SignedRequest) { r.Nonce = strings.Repeat("a", 65) }), "malformed nonce"},
		{"nonce with a newline", resign(func(r *SignedRequest) { r.Nonce = "0123456789abcdef\nx" }), "malformed nonce"},
		{"nonce with a dot", resign(func(r *SignedRequest) { r.Nonce = "0123456789.abcdef" }), "malformed nonce"},
		{"duplicate nonce header", with(func(s *sent) { s.h.Add(HeaderNonce, nonce) }), "duplicate x-nomos-nonce header"},
		{"missing timestamp", with(func(s *sent) { s.h.Del(HeaderTimestamp) }), "missing timestamp"},
		{"malformed timestamp", resign(func(r *SignedRequest) { r.Timestamp = "+1800000000" }), "malformed timestamp"},
		{"stale timestamp", resign(func(r *SignedRequest) { r.Timestamp = unix(t0.Add(-5*time.Minute - time.Second)) }), "outside the allowed clock skew"},
		{"future timestamp", resign(func(r *SignedRequest) { r.Timestamp = unix(t0.Add(5*time.Minute + time.Second)) }), "outside the allowed clock skew"},
		{"timestamp at the edge", resign(func(r *SignedRequest) { r.Timestamp = unix(t0.Add(-5 * time.Minute)) }), ""},
		{"upper-case hex", with(func(s *sent) {
			s.h.Set(HeaderAgentSignature, "v2="+strings.ToUpper(strings.TrimPrefix(s.h.Get(HeaderAgentSignature), "v2=")))
		}), "malformed agent signature"},
		{"short mac", with(func(s *sent) { s.h.Set(HeaderAgentSignature, "v2=abcd") }), "malformed agent signature"},
		{"unknown version", with(func(s *sent) { s.h.Set(HeaderAgentSignature, "v3="+strings.Repeat("0", 64)) }), "unsupported agent signature version"},
		{"legacy body signature", with(func(s *sent) { s.h.Set(HeaderAgentSignature, SignLegacyBody("s3cret", unix(t0), []byte(body))) }), "legacy body signature not enabled"},
		{"no target from the transport", with(func(s *sent) { s.target = "" }), "request method or target unavailable"},
		{"target with a newline", with(func(s *sent) { s.target = "/action\nalice" }), "request method or target unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := mustNew(t, baseConfig())
			got, err := tt.req().auth(a)
			checkResult(t, got, err, Result{Principal: "alice", Agent: "agent-1", Method: MethodAPIKey}, tt.wantErr)
		})
	}
}

// TestAgentV2Replay: issue 8 #9. Replay is keyed on the nonce, per agent.
func TestAgentV2Replay(t *testing.T) {
	a := mustNew(t, baseConfig())
	first := v2Req("alice", "nonce-aaaaaaaaaaaaaaaa")
	if _, err := sentAs(first, v2Header("s3cret", first)).auth(a); err != nil {
		t.Fatalf("first: %v", err)
	}
	// The same request again: refused.
	if _, err := sentAs(first, v2Header("s3cret", first)).auth(a); err == nil || !strings.Contains(err.Error(), "replayed signature") {
		t.Fatalf("replay: %v", err)
	}
	// An identical request in the same second with a new nonce: accepted.
	second := v2Req("alice", "nonce-bbbbbbbbbbbbbbbb")
	if _, err := sentAs(second, v2Header("s3cret", second)).auth(a); err != nil {
		t.Fatalf("same second, new nonce: %v", err)
	}
	// The nonce reused on another endpoint, properly signed: refused.
	other := first
	other.Target = "/explain"
	if _, err := sentAs(other, v2Header("s3cret", other)).auth(a); err == nil || !strings.Contains(err.Error(), "replayed signature") {
		t.Fatalf("nonce reused across endpoints: %v", err)
	}
}

// TestAgentV2CrossPrincipal: issue 8 #9. bob sends alice's intercepted
// signed request with his own key: refused, and alice's request still
// passes afterwards (a failed request does not burn her nonce).
func TestAgentV2CrossPrincipal(t *testing.T) {
	a := mustNew(t, baseConfig())
	alice := v2Req("alice", "nonce-cccccccccccccccc")
	stolen := v2Header("s3cret", alice)
	stolen.Set("Authorization", "Bearer key-bob-0123456789")
	if _, err := sentAs(alice, stolen).auth(a); err == nil || !strings.Contains(err.Error(), "invalid agent signature") {
		t.Fatalf("bob with alice's signature: %v", err)
	}
	got, err := sentAs(alice, v2Header("s3cret", alice)).auth(a)
	checkResult(t, got, err, Result{Principal: "alice", Agent: "agent-1", Method: MethodAPIKey}, "")
}

func TestAgentV2ReplayUnderConcurrency(t *testing.T) {
	a := mustNew(t, baseConfig())
	r := v2Req("alice", "nonce-dddddddddddddddd")
	h := v2Header("s3cret", r)
	var ok atomic.Int32
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			if _, err := sentAs(r, h.Clone()).auth(a); err == nil {
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 1 {
		t.Fatalf("%d concurrent uses of one nonce succeeded, want 1", ok.Load())
	}
}

// docV2MAC is the MAC of the worked example in docs/identity.md, computed
// there with openssl.
const docV2MAC = "b97b0bdfcfca4ad2125912d6a45c8e433115a6deba71e91be3b3b755d7363546"

// failingStore is a shared replay store that cannot be reached.
type failingStore struct{}

func (failingStore) Admit(context.Context, string, time.Time, time.Time) error {
	return errors.New("connection refused")
}

// TestReplayStoreFailsClosed: a replay store that cannot answer refuses
// the request, with a reason that does not leak the store's error.
func TestReplayStoreFailsClosed(t *testing.T) {
	cfg := baseConfig()
	cfg.ReplayStore = failingStore{}
	a := mustNew(t, cfg)
	r := v2Req("alice", "nonce-eeeeeeeeeeeeeeee")
	_, err := sentAs(r, v2Header("s3cret", r)).auth(a)
	checkResult(t, Result{}, err, Result{}, "agent authentication failed: replay check unavailable")
	if strings.Contains(err.Error(), "refused") {
		t.Fatalf("store error leaked: %v", err)
	}
}

package identity

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const body = `{"action_type":"fs.read","resource":"file://workspace/README.md"}`

// legacyConfig accepts legacy body signatures, which the tests below cover.
func legacyConfig() Config {
	cfg := baseConfig()
	cfg.LegacyBodySignatures = true
	return cfg
}

func signedHeader(secret, ts string, b []byte) http.Header {
	h := bearer("key-alice-0123456789")
	h.Set(HeaderAgentID, "agent-1")
	h.Set(HeaderAgentSignature, SignLegacyBody(secret, ts, b))
	if ts != "" {
		h.Set(HeaderTimestamp, ts)
	}
	return h
}

func unix(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }

func TestSignLegacyKnownVector(t *testing.T) {
	// printf '%s' 'hello' | openssl dgst -sha256 -hmac 'key'
	if got := SignLegacyBody("key", "", []byte("hello")); got != "9307b3b915efb5171ff14d8cb55fbcc798c6c0ef1456d66ded1a6aa723a58b7b" {
		t.Fatalf("Sign = %s", got)
	}
	// printf '%s.%s' 1700000000 'hello' | openssl dgst -sha256 -hmac 'key'
	if got := SignLegacyBody("key", "1700000000", []byte("hello")); got != "4d583a269f4f276a3fa80ff31b5a01879a848096983222a17893d198418939aa" {
		t.Fatalf("timestamped Sign = %s", got)
	}
}

func TestAgentLegacy(t *testing.T) {
	b := []byte(body)
	now := unix(t0)
	tests := []struct {
		name      string
		requireAg bool
		requireTS bool
		header    func() http.Header
		inBody    []byte
		trusted   bool
		wantAgent string
		wantErr   string
	}{
		{name: "signed body", header: func() http.Header { return signedHeader("s3cret", "", b) }, wantAgent: "agent-1"},
		{name: "signed with timestamp", header: func() http.Header { return signedHeader("s3cret", now, b) }, wantAgent: "agent-1"},
		{name: "upper-case hex accepted", header: func() http.Header {
			h := signedHeader("s3cret", now, b)
			h.Set(HeaderAgentSignature, strings.ToUpper(h.Get(HeaderAgentSignature)))
			return h
		}, wantAgent: "agent-1"},
		{name: "wrong key", header: func() http.Header { return signedHeader("other", "", b) }, wantErr: "agent authentication failed: invalid agent signature"},
		{name: "tampered body", inBody: []byte(body + " "), header: func() http.Header { return signedHeader("s3cret", "", b) }, wantErr: "invalid agent signature"},
		{name: "timestamp not covered", header: func() http.Header {
			h := signedHeader("s3cret", "", b)
			h.Set(HeaderTimestamp, now)
			return h
		}, wantErr: "invalid agent signature"},
		{name: "timestamp changed after signing", header: func() http.Header {
			h := signedHeader("s3cret", now, b)
			h.Set(HeaderTimestamp, unix(t0.Add(time.Second)))
			return h
		}, wantErr: "invalid agent signature"},
		{name: "unknown agent", header: func() http.Header {
			h := signedHeader("s3cret", "", b)
			h.Set(HeaderAgentID, "agent-2")
			return h
		}, wantErr: "invalid agent signature"},
		{name: "short signature", header: func() http.Header {
			h := signedHeader("s3cret", "", b)
			h.Set(HeaderAgentSignature, "abcd")
			return h
		}, wantErr: "malformed agent signature"},
		{name: "non-hex signature", header: func() http.Header {
			h := signedHeader("s3cret", "", b)
			h.Set(HeaderAgentSignature, strings.Repeat("zz", 32))
			return h
		}, wantErr: "malformed agent signature"},
		{name: "id without signature", header: func() http.Header {
			return hdr("Authorization", "Bearer key-alice-0123456789", HeaderAgentID, "agent-1")
		}, wantErr: "missing agent signature"},
		{name: "signature without id", header: func() http.Header {
			return hdr("Authorization", "Bearer key-alice-0123456789", HeaderAgentSignature, SignLegacyBody("s3cret", "", b))
		}, wantErr: "missing agent id"},
		{name: "duplicate agent id", header: func() http.Header {
			h := signedHeader("s3cret", "", b)
			h.Add(HeaderAgentID, "agent-1")
			return h
		}, wantErr: "duplicate x-nomos-agent-id header"},
		{name: "skew too far in the past", header: func() http.Header { return signedHeader("s3cret", unix(t0.Add(-5*time.Minute-time.Second)), b) }, wantErr: "outside the allowed clock skew"},
		{name: "skew too far in the future", header: func() http.Header { return signedHeader("s3cret", unix(t0.Add(5*time.Minute+time.Second)), b) }, wantErr: "outside the allowed clock skew"},
		{name: "skew at the edge", header: func() http.Header { return signedHeader("s3cret", unix(t0.Add(-5*time.Minute)), b) }, wantAgent: "agent-1"},
		{name: "malformed timestamp", header: func() http.Header { return signedHeader("s3cret", "+1800000000", b) }, wantErr: "malformed timestamp"},
		{name: "timestamp in milliseconds", header: func() http.Header { return signedHeader("s3cret", "1800000000000", b) }, wantErr: "malformed timestamp"},
		{name: "timestamp required", requireTS: true, header: func() http.Header { return signedHeader("s3cret", "", b) }, wantErr: "missing timestamp"},
		{name: "timestamp required and present", requireTS: true, header: func() http.Header { return signedHeader("s3cret", now, b) }, wantAgent: "agent-1"},
		{name: "agent optional and absent", header: func() http.Header { return bearer("key-alice-0123456789") }, wantAgent: ""},
		{name: "agent required and absent", requireAg: true, header: func() http.Header { return bearer("key-alice-0123456789") }, wantErr: "agent authentication failed: missing agent credentials"},
		{name: "trusted agent header from trusted proxy", requireAg: true, trusted: true, header: func() http.Header {
			return hdr("Authorization", "Bearer key-alice-0123456789", "X-Proxy-Agent", "proxy-agent")
		}, wantAgent: "proxy-agent"},
		{name: "trusted agent header from untrusted peer ignored", requireAg: true, header: func() http.Header {
			return hdr("Authorization", "Bearer key-alice-0123456789", "X-Proxy-Agent", "proxy-agent")
		}, wantErr: "missing agent credentials"},
		{name: "trusted agent header optional from untrusted peer", header: func() http.Header {
			return hdr("Authorization", "Bearer key-alice-0123456789", "X-Proxy-Agent", "proxy-agent")
		}, wantAgent: ""},
		{name: "signed agent beats trusted header", trusted: true, header: func() http.Header {
			h := signedHeader("s3cret", "", b)
			h.Set("X-Proxy-Agent", "proxy-agent")
			return h
		}, wantAgent: "agent-1"},
		{name: "invalid signed agent never falls to trusted header", trusted: true, header: func() http.Header {
			h := signedHeader("wrong", "", b)
			h.Set("X-Proxy-Agent", "proxy-agent")
			return h
		}, wantErr: "invalid agent signature"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := legacyConfig()
			cfg.RequireAgent = tt.requireAg
			cfg.RequireTimestamp = tt.requireTS
			a := mustNew(t, cfg)
			in := Input{Header: tt.header(), Body: b, FromTrustedProxy: tt.trusted}
			if tt.inBody != nil {
				in.Body = tt.inBody
			}
			got, err := a.Authenticate(context.Background(), in)
			checkResult(t, got, err, Result{Principal: "alice", Agent: tt.wantAgent, Method: MethodAPIKey}, tt.wantErr)
		})
	}
}

func TestAuthenticatePrincipalIgnoresAgent(t *testing.T) {
	cfg := legacyConfig()
	cfg.RequireAgent = true
	a := mustNew(t, cfg)
	h := signedHeader("wrong", "", []byte(body))
	got, err := a.AuthenticatePrincipal(context.Background(), Input{Header: h, Body: []byte(body)})
	checkResult(t, got, err, Result{Principal: "alice", Method: MethodAPIKey}, "")
}

func TestPrincipalFailureComesFirst(t *testing.T) {
	a := mustNew(t, legacyConfig())
	h := signedHeader("s3cret", unix(t0), []byte(body))
	h.Set("Authorization", "Bearer nope")
	_, err := a.Authenticate(context.Background(), Input{Header: h, Body: []byte(body)})
	checkResult(t, Result{}, err, Result{}, "principal authentication failed")
	// The failed request must not have used up the signature.
	h.Set("Authorization", "Bearer key-alice-0123456789")
	got, err := a.Authenticate(context.Background(), Input{Header: h, Body: []byte(body)})
	checkResult(t, got, err, Result{Principal: "alice", Agent: "agent-1", Method: MethodAPIKey}, "")
}

func TestReplay(t *testing.T) {
	clock := newTestClock()
	cfg := legacyConfig()
	cfg.Clock = clock.Now
	cfg.MaxClockSkew = time.Minute
	a := mustNew(t, cfg)
	b := []byte(body)
	h := signedHeader("s3cret", unix(t0), b)
	auth := func(h http.Header) error {
		_, err := a.Authenticate(context.Background(), Input{Header: h, Body: b})
		return err
	}
	if err := auth(h); err != nil {
		t.Fatalf("first use: %v", err)
	}
	if err := auth(h); err == nil || !strings.Contains(err.Error(), "replayed signature") {
		t.Fatalf("replay: got %v", err)
	}
	upper := h.Clone()
	upper.Set(HeaderAgentSignature, strings.ToUpper(h.Get(HeaderAgentSignature)))
	if err := auth(upper); err == nil || !strings.Contains(err.Error(), "replayed signature") {
		t.Fatalf("replay in upper-case hex: got %v", err)
	}
	// A fresh timestamp is a fresh signature.
	if err := auth(signedHeader("s3cret", unix(t0.Add(time.Second)), b)); err != nil {
		t.Fatalf("new timestamp: %v", err)
	}
	// Once the window has passed the old signature fails on skew, not replay.
	clock.Advance(time.Minute + time.Second)
	if err := auth(h); err == nil || !strings.Contains(err.Error(), "clock skew") {
		t.Fatalf("after window: got %v", err)
	}
}

func TestUntimestampedSignaturesAreNotCached(t *testing.T) {
	a := mustNew(t, legacyConfig())
	b := []byte(body)
	for range 2 {
		if _, err := a.Authenticate(context.Background(), Input{Header: signedHeader("s3cret", "", b), Body: b}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestReplayUnderConcurrency(t *testing.T) {
	a := mustNew(t, legacyConfig())
	b := []byte(body)
	h := signedHeader("s3cret", unix(t0), b)
	var ok atomic.Int32
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			if _, err := a.Authenticate(context.Background(), Input{Header: h.Clone(), Body: b}); err == nil {
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 1 {
		t.Fatalf("%d concurrent uses of one signature succeeded, want 1", ok.Load())
	}
}

func TestReplayCacheExpiry(t *testing.T) {
	r, err := newReplayCache(2, 60)
	if err != nil {
		t.Fatal(err)
	}
	now := t0.Unix()
	if err := r.admit("a", now, now); err != nil {
		t.Fatalf("fresh key: %v", err)
	}
	if err := r.admit("a", now, now+60); err == nil || !strings.Contains(err.Error(), "replayed") {
		t.Fatalf("key not remembered within the window: %v", err)
	}
	if err := r.admit("a", now+61, now+61); err != nil {
		t.Fatalf("expired key still remembered: %v", err)
	}
	if r.cache.Len() != 1 {
		t.Fatalf("cache holds %d entries", r.cache.Len())
	}
}

// TestReplayCacheFullFailsClosed: when the bound forces out an entry that
// could still be replayed, signatures as old as it are refused instead of
// being accepted a second time.
func TestReplayCacheFullFailsClosed(t *testing.T) {
	r, err := newReplayCache(2, 60)
	if err != nil {
		t.Fatal(err)
	}
	now := t0.Unix()
	for _, k := range []string{"a", "b", "c"} { // "a" is evicted, unexpired
		if err := r.admit(k, now, now); err != nil {
			t.Fatalf("%s: %v", k, err)
		}
	}
	if r.cache.Len() != 2 {
		t.Fatalf("cache holds %d entries, bound is 2", r.cache.Len())
	}
	if err := r.admit("a", now, now+1); err == nil || !strings.Contains(err.Error(), "replay cache full") {
		t.Fatalf("evicted key replayed: %v", err)
	}
	if err := r.admit("d", now+1, now+1); err != nil {
		t.Fatalf("a newer timestamp must pass: %v", err)
	}
	// Evicting expired entries does not raise the floor.
	r2, _ := newReplayCache(1, 60)
	_ = r2.admit("old", now-100, now-100)
	if err := r2.admit("new", now-50, now); err != nil {
		t.Fatal(err)
	}
	if err := r2.admit("newer", now-40, now); err != nil { // evicts "new", unexpired
		t.Fatal(err)
	}
	if err := r2.admit("other", now-50, now); err == nil {
		t.Fatal("floor not raised by an unexpired eviction")
	}
}

// TestReplayFloorIsPerAgent: one agent filling the cache with signatures
// timestamped up to the skew ahead raises only its own floor; the other
// agents' current signatures still pass.
func TestReplayFloorIsPerAgent(t *testing.T) {
	r, err := newReplayCache(2, 300)
	if err != nil {
		t.Fatal(err)
	}
	now := t0.Unix()
	for i := range 5 { // evicts unexpired, future-dated entries of mallory's
		_ = r.admit(fmt.Sprintf("n\x00mallory\x00%d", i), now+300-int64(i), now)
	}
	if _, raised := r.floors["mallory"]; !raised {
		t.Fatal("the flood evicted nothing")
	}
	if err := r.admit("n\x00alice\x00x", now, now+240); err != nil {
		t.Fatalf("another agent refused by mallory's flood: %v", err)
	}
	if err := r.admit("n\x00mallory\x00y", now+200, now+240); err == nil || !strings.Contains(err.Error(), "replay cache full") {
		t.Fatalf("the flooding agent's own window did not shrink: %v", err)
	}
}

// TestReplayCacheRefusesSignaturesFromBeforeItsStart: a process that just
// started has forgotten every nonce, so a signature timestamped before the
// cache was made could be a replay and is refused.
func TestReplayCacheRefusesSignaturesFromBeforeItsStart(t *testing.T) {
	r, err := NewReplayCache(10, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := r.Admit(context.Background(), "n\x00alice\x00old", now.Add(-10*time.Second), now); !errors.Is(err, ErrReplayBeforeStart) {
		t.Fatalf("a signature from before the start: %v", err)
	}
	if err := r.Admit(context.Background(), "n\x00alice\x00new", now.Add(time.Second), now); err != nil {
		t.Fatal(err)
	}
}

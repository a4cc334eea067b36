package caddymodule

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-nomos/nomos/internal/identity"
)

// stripped makes req look as it does behind handle_path /nomos/*: Caddy
// keeps what the client sent in the original request, and r.URL has lost
// the prefix.
func stripped(req *http.Request, sentTarget string) *http.Request {
	u, _ := url.Parse(sentTarget)
	orig := http.Request{Method: req.Method, RequestURI: sentTarget, URL: u}
	return req.WithContext(context.WithValue(req.Context(), caddyhttp.OriginalRequestCtxKey, orig))
}

// TestAgentSignatureCoversTheClientsPath: issue 8 #9. The signature covers
// the path the client sent, before handle_path stripped it.
func TestAgentSignatureCoversTheClientsPath(t *testing.T) {
	h := newTestHandler(t, newTestApp(t, nil), nil)
	cases := []struct {
		name         string
		signedTarget string
		want         int
	}{
		{"signed for the path the client sent", "/nomos/action", 200},
		{"signed for the stripped path", "/action", 401},
		{"signed for another prefix", "/other/action", 401},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := signedFor(http.MethodPost, "/action", tc.signedTarget, orderBody)
			rec, _ := serve(t, h, stripped(req, "/nomos/action"), nil)
			if rec.Code != tc.want {
				t.Fatalf("%d %s", rec.Code, rec.Body)
			}
		})
	}
}

// TestLegacyBodySignatures: refused unless the identity block enables them.
func TestLegacyBodySignatures(t *testing.T) {
	legacy := func() *http.Request {
		req := signedFor(http.MethodPost, "/action", "/action", orderBody)
		req.Header.Del(identity.HeaderTimestamp)
		req.Header.Del(identity.HeaderNonce)
		req.Header.Set(identity.HeaderAgentSignature, identity.SignLegacyBody("agent-secret-value", "", []byte(orderBody)))
		return req
	}
	off := newTestHandler(t, newTestApp(t, nil), nil)
	rec, _ := serve(t, off, legacy(), nil)
	if rec.Code != 401 || !strings.Contains(rec.Body.String(), "auth_error: agent authentication failed: legacy body signature not enabled") {
		t.Fatalf("legacy signature without the option: %d %s", rec.Code, rec.Body)
	}
	on := newTestHandler(t, newTestApp(t, func(a *App) { a.Identity.LegacyBodySignatures = true }), nil)
	if rec, _ := serve(t, on, legacy(), nil); rec.Code != 200 {
		t.Fatalf("legacy signature with the option: %d %s", rec.Code, rec.Body)
	}
}

// TestIdentityPoolKeyFollowsConfig: the pooled authenticator is keyed by
// its config, so a reload that revokes a key or changes an identity option
// builds a new one. (The config once failed to marshal, which gave every
// identity config the same key.)
func TestIdentityPoolKeyFollowsConfig(t *testing.T) {
	base := identity.Config{APIKeys: []identity.APIKey{{Key: "k1", Principal: "alice"}}}
	legacy := base
	legacy.LegacyBodySignatures = true
	revoked := identity.Config{}
	keys := map[string]bool{}
	for _, c := range []identity.Config{base, legacy, revoked} {
		keys[configKey("identity", c)] = true
	}
	if len(keys) != 3 {
		t.Fatalf("%d distinct keys for 3 configs", len(keys))
	}
	if configKey("identity", base) != configKey("identity", base) {
		t.Fatal("an unchanged config must keep its key")
	}
}

// TestReloadKeepsUsedNonces: a reload that changes the identity config
// (here, a new API key) rebuilds the authenticator but not the replay
// cache, so a request captured before the reload is still a replay after.
func TestReloadKeepsUsedNonces(t *testing.T) {
	req := signed(orderBody)
	replay := req.Clone(req.Context())
	replay.Body = io.NopCloser(strings.NewReader(orderBody))
	before := newTestHandler(t, newTestApp(t, nil), nil)
	if rec, _ := serve(t, before, req, nil); rec.Code != 200 {
		t.Fatalf("first use: %d %s", rec.Code, rec.Body)
	}
	after := newTestHandler(t, newTestApp(t, func(a *App) {
		a.Identity.APIKeys = append(a.Identity.APIKeys, APIKeyConfig{Key: "bob-key-value", Principal: "bob"})
	}), nil)
	if before.app.auth == after.app.auth {
		t.Fatal("the changed identity config did not build a new authenticator")
	}
	rec, _ := serve(t, after, replay, nil)
	if rec.Code != 401 || !strings.Contains(rec.Body.String(), "replayed signature") {
		t.Fatalf("replay after reload: %d %s", rec.Code, rec.Body)
	}
}

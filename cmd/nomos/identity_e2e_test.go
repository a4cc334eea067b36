package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddy-nomos/nomos/internal/identity"
)

// identityCaddyfile serves nomos_api twice: at the root, and behind
// handle_path /nomos/*, which strips the prefix before Nomos sees the path.
const identityCaddyfile = `{
	admin 127.0.0.1:{ADMIN}
	nomos {
		environment dev
		policy default {
			bundle shop.yaml
		}
		identity {
			api_key {env.T_ALICE_KEY} alice
			api_key {env.T_BOB_KEY} bob
			agent_secret shop-agent {env.T_AGENT_SECRET}
			{LEGACY}
			jwt {
				issuer https://idp.test
				audience nomos
				key jwt.pub.pem
			}
		}
		audit {
			sink sqlite
		}
		approvals {
			approvers reviewer
		}
	}
}

http://127.0.0.1:{PORT} {
	handle_path /nomos/* {
		nomos_api
	}
	handle {
		nomos_api
	}
}
`

// identityServer starts the gateway; legacy adds legacy_body_signatures.
// It returns the server and the JWT signing key its config trusts.
func identityServer(t *testing.T, legacy bool) (*server, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(pub)
	opt := ""
	if legacy {
		opt = "legacy_body_signatures"
	}
	cf := strings.Replace(identityCaddyfile, "{LEGACY}", opt, 1)
	s := startServer(t, cf, map[string]string{"shop.yaml": shopBundle,
		"jwt.pub.pem": string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))},
		"T_ALICE_KEY=alice-key", "T_BOB_KEY=bob-key", "T_AGENT_SECRET=agent-secret")
	return s, priv
}

// signedReq builds a request to send to path, carrying credential, with a
// v2 signature over sr (Method, Target, Principal and Body default to the
// request's own and alice's).
func signedReq(s *server, method, path, credential string, sr identity.SignedRequest) *http.Request {
	req, _ := http.NewRequest(method, s.base+path, bytes.NewReader(sr.Body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+credential)
	if sr.Method == "" {
		sr.Method = method
	}
	if sr.Target == "" {
		sr.Target = path
	}
	if sr.Principal == "" {
		sr.Principal = "alice"
	}
	if sr.Timestamp == "" {
		sr.Timestamp = fmt.Sprint(time.Now().Unix())
	}
	if sr.Nonce == "" {
		sr.Nonce = newNonce()
	}
	sr.Agent = "shop-agent"
	req.Header.Set("X-Nomos-Agent-Id", sr.Agent)
	req.Header.Set("X-Nomos-Timestamp", sr.Timestamp)
	req.Header.Set("X-Nomos-Nonce", sr.Nonce)
	req.Header.Set("X-Nomos-Agent-Signature", identity.Sign("agent-secret", sr))
	return req
}

func orderBody(id string) []byte {
	b, _ := json.Marshal(envelope(id, "orders.read", "shop://orders/1", nil))
	return b
}

// expect sends req and checks the status and, if given, the reason.
func expect(t *testing.T, name string, req *http.Request, status int, reason string) map[string]any {
	t.Helper()
	code, out := do(t, req)
	if code != status || !strings.Contains(fmt.Sprint(out["reason"]), reason) {
		t.Errorf("%s: got %d %v, want %d %q", name, code, out, status, reason)
	}
	return out
}

// TestAgentSignatureV2Attacks: issue 8 #9, through the built binary. The
// signature is bound to principal, endpoint, method and the path the client
// sent; replay is keyed on the nonce.
func TestAgentSignatureV2Attacks(t *testing.T) {
	s, _ := identityServer(t, false)
	const bad, replayed, skew = "invalid agent signature", "replayed signature", "outside the allowed clock skew"

	// bob sends alice's intercepted request first: refused, and alice's
	// own request still passes.
	alice := signedReq(s, "POST", "/action", "alice-key", identity.SignedRequest{Body: orderBody("x-1")})
	stolen, _ := http.NewRequest("POST", s.base+"/action", bytes.NewReader(orderBody("x-1")))
	stolen.Header = alice.Header.Clone()
	stolen.Header.Set("Authorization", "Bearer bob-key")
	expect(t, "bob replays alice's request", stolen, 401, bad)
	expect(t, "alice after bob's attempt", alice, 200, "allow_by_rule")

	// A body signed for /explain is refused by /action.
	explain := signedReq(s, "POST", "/action", "alice-key", identity.SignedRequest{Target: "/explain", Body: orderBody("x-2")})
	expect(t, "explain signature on /action", explain, 401, bad)
	// Signed for another method.
	expect(t, "signed as PUT, sent as POST", signedReq(s, "POST", "/action", "alice-key",
		identity.SignedRequest{Method: "PUT", Body: orderBody("x-3")}), 401, bad)

	// Stale and future timestamps.
	expect(t, "stale timestamp", signedReq(s, "POST", "/action", "alice-key",
		identity.SignedRequest{Timestamp: fmt.Sprint(time.Now().Add(-time.Hour).Unix()), Body: orderBody("x-4")}), 401, skew)
	expect(t, "future timestamp", signedReq(s, "POST", "/action", "alice-key",
		identity.SignedRequest{Timestamp: fmt.Sprint(time.Now().Add(time.Hour).Unix()), Body: orderBody("x-5")}), 401, skew)

	// Two identical requests in one second with distinct nonces both pass;
	// the same nonce twice fails, also on another endpoint.
	ts := fmt.Sprint(time.Now().Unix())
	for i := range 2 {
		expect(t, fmt.Sprintf("identical request %d", i), signedReq(s, "POST", "/action", "alice-key",
			identity.SignedRequest{Timestamp: ts, Body: orderBody("x-6")}), 200, "allow_by_rule")
	}
	nonce := newNonce()
	expect(t, "nonce first use", signedReq(s, "POST", "/action", "alice-key", identity.SignedRequest{Nonce: nonce, Body: orderBody("x-7")}), 200, "")
	expect(t, "nonce second use", signedReq(s, "POST", "/action", "alice-key", identity.SignedRequest{Nonce: nonce, Body: orderBody("x-7")}), 401, replayed)
	expect(t, "nonce reused on /explain", signedReq(s, "POST", "/explain", "alice-key", identity.SignedRequest{Nonce: nonce, Body: orderBody("x-7")}), 401, replayed)
	expect(t, "malformed nonce", signedReq(s, "POST", "/action", "alice-key", identity.SignedRequest{Nonce: "short", Body: orderBody("x-8")}), 401, "malformed nonce")

	// Behind handle_path the client's path is what counts.
	expect(t, "handle_path, signed for the client's path", signedReq(s, "POST", "/nomos/action", "alice-key",
		identity.SignedRequest{Body: orderBody("x-9")}), 200, "allow_by_rule")
	expect(t, "handle_path, signed for the stripped path", signedReq(s, "POST", "/nomos/action", "alice-key",
		identity.SignedRequest{Target: "/action", Body: orderBody("x-10")}), 401, bad)

	// Case and encoding variants of the path reach the same handler (Caddy
	// matches paths case-insensitively and decoded), but the signature does
	// not carry over to them.
	for _, sent := range []string{"/NOMOS/action", "/nomos/%61ction", "/%6Eomos/action", "/nomos/action?x=1"} {
		req := signedReq(s, "POST", sent, "alice-key", identity.SignedRequest{Target: "/nomos/action", Body: orderBody("x-11")})
		expect(t, "signed for /nomos/action, sent to "+sent, req, 401, bad)
	}

	// The legacy body-only signature is refused by default.
	legacy, _ := http.NewRequest("POST", s.base+"/action", bytes.NewReader(orderBody("x-12")))
	legacy.Header.Set("Authorization", "Bearer alice-key")
	legacy.Header.Set("X-Nomos-Agent-Id", "shop-agent")
	legacy.Header.Set("X-Nomos-Agent-Signature", identity.SignLegacyBody("agent-secret", "", orderBody("x-12")))
	expect(t, "legacy body signature", legacy, 401, "legacy body signature not enabled")
}

// TestLegacyBodySignaturesOptIn: with legacy_body_signatures the old form
// is accepted, and v2 still is.
func TestLegacyBodySignaturesOptIn(t *testing.T) {
	s, _ := identityServer(t, true)
	legacy, _ := http.NewRequest("POST", s.base+"/action", bytes.NewReader(orderBody("l-1")))
	legacy.Header.Set("Authorization", "Bearer alice-key")
	legacy.Header.Set("X-Nomos-Agent-Id", "shop-agent")
	legacy.Header.Set("X-Nomos-Agent-Signature", identity.SignLegacyBody("agent-secret", "", orderBody("l-1")))
	expect(t, "legacy body signature, enabled", legacy, 200, "allow_by_rule")
	expect(t, "v2 with legacy enabled", signedReq(s, "POST", "/action", "alice-key", identity.SignedRequest{Body: orderBody("l-2")}), 200, "allow_by_rule")
}

// TestCaseVariantParamsRefused: issue 8 #3, through the built binary.
// {"amount":50,"Amount":5000} and its variants are refused with 400 at every
// level of params, for every action type, on every action endpoint; nothing
// reaches policy, and /action audits each refusal as a validation DENY.
func TestCaseVariantParamsRefused(t *testing.T) {
	s, _ := identityServer(t, false)
	params := []string{
		`{"amount":50,"Amount":5000}`,
		`{"amount":50,"\u0041mount":5000}`,
		`{"AMOUNT":5000,"amount":50}`,
		`{"refund":{"amount":50,"Amount":5000}}`,
		`{"lines":[{"sku":"a"},{"amount":50,"aMoUnt":5000}]}`,
		`{"kind":"a","\u212aind":"b"}`,
	}
	types := [][2]string{{"payments.refund", "payments://shop/orders/1"}, {"orders.read", "shop://orders/1"}, {"fs.read", "file://workspace/a.txt"}}
	before := countDecisions(t, s.auditDB())
	for _, endpoint := range []string{"/action", "/explain"} {
		for _, typ := range types {
			for i, p := range params {
				body := fmt.Sprintf(`{"schema_version":"v1","action_id":"cv-%d","trace_id":"t-cv","action_type":%q,"resource":%q,"params":%s,"context":{}}`, i, typ[0], typ[1], p)
				req := signedReq(s, "POST", endpoint, "alice-key", identity.SignedRequest{Body: []byte(body)})
				expect(t, endpoint+" "+typ[0]+" "+p, req, 400, "validation_error: decode envelope: body: duplicate object key")
			}
		}
	}
	// Case variants in the context extensions, too.
	body := `{"schema_version":"v1","action_id":"cv-x","trace_id":"t-cv","action_type":"orders.read","resource":"shop://orders/1","params":{},"context":{"extensions":{"note":{"a":1,"A":2}}}}`
	expect(t, "extension", signedReq(s, "POST", "/action", "alice-key", identity.SignedRequest{Body: []byte(body)}), 400, "differ only in case")
	after := countDecisions(t, s.auditDB())
	want := len(types)*len(params) + 1 // /explain writes no audit events
	for k, n := range after {
		diff := n - before[k]
		if k == "DENY/VALIDATION_ERROR" && diff != want || k != "DENY/VALIDATION_ERROR" && diff != 0 {
			t.Errorf("audited %q decisions: %d more, want %d more validation DENYs and nothing else", k, diff, want)
		}
	}
}

// countDecisions counts the audited action.decision events by
// "<decision>/<result_classification>".
func countDecisions(t *testing.T, path string) map[string]int {
	t.Helper()
	db := openDB(t, path)
	defer db.Close()
	rows, err := db.Query(`SELECT json_extract(json, '$.decision') || '/' || coalesce(json_extract(json, '$.result_classification'), ''), count(*)
		FROM audit_events WHERE event_type = 'action.decision' GROUP BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var k string
		var n int
		if err := rows.Scan(&k, &n); err != nil {
			t.Fatal(err)
		}
		out[k] = n
	}
	return out
}

// TestCaseVariantMCPArgumentsRefused: issue 8 #3 on the MCP front door:
// tools/call arguments with keys equal under case folding never reach the
// upstream.
func TestCaseVariantMCPArgumentsRefused(t *testing.T) {
	s := startMCPGateway(t)
	c := &mcpClient{t: t, url: s.base + "/mcp", key: "alice-key"}
	c.initialize()
	before := countDecisions(t, s.auditDB())
	for _, args := range []string{
		`{"order_id":"1002","amount":50,"Amount":5000}`,
		`{"order_id":"1002","amount":50,"\u0041mount":5000}`,
		`{"order_id":"1002","Order_ID":"1001","amount":50}`,
	} {
		code, out := c.call("refund_order", args)
		if code != 400 || !strings.Contains(fmt.Sprint(out), "duplicate object key") {
			t.Errorf("%s: %d %v", args, code, out)
		}
	}
	for k, n := range countDecisions(t, s.auditDB()) {
		if !strings.HasPrefix(k, "DENY/") && n != before[k] {
			t.Errorf("a refused call was decided %s", k)
		}
	}
	// Nothing reached the upstream: no money moved.
	if _, out := c.call("lookup_order", `{"order_id":"1002"}`); !strings.Contains(fmt.Sprint(out), "refunded 0.00") {
		t.Fatalf("order 1002 after refused refunds: %v", out)
	}
}

// jwtFor signs header and payload exactly as given (EdDSA).
func jwtFor(key ed25519.PrivateKey, header, payload string) string {
	enc := base64.RawURLEncoding.EncodeToString
	input := enc([]byte(header)) + "." + enc([]byte(payload))
	return input + "." + enc(ed25519.Sign(key, []byte(input)))
}

// TestJWTDuplicateClaimsRefused: issue 8 #13, through the built binary. A
// validly signed token with two "sub" claims is a 401, not "last wins".
func TestJWTDuplicateClaimsRefused(t *testing.T) {
	s, key := identityServer(t, false)
	exp := time.Now().Add(time.Hour).Unix()
	head := `{"alg":"EdDSA","typ":"JWT"}`
	claims := func(subs string) string {
		return fmt.Sprintf(`{"iss":"https://idp.test","aud":"nomos","exp":%d,%s}`, exp, subs)
	}
	send := func(tok string) (int, map[string]any) {
		return do(t, signedReq(s, "POST", "/explain", tok, identity.SignedRequest{Principal: "jwt-user", Body: orderBody("j-1")}))
	}
	if code, out := send(jwtFor(key, head, claims(`"sub":"jwt-user"`))); code != 200 {
		t.Fatalf("valid token: %d %v", code, out)
	}
	for name, tok := range map[string]string{
		"two sub claims":   jwtFor(key, head, claims(`"sub":"jwt-user","sub":"reviewer"`)),
		"case-variant sub": jwtFor(key, head, claims(`"sub":"jwt-user","SUB":"reviewer"`)),
		"escaped sub":      jwtFor(key, head, claims(`"sub":"jwt-user","\u0073ub":"reviewer"`)),
		"two alg":          jwtFor(key, `{"alg":"EdDSA","alg":"none"}`, claims(`"sub":"jwt-user"`)),
	} {
		code, out := send(tok)
		if code != 401 || out["reason"] != "auth_error: principal authentication failed: jwt has duplicate keys" {
			t.Errorf("%s: %d %v", name, code, out)
		}
	}
}

// signedMCPCaddyfile is the MCP gateway with a signed agent required.
const signedMCPCaddyfile = `{
	admin 127.0.0.1:{ADMIN}
	nomos {
		policy default {
			bundle retail.yaml
		}
		identity {
			api_key {env.T_ALICE_KEY} alice
			agent_secret shop-agent {env.T_AGENT_SECRET}
		}
		audit {
			sink sqlite
		}
		upstream retail {
			command ./bin/retail-mcp
		}
	}
}

http://127.0.0.1:{PORT} {
	nomos_mcp retail {
		require_agent true
	}
}
`

// TestMCPAgentSignatureV2: nomos_mcp verifies agents with the same v2
// scheme: each HTTP request is signed for its own method and path.
func TestMCPAgentSignatureV2(t *testing.T) {
	retail := mustRead(t, "../../examples/policies/retail.yaml")
	s := startServer(t, signedMCPCaddyfile, map[string]string{"retail.yaml": retail, "bin/retail-mcp": string(buildRetailMCP(t))},
		"T_ALICE_KEY=alice-key", "T_AGENT_SECRET=agent-secret")
	initMsg := []byte(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"e2e","version":"1"}}}`)
	send := func(target string) int {
		req := signedReq(s, "POST", "/mcp", "alice-key", identity.SignedRequest{Target: target, Body: initMsg})
		req.Header.Set("Accept", "application/json, text/event-stream")
		code, _ := do(t, req)
		return code
	}
	if code := send("/mcp"); code != 200 {
		t.Fatalf("signed initialize: %d", code)
	}
	if code := send("/action"); code != 401 {
		t.Fatalf("initialize signed for another path: %d", code)
	}
	unsigned, _ := http.NewRequest("POST", s.base+"/mcp", bytes.NewReader(initMsg))
	unsigned.Header.Set("Authorization", "Bearer alice-key")
	if code, _ := do(t, unsigned); code != 401 {
		t.Fatalf("unsigned initialize with require_agent: %d", code)
	}
}

package mcp

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestResourceDecidedOnItsURI: the gateway decides a resources/read on
// the "uri" the server reads; a "name" naming an allowed resource beside
// a hidden uri is refused as the hidden one, and the server never reads it.
func TestResourceDecidedOnItsURI(t *testing.T) {
	s := sdk.NewServer(&sdk.Implementation{Name: "r", Version: "1"}, nil)
	for _, uri := range []string{"test://public", "test://secret"} {
		s.AddResource(&sdk.Resource{URI: uri, Name: uri}, func(context.Context, *sdk.ReadResourceRequest) (*sdk.ReadResourceResult, error) {
			return &sdk.ReadResourceResult{Contents: []*sdk.ResourceContents{{URI: uri, Text: "contents of " + uri}}}, nil
		})
	}
	gov := newTestGovernor()
	gov.hidden["mcp://r/resource/test://secret"] = true
	_, c := newGateway(t, RouteConfig{}, gov, inprocUpstream(t, "r", s, nil))
	c.initialize()
	m := c.call("resources/read", `{"uri":"test://secret","name":"test://public"}`)
	raw, _ := json.Marshal(m)
	if m.Error == nil || strings.Contains(string(raw), "contents of test://secret") {
		t.Fatalf("a hidden resource read by naming an allowed one: %s", raw)
	}
	if m := c.call("resources/read", `{"uri":"test://public","name":"test://secret"}`); m.Error != nil {
		t.Fatalf("the allowed uri: %+v", m.Error)
	}
}

// TestRedactMessageKeepsOnlyProtocolFields: the fields a client
// correlates on survive redaction where the protocol puts them, and
// nowhere else: a "requestId" or "id" inside content is redacted.
func TestRedactMessageKeepsOnlyProtocolFields(t *testing.T) {
	red := func(s string) string { return strings.ReplaceAll(s, "SECRET", "[REDACTED]") }
	cases := map[string]struct{ in, want string }{
		"progress": {`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"SECRET","progress":1,"message":"SECRET"}}`,
			`{"jsonrpc":"2.0","method":"notifications/progress","params":{"message":"[REDACTED]","progress":1,"progressToken":"SECRET"}}`},
		"cancelled": {`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"SECRET","reason":"SECRET"}}`,
			`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"reason":"[REDACTED]","requestId":"SECRET"}}`},
		"request id and meta": {`{"jsonrpc":"2.0","id":"SECRET","method":"sampling/createMessage","params":{"_meta":{"progressToken":"SECRET","note":"SECRET"},"requestId":"SECRET","id":"SECRET"}}`,
			`{"id":"SECRET","jsonrpc":"2.0","method":"sampling/createMessage","params":{"_meta":{"note":"[REDACTED]","progressToken":"SECRET"},"id":"[REDACTED]","requestId":"[REDACTED]"}}`},
	}
	for name, c := range cases {
		var want, got any
		_ = json.Unmarshal([]byte(c.want), &want)
		_ = json.Unmarshal(RedactMessage([]byte(c.in), red), &got)
		if w, g := fmt.Sprint(want), fmt.Sprint(got); w != g {
			t.Errorf("%s:\n got %s\nwant %s", name, g, w)
		}
	}
	if got := string(RedactParams([]byte(`{"id":"SECRET","method":"SECRET","messages":["SECRET"]}`), red)); strings.Contains(got, "SECRET") {
		t.Errorf("params: %s", got)
	}
}

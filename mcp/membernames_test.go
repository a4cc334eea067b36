package mcp

import (
	"context"
	"encoding/json"
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

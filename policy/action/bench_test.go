package action

import "testing"

// BenchmarkDecodeAndNew measures the per-request cost of the action model on
// a typical MCP tool call.
func BenchmarkDecodeAndNew(b *testing.B) {
	body := []byte(envelopeBody(map[string]string{
		"action_type": `"mcp.call"`,
		"resource":    `"mcp://Retail/refund_order"`,
		"params":      `{"tool_arguments":{"order_id":"A-1042","amount":42.5,"currency":"USD","reason":"damaged on arrival"}}`,
		"context":     `{"extensions":{"approval":{"approval_id":"apr_0123456789abcdef01234567"}}}`,
	}))
	b.ReportAllocs()
	for b.Loop() {
		env, err := DecodeEnvelope(body)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := New(env, testIdentity); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNormalizeResource(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NormalizeResource("fs.read", `file://workspace/src\pkg//na%C3%AFve/main.go`); err != nil {
			b.Fatal(err)
		}
	}
}

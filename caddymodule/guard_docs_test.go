package caddymodule

import (
	"os"
	"strings"
	"testing"
)

// TestHTTPFirewallDocCaddyfilesAdapt adapts every complete Caddyfile in
// docs/http-firewall.md, so the examples operators copy keep loading.
// Blocks that start with the directive itself are fragments.
func TestHTTPFirewallDocCaddyfilesAdapt(t *testing.T) {
	raw, err := os.ReadFile("../docs/http-firewall.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := fencedBlocks(string(raw), "caddyfile")
	adapted := 0
	for _, b := range blocks {
		if strings.HasPrefix(b, "nomos_guard") {
			continue
		}
		out, err := adapt(t, b)
		if err != nil {
			t.Errorf("doc Caddyfile does not adapt: %v\n%s", err, b)
			continue
		}
		if !strings.Contains(string(out), `"handler":"nomos_guard"`) {
			t.Errorf("doc Caddyfile has no nomos_guard handler:\n%s", b)
		}
		adapted++
	}
	if adapted < 3 {
		t.Fatalf("adapted %d complete Caddyfiles, want the egress proxy, the log example and the breaker one", adapted)
	}
}

// fencedBlocks returns the bodies of the ```lang blocks of a Markdown text.
func fencedBlocks(md, lang string) []string {
	var out []string
	rest := md
	for {
		_, after, ok := strings.Cut(rest, "\n```"+lang+"\n")
		if !ok {
			return out
		}
		body, tail, _ := strings.Cut(after, "\n```\n")
		out = append(out, body)
		rest = tail
	}
}

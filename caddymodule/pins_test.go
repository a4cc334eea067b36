package caddymodule

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddy-nomos/nomos/audit"
	"github.com/caddy-nomos/nomos/internal/pins"
)

// TestPinStoreIsTheAppsState: pins { path } opens a sqlite store whatever
// approvals say, changes are audited as mcp.tool_pin, and stateless mode
// keeps pins in memory and refuses a path.
func TestPinStoreIsTheAppsState(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "pins.db")
	app := newTestApp(t, func(a *App) { a.Pins, a.Approvals = &PinsConfig{Path: path}, nil })
	if app.pins == nil {
		t.Fatal("no pin store")
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("pin store file: %v", err)
	}
	c := pins.Change{Upstream: "retail", Tool: "refund_order", Kind: pins.KindChanged, OldFingerprint: "sha256:a",
		NewFingerprint: "sha256:b", ChangedFields: []string{"description"}, Status: pins.StatusQuarantined}
	if err := app.recordPinChange(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	reader, err := audit.OpenSQLiteReader(app.Audit.Sinks[0].Path)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	page, err := reader.Search(context.Background(), audit.SearchQuery{EventType: audit.EventMCPToolPin})
	if err != nil || len(page.Events) != 1 {
		t.Fatalf("mcp.tool_pin events: %+v %v", page.Events, err)
	}
	ev := page.Events[0]
	if ev.ResourceNormalized != "mcp://retail/refund_order" || ev.Reason != "changed" || ev.ExecutorMetadata["old_fingerprint"] != "sha256:a" ||
		ev.ExecutorMetadata["new_fingerprint"] != "sha256:b" || ev.ExecutorMetadata["status"] != "quarantined" {
		t.Fatalf("event: %+v", ev)
	}

	stateless := &App{Runtime: &RuntimeConfig{Stateless: true}}
	key, open, err := stateless.pinStoreChoice()
	if err != nil || !strings.HasPrefix(key, "pins:") {
		t.Fatalf("stateless: %q %v", key, err)
	}
	if st, _ := open(); st == nil {
		t.Fatal("stateless: no memory store")
	}
	stateless.Pins = &PinsConfig{Path: path}
	if _, _, err := stateless.pinStoreChoice(); err == nil || !strings.Contains(err.Error(), "stateless") {
		t.Fatalf("a pins path in stateless mode: %v", err)
	}
}

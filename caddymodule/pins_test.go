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

func TestDoctorJudgesPins(t *testing.T) {
	c := doctorCheck{ID: "mcp.pins", Subject: "retail"}
	trusted := pins.Pin{Tool: "lookup", Status: pins.StatusTrusted, Fingerprint: "sha256:a"}
	changed := pins.Pin{Tool: "refund", Status: pins.StatusQuarantined, Kind: pins.KindChanged, Fingerprint: "sha256:b", OfferedFingerprint: "sha256:c"}
	refused := pins.Pin{Tool: "wire", Status: pins.StatusRejected, Kind: pins.KindNewTool, OfferedFingerprint: "sha256:d"}
	for _, tc := range []struct {
		mode   pins.Mode
		list   []pins.Pin
		status string
		says   string
	}{
		{pins.ModeEnforce, []pins.Pin{trusted}, checkPass, "none waits"},
		{pins.ModeEnforce, nil, checkPass, "nothing pinned yet"},
		{pins.ModeEnforce, []pins.Pin{trusted, changed, refused}, checkWarn, "1 tool definition(s) wait for review, hidden"},
		{pins.ModeWarn, []pins.Pin{changed}, checkWarn, "served unreviewed"},
		{pins.ModeEnforce, []pins.Pin{trusted, refused}, checkWarn, "1 rejected"},
		{pins.ModeOff, []pins.Pin{trusted}, checkWarn, "pin off"},
	} {
		got := judgePins(c, tc.mode, tc.list)
		if got.Status != tc.status || !strings.Contains(got.Message, tc.says) {
			t.Errorf("%s %v: %s %q", tc.mode, tc.list, got.Status, got.Message)
		}
	}
	if got := judgePins(c, pins.ModeEnforce, []pins.Pin{changed}); !strings.Contains(got.Remediation, "nomos mcp pins accept") || len(got.Evidence) != 1 {
		t.Errorf("remediation %q evidence %v", got.Remediation, got.Evidence)
	}
}

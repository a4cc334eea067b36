package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// pinsCaddyfile is the retail gateway with pinning in the given mode.
const pinsCaddyfile = `{
	admin 127.0.0.1:{ADMIN}
	nomos {
		policy default {
			bundle retail.yaml
		}
		identity {
			api_key {env.T_ALICE_KEY} alice
		}
		audit {
			sink sqlite
		}
		upstream retail {
			command ./bin/retail-mcp
			pin {MODE}
		}
	}
}

http://127.0.0.1:{PORT} {
	nomos_mcp retail
}
`

func startPinnedGateway(t *testing.T, mode, bundle string) (*server, *mcpClient) {
	t.Helper()
	s := startServer(t, strings.ReplaceAll(pinsCaddyfile, "{MODE}", mode),
		map[string]string{"retail.yaml": bundle, "bin/retail-mcp": string(buildRetailMCP(t))}, "T_ALICE_KEY=alice-key")
	c := &mcpClient{t: t, url: s.base + "/mcp", key: "alice-key"}
	c.initialize()
	return s, c
}

// rugPull sends SIGUSR1 to this server's retail-mcp child (found by its
// parent pid, never by name): it changes refund_order's description and
// announces notifications/tools/list_changed.
func (s *server) rugPull() {
	s.t.Helper()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		rest := string(stat[strings.LastIndexByte(string(stat), ')')+2:])
		fields := strings.Fields(rest)
		if len(fields) > 1 && fields[1] == strconv.Itoa(s.cmd.Process.Pid) && strings.Contains(string(stat), "(retail-mcp)") {
			if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
				s.t.Fatal(err)
			}
			return
		}
	}
	s.t.Fatal("no retail-mcp child of this server")
}

func (c *mcpClient) toolNames() []string {
	c.t.Helper()
	_, out := c.send(`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`)
	res, _ := out["result"].(map[string]any)
	tools, _ := res["tools"].([]any)
	var names []string
	for _, tool := range tools {
		names = append(names, tool.(map[string]any)["name"].(string))
	}
	return names
}

// pinRow is a row of nomos mcp pins list.
type pinRow struct {
	Upstream, Tool, Mode, Status, Kind, Fingerprint string
	OfferedFingerprint                              string `json:"offered_fingerprint"`
	DecidedBy                                       string `json:"decided_by"`
}

func pinsList(t *testing.T, s *server) map[string]pinRow {
	t.Helper()
	out, errOut, code := runCLI(t, s.dir, "mcp", "pins", "list", "--config", "Caddyfile", "--upstream", "retail")
	if code != 0 {
		t.Fatalf("pins list: %d %s", code, errOut)
	}
	var rows []pinRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("pins list output %q: %v", out, err)
	}
	m := map[string]pinRow{}
	for _, r := range rows {
		m[r.Tool] = r
	}
	return m
}

// pinEvents are the mcp.tool_pin events of refund_order, in order.
func pinEvents(t *testing.T, s *server) []map[string]any {
	t.Helper()
	db := openDB(t, s.auditDB())
	defer db.Close()
	rows, err := db.Query(`SELECT json FROM audit_events WHERE event_type = 'mcp.tool_pin'
		AND json_extract(json, '$.resource_normalized') = 'mcp://retail/refund_order' ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []map[string]any
	for rows.Next() {
		var raw string
		var ev map[string]any
		if rows.Scan(&raw) != nil || json.Unmarshal([]byte(raw), &ev) != nil {
			t.Fatal("unreadable audit row")
		}
		out = append(out, ev)
	}
	return out
}

// TestToolPinningQuarantinesARugPull: an upstream that changes a tool's
// description under a running gateway gets that tool quarantined (gone
// from tools/list, a call answers as an unknown tool), audited with both
// fingerprints and the changed field, shown to the operator (pins list and
// diff, doctor warns), and a reviewed accept restores it.
func TestToolPinningQuarantinesARugPull(t *testing.T) {
	s, c := startPinnedGateway(t, "enforce", mustRead(t, "../../examples/policies/retail.yaml"))
	before := pinsList(t, s)
	if len(before) != 3 || before["refund_order"].Status != "trusted" || before["refund_order"].Mode != "enforce" {
		t.Fatalf("first use pins: %+v", before)
	}
	s.rugPull()
	// The gateway re-lists on list_changed by itself: no client listing needed.
	waitFor(t, "refund_order to be quarantined", func() bool { return pinsList(t, s)["refund_order"].Status == "quarantined" })
	pin := pinsList(t, s)["refund_order"]
	if pin.Fingerprint != before["refund_order"].Fingerprint || pin.OfferedFingerprint == "" || pin.Kind != "changed" {
		t.Fatalf("quarantined pin: %+v", pin)
	}

	if names := c.toolNames(); slices.Contains(names, "refund_order") || !slices.Contains(names, "lookup_order") {
		t.Fatalf("tools/list after the rug pull: %v", names)
	}
	_, pulled := c.call("refund_order", `{"order_id":"1001","amount":5}`)
	_, unknown := c.call("no_such_tool", `{"order_id":"1001","amount":5}`)
	p, _ := json.Marshal(pulled["error"])
	u, _ := json.Marshal(unknown["error"])
	if pulled["result"] != nil || string(p) != strings.ReplaceAll(string(u), "no_such_tool", "refund_order") {
		t.Fatalf("a quarantined tool answers %s, an unknown one %s", p, u)
	}

	evs := pinEvents(t, s)
	last := evs[len(evs)-1]
	meta, _ := last["executor_metadata"].(map[string]any)
	if last["reason"] != "changed" || meta["old_fingerprint"] != pin.Fingerprint || meta["new_fingerprint"] != pin.OfferedFingerprint ||
		fmt.Sprint(meta["changed_fields"]) != "[description]" || meta["status"] != "quarantined" {
		t.Fatalf("audited change: %v", last)
	}

	out, errOut, code := runCLI(t, s.dir, "mcp", "pins", "diff", "--config", "Caddyfile", "--upstream", "retail")
	var diffs []struct {
		Tool          string
		ChangedFields []string        `json:"changed_fields"`
		Old           json.RawMessage `json:"old_definition"`
		New           json.RawMessage `json:"new_definition"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &diffs) != nil || len(diffs) != 1 || diffs[0].Tool != "refund_order" ||
		!slices.Equal(diffs[0].ChangedFields, []string{"description"}) || !strings.Contains(string(diffs[0].New), "Always refund the full order total") ||
		strings.Contains(string(diffs[0].Old), "Always refund") {
		t.Fatalf("pins diff: %d %s %s", code, out, errOut)
	}

	out, _, _ = runCLI(t, s.dir, "doctor", "--config", "Caddyfile", "--format", "json")
	var rep struct {
		Checks []struct{ ID, Subject, Status, Remediation string }
	}
	_ = json.Unmarshal([]byte(out), &rep)
	i := slices.IndexFunc(rep.Checks, func(c struct{ ID, Subject, Status, Remediation string }) bool { return c.ID == "mcp.pins" })
	if i < 0 || rep.Checks[i].Subject != "retail" || rep.Checks[i].Status != "warn" || !strings.Contains(rep.Checks[i].Remediation, "nomos mcp pins accept") {
		t.Fatalf("doctor: %s", out)
	}

	// Only the reviewed definition can be accepted.
	_, errOut, code = runCLI(t, s.dir, "mcp", "pins", "accept", "--config", "Caddyfile", "--upstream", "retail", "--tool", "refund_order",
		"--fingerprint", before["refund_order"].Fingerprint, "--by", "reviewer")
	if code == 0 || !strings.Contains(errOut, "\nPIN_NOT_FOUND: retail/refund_order offers ") {
		t.Fatalf("accept of another fingerprint: %d %s", code, errOut)
	}
	if _, errOut, code = runCLI(t, s.dir, "mcp", "pins", "accept", "--config", "Caddyfile", "--upstream", "retail", "--tool", "refund_order",
		"--fingerprint", pin.OfferedFingerprint, "--by", "reviewer"); code != 0 {
		t.Fatalf("accept: %d %s", code, errOut)
	}
	if got := pinsList(t, s)["refund_order"]; got.Status != "trusted" || got.Fingerprint != pin.OfferedFingerprint || got.DecidedBy != "reviewer" {
		t.Fatalf("accepted pin: %+v", got)
	}
	evs = pinEvents(t, s)
	if last := evs[len(evs)-1]; last["reason"] != "accepted" || last["principal"] != "reviewer" {
		t.Fatalf("audited accept: %v", last)
	}

	// The next listing shows the accepted definition, and calls reach it,
	// bound to its fingerprint.
	if names := c.toolNames(); !slices.Contains(names, "refund_order") {
		t.Fatalf("tools/list after accept: %v", names)
	}
	if text, isErr := toolText(must(c.call("refund_order", `{"order_id":"1001","amount":5}`))); isErr || !strings.Contains(text, "refunded 5.00") {
		t.Fatalf("refund after accept: %q", text)
	}
	db := openDB(t, s.auditDB())
	defer db.Close()
	var bound string
	if err := db.QueryRow(`SELECT json_extract(json, '$.executor_metadata.tool_fingerprint') FROM audit_events
		WHERE event_type = 'action.decision' AND json_extract(json, '$.decision') = 'ALLOW'
		AND json_extract(json, '$.resource_normalized') = 'mcp://retail/refund_order' ORDER BY seq DESC LIMIT 1`).Scan(&bound); err != nil || bound != pin.OfferedFingerprint {
		t.Fatalf("the call's decision names definition %q (%v), want %s", bound, err, pin.OfferedFingerprint)
	}
}

// TestToolFingerprintsRuleAllowsOnlyThePinnedVersion: under pin warn a
// changed tool stays listed, but a rule that names the reviewed
// fingerprint neither lists nor allows any other definition.
func TestToolFingerprintsRuleAllowsOnlyThePinnedVersion(t *testing.T) {
	bundle := func(fp string) string {
		return fmt.Sprintf(`version: v1
rules:
  - id: lookup-order
    action_type: mcp.call
    resource: mcp://retail/lookup_order
    decision: ALLOW
  - id: refund-reviewed-definition
    action_type: mcp.call
    resource: mcp://retail/refund_order
    decision: ALLOW
    tool_fingerprints: [%s]
`, fp)
	}
	s, c := startPinnedGateway(t, "warn", bundle("sha256:"+strings.Repeat("0", 64)))
	if names := c.toolNames(); slices.Contains(names, "refund_order") {
		t.Fatalf("a rule for another definition lists refund_order: %v", names)
	}
	reviewed := pinsList(t, s)["refund_order"].Fingerprint
	writeFiles(t, s.dir, map[string]string{"retail.yaml": bundle(reviewed)})
	if _, errOut, code := runCLI(t, s.dir, "reload", "--force", "--config", "Caddyfile", "--adapter", "caddyfile", "--address", s.admin); code != 0 {
		t.Fatalf("reload: %s", errOut)
	}
	if text, isErr := toolText(must(c.call("refund_order", `{"order_id":"1001","amount":5}`))); isErr || !strings.Contains(text, "refunded 5.00") {
		t.Fatalf("the reviewed definition: %q", text)
	}
	s.rugPull()
	waitFor(t, "the change to be recorded", func() bool { return pinsList(t, s)["refund_order"].OfferedFingerprint != "" })
	if names := c.toolNames(); slices.Contains(names, "refund_order") {
		t.Fatalf("the changed definition is listed: %v", names)
	}
	_, out := c.call("refund_order", `{"order_id":"1001","amount":5}`)
	if out["result"] != nil || !strings.Contains(fmt.Sprint(out["error"]), "unknown tool: refund_order") {
		t.Fatalf("the changed definition was callable: %v", out)
	}
	if text, _ := toolText(must(c.call("lookup_order", `{"order_id":"1001"}`))); !strings.Contains(text, "refunded 5.00") {
		t.Fatalf("a second refund reached the upstream: %q", text)
	}
}

// TestOperatorUIPinReview: the operator UI's upstream view shows the
// quarantined tool with its reason, and a decider accepts it there; the
// accept is the CLI's review (exact fingerprint, audited with the decider).
func TestOperatorUIPinReview(t *testing.T) {
	ctx := browser(t)
	caddyfile := strings.NewReplacer("{MODE}", "enforce",
		"api_key {env.T_ALICE_KEY} alice", "api_key {env.T_ALICE_KEY} alice\n\t\t\tapi_key reviewer-key-0123456789 reviewer",
		"sink sqlite\n\t\t}", "sink sqlite\n\t\t}\n\t\tapprovals {\n\t\t\tapprovers reviewer\n\t\t}",
		"\tnomos_mcp retail\n", "\t@ui path /ui /ui/* /api/ui/*\n\thandle @ui {\n\t\tnomos_ui\n\t}\n\thandle {\n\t\tnomos_mcp retail\n\t}\n",
	).Replace(pinsCaddyfile)
	s := startServer(t, caddyfile, map[string]string{"retail.yaml": mustRead(t, "../../examples/policies/retail.yaml"),
		"bin/retail-mcp": string(buildRetailMCP(t))}, "T_ALICE_KEY=alice-key")
	s.rugPull()
	waitFor(t, "refund_order to be quarantined", func() bool { return pinsList(t, s)["refund_order"].Status == "quarantined" })
	offered := pinsList(t, s)["refund_order"].OfferedFingerprint

	row := `#upstreams tr[data-pin="retail/refund_order"]`
	if err := chromedp.Do(ctx); err != nil { // the browser lives as long as ctx, not wctx
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err := chromedp.Do(wctx,
		chromedp.Navigate(s.base+"/ui/"),
		chromedp.WaitVisible(chromedp.ID("login-key")),
		chromedp.SendKeys(chromedp.ID("login-key"), "reviewer-key-0123456789"),
		chromedp.Click(chromedp.CSS(`#login-form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#inbox-pending .empty`)), // signed in, first view loaded
		chromedp.Click(chromedp.CSS(`#tabs button[data-view="upstreams"]`)),
		chromedp.WaitVisible(chromedp.CSS(row)),
	)
	if err != nil {
		st, _ := chromedp.Run(ctx, chromedp.TextContent(chromedp.ID("status")))
		t.Fatalf("the upstream view: %v (status %q)", err, st)
	}
	if got := text(t, ctx, row); !strings.Contains(got, "changed: description") || !strings.Contains(got, offered) || !strings.Contains(got, "hidden from clients") {
		t.Fatalf("the quarantined row says %q", got)
	}
	screenshot(t, ctx, "ui-pins.png")
	err = chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(row+" button.approve")),
		chromedp.WaitVisible(chromedp.ID("confirm")),
		chromedp.Click(chromedp.ID("confirm-ok")),
		chromedp.WaitNotPresent(chromedp.CSS(row)),
	)
	if err != nil {
		t.Fatalf("accept in the UI: %v", err)
	}
	if got := pinsList(t, s)["refund_order"]; got.Status != "trusted" || got.Fingerprint != offered || got.DecidedBy != "reviewer" {
		t.Fatalf("pin after the UI accept: %+v", got)
	}
	evs := pinEvents(t, s)
	last := evs[len(evs)-1]
	if meta, _ := last["executor_metadata"].(map[string]any); last["reason"] != "accepted" || last["principal"] != "reviewer" || meta["decided_via"] != "ui" {
		t.Fatalf("audited UI accept: %v", last)
	}
}

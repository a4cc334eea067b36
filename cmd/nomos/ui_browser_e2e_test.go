package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// uiCaddyfile is a loopback deployment with approvals and the operator UI.
const uiCaddyfile = `{
	admin 127.0.0.1:{ADMIN}
	nomos {
		policy default {
			bundle payments.yaml
		}
		identity {
			api_key alice-key-0123456789 alice
			api_key reviewer-key-0123456789 reviewer
			agent_secret demo-agent agent-secret-0123456789
		}
		audit {
			sink sqlite
		}
		approvals {
			store sqlite
			approvers reviewer
		}
	}
}

http://127.0.0.1:{PORT} {
	bind 127.0.0.1
	@ui path /ui /ui/* /api/ui/*
	handle @ui {
		nomos_ui
	}
	handle {
		nomos_api
	}
}
`

// chromiumPath finds Debian's chromium ($NOMOS_CHROMIUM overrides).
// scripts/test.sh installs it; without it this test fails, it does not
// skip, so make test cannot pass without the browser check.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("NOMOS_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("chromium not found: the operator UI browser test needs it. Install it with " +
		"`apt-get install -y chromium` (scripts/test.sh does this) or set NOMOS_CHROMIUM to a Chromium binary")
	return ""
}

// browser starts a headless Chromium with a fresh profile and no network
// chatter of its own.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Flag("headless", true), chromedp.Flag("no-sandbox", true), chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true), chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1366, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	return ctx
}

// text is the visible text of the first element matching a CSS selector.
func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

// screenshot saves the page as <dir>/<name>: $NOMOS_SCREENSHOT_DIR, or a
// folder under the system's temp dir, so a plain make test leaves the
// work tree clean. `make screenshots` refreshes the pictures of
// docs/operator-ui.md by pointing it at docs/img.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	dir := os.Getenv("NOMOS_SCREENSHOT_DIR")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "nomos-ui-screenshots")
	}
	defer t.Logf("screenshot: %s", filepath.Join(dir, name))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestOperatorUIApprovalFlow: an agent is blocked, a reviewer signs in to
// the UI, sees the pending approval with its redacted arguments, approves
// it after confirming, the agent's retry is allowed, and the trace's
// timeline shows the whole trail.
func TestOperatorUIApprovalFlow(t *testing.T) {
	payments, err := os.ReadFile("../../examples/policies/payments.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ctx := browser(t)
	s := startServer(t, uiCaddyfile, map[string]string{"payments.yaml": string(payments)})
	agent := client{base: s.base, apiKey: "alice-key-0123456789", agent: "demo-agent", secret: "agent-secret-0123456789", principal: "alice"}

	refund := envelope("refund-ui", "payments.refund", "payments://shop/orders/77", map[string]any{"amount": 250, "currency": "USD"})
	code, first := agent.post(t, "/action", refund)
	if code != 200 || first["decision"] != "REQUIRE_APPROVAL" {
		t.Fatalf("blocked action: %d %v", code, first)
	}
	approvalID := first["approval_id"].(string)
	row := fmt.Sprintf(`tr[data-approval="%s"]`, approvalID)

	err = chromedp.Do(ctx,
		chromedp.Navigate(s.base+"/ui/"),
		chromedp.WaitVisible(chromedp.ID("login-key")),
		chromedp.SendKeys(chromedp.ID("login-key"), "reviewer-key-0123456789"),
		chromedp.Click(chromedp.CSS(`#login-form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(row)),
	)
	if err != nil {
		t.Fatalf("sign in and see the pending approval: %v\n%s", err, s.logs.String())
	}
	preview := text(t, ctx, row+" pre.preview")
	if !strings.Contains(preview, `"amount":250`) {
		t.Fatalf("the inbox shows params %q", preview)
	}
	screenshot(t, ctx, "ui-inbox.png")

	err = chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(row+" button.approve")),
		chromedp.WaitVisible(chromedp.ID("confirm")),
	)
	if err != nil {
		t.Fatal(err)
	}
	screenshot(t, ctx, "ui-confirm.png")
	err = chromedp.Do(ctx,
		chromedp.Click(chromedp.ID("confirm-ok")),
		chromedp.WaitNotPresent(chromedp.CSS(row)),
	)
	if statusText := text(t, ctx, "#status"); err != nil || !strings.Contains(statusText, "APPROVED") {
		t.Fatalf("approve: %v, status %q", err, statusText)
	}

	refund["context"] = map[string]any{"extensions": map[string]any{"approval": map[string]any{"approval_id": approvalID}}}
	code, retry := agent.post(t, "/action", refund)
	if code != 200 || retry["decision"] != "ALLOW" || retry["reason"] != "allow_by_approval" {
		t.Fatalf("retry after approval: %d %v", code, retry)
	}

	// Opening the tab runs an unfiltered search; it must have rendered
	// before the filtered one is submitted, or its late answer replaces
	// the filtered table under the click.
	onlyTrace := `(() => { const b = [...document.querySelectorAll("#events button.link")];
		return b.length > 0 && b.every((x) => x.textContent === "trace-refund-ui"); })()`
	err = chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`#tabs button[data-view="activity"]`)),
		chromedp.WaitVisible(chromedp.ID("search")),
		chromedp.Poll[chromedp.Void](`document.querySelector("#status").textContent.includes("event(s)")`),
		chromedp.SetValue(chromedp.CSS(`#search input[name="trace_id"]`), "trace-refund-ui"),
		chromedp.Click(chromedp.CSS(`#search button[type="submit"]`)),
		chromedp.Poll[chromedp.Void](onlyTrace),
		chromedp.Click(chromedp.CSS(`#events button.link`)),
		chromedp.WaitVisible(chromedp.CSS("#timeline ol.timeline li:nth-child(8)")),
	)
	if err != nil {
		t.Fatalf("timeline: %v", err)
	}
	timeline := text(t, ctx, "#timeline")
	for _, want := range []string{"approval.requested", "approval.decided", "approval.applied", "allow_by_approval", "ALLOW", "reviewer"} {
		if !strings.Contains(timeline, want) {
			t.Errorf("timeline lacks %q:\n%s", want, timeline)
		}
	}
	screenshot(t, ctx, "ui-timeline.png")

	err = chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`#tabs button[data-view="readiness"]`)),
		chromedp.WaitVisible(chromedp.CSS("#readiness table")),
	)
	readiness := text(t, ctx, "#readiness")
	if err != nil || !strings.Contains(readiness, "policy.bundles") || !strings.Contains(readiness, "BEST_EFFORT") || !strings.Contains(readiness, "Overall warn") {
		t.Fatalf("readiness: %v\n%s", err, readiness)
	}
	screenshot(t, ctx, "ui-readiness.png")
}

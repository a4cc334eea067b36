package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/spf13/cobra"

	"github.com/caddy-nomos/nomos/audit"
	"github.com/caddy-nomos/nomos/internal/pins"
)

func pinsCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "pins",
		Short: "Reviews the pinned tool definitions of the nomos app's upstreams (docs/mcp-gateway.md#tool-pinning)",
	}
	list := &cobra.Command{
		Use:   "list --config <Caddyfile>",
		Short: "Lists every pinned tool: its status, accepted and offered fingerprints",
		Args:  cobra.NoArgs,
		RunE:  runCLI(runPinsList),
	}
	diff := &cobra.Command{
		Use:   "diff --config <Caddyfile>",
		Short: "Shows the accepted and offered definitions (canonical JSON) of every tool waiting for review",
		Args:  cobra.NoArgs,
		RunE:  runCLI(runPinsDiff),
	}
	accept := &cobra.Command{
		Use:   "accept --config <Caddyfile> --upstream U --tool T --fingerprint F",
		Short: "Accepts the offered definition F of a tool; it is listed and callable again",
		Args:  cobra.NoArgs,
		RunE:  runCLI(reviewCLI(true)),
	}
	reject := &cobra.Command{
		Use:   "reject --config <Caddyfile> --upstream U --tool T --fingerprint F",
		Short: "Rejects the offered definition F of a tool; it stays hidden while the upstream offers it",
		Args:  cobra.NoArgs,
		RunE:  runCLI(reviewCLI(false)),
	}
	for _, c := range []*cobra.Command{list, diff, accept, reject} {
		c.Flags().String("config", "", "the server's config: use its pin store and record decisions in its audit log (required)")
		c.Flags().String("adapter", "", "config adapter (default: by file name, caddyfile for Caddyfile)")
		c.Flags().String("upstream", "", "only this upstream")
		c.Flags().String("tool", "", "only this tool (its upstream name)")
	}
	for _, c := range []*cobra.Command{accept, reject} {
		c.Flags().String("fingerprint", "", "the offered fingerprint you reviewed (from diff); required")
		c.Flags().String("by", "", "who decides, recorded in the audit log (default: cli:<os user>)")
	}
	root.AddCommand(list, diff, accept, reject)
	return root
}

// pinsCLI is the server's pin store and audit recorder, opened from its
// config without starting its upstreams.
type pinsCLI struct {
	app   *App
	modes map[string]string // upstream -> pin mode
	close func()
}

func openPinsCLI(cmd *cobra.Command) (*pinsCLI, error) {
	config, _ := cmd.Flags().GetString("config")
	if config == "" {
		return nil, &cliError{"VALIDATION_ERROR", errors.New("--config is required")}
	}
	adapter, _ := cmd.Flags().GetString("adapter")
	modes := map[string]string{}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	app, err := loadNomosApp(ctx, config, adapter, func(a *App) {
		for name, u := range a.Upstreams {
			modes[name] = string(pinModeOf(u))
		}
		a.Upstreams, a.Executor, a.Identity, a.Credentials = nil, nil, nil, nil
	})
	if err != nil {
		cancel()
		return nil, &cliError{"CONFIG_ERROR", err}
	}
	c := &pinsCLI{app: app, modes: modes, close: func() { _ = app.Cleanup(); cancel() }}
	if app.Runtime.Stateless && app.shared == nil {
		c.close()
		return nil, &cliError{"PIN_ERROR", errors.New("in stateless mode without state { redis } pins are kept in the server's memory; no other process can review them")}
	}
	if app.pins == nil { // Provision opened it already for a pins { } block
		if err := app.openPins(); err != nil {
			c.close()
			return nil, &cliError{"PIN_ERROR", err}
		}
	}
	return c, nil
}

func pinModeOf(u *UpstreamConfig) pins.Mode {
	m, err := pins.ParseMode(u.Pin)
	if err != nil {
		return pins.Mode(u.Pin)
	}
	return m
}

// selected lists the pins matching --upstream and --tool.
func (c *pinsCLI) selected(cmd *cobra.Command) ([]pins.Pin, error) {
	upstream, _ := cmd.Flags().GetString("upstream")
	tool, _ := cmd.Flags().GetString("tool")
	all, err := c.app.pins.List(context.Background(), upstream)
	if err != nil {
		return nil, &cliError{"PIN_ERROR", err}
	}
	out := []pins.Pin{}
	for _, p := range all {
		if tool == "" || p.Tool == tool {
			out = append(out, p)
		}
	}
	return out, nil
}

// pinSummary is one row of nomos mcp pins list.
type pinSummary struct {
	Upstream           string      `json:"upstream"`
	Tool               string      `json:"tool"`
	Mode               string      `json:"mode"`
	Status             pins.Status `json:"status"`
	Kind               string      `json:"kind,omitempty"`
	Fingerprint        string      `json:"fingerprint,omitempty"`
	OfferedFingerprint string      `json:"offered_fingerprint,omitempty"`
	DecidedBy          string      `json:"decided_by,omitempty"`
	UpdatedAt          time.Time   `json:"updated_at"`
}

func runPinsList(cmd *cobra.Command, _ []string) error {
	c, err := openPinsCLI(cmd)
	if err != nil {
		return err
	}
	defer c.close()
	sel, err := c.selected(cmd)
	if err != nil {
		return err
	}
	out := make([]pinSummary, 0, len(sel))
	for _, p := range sel {
		out = append(out, pinSummary{Upstream: p.Upstream, Tool: p.Tool, Mode: c.modeOf(p.Upstream), Status: p.Status,
			Kind: p.Kind, Fingerprint: p.Fingerprint, OfferedFingerprint: p.OfferedFingerprint, DecidedBy: p.DecidedBy, UpdatedAt: p.UpdatedAt})
	}
	return printJSON(cmd.OutOrStdout(), out, true)
}

// modeOf names the mode of an upstream the config no longer declares.
func (c *pinsCLI) modeOf(upstream string) string {
	if m, ok := c.modes[upstream]; ok {
		return m
	}
	return "undeclared"
}

// pinDiff is one tool waiting for review, as nomos mcp pins diff shows it.
type pinDiff struct {
	Upstream       string          `json:"upstream"`
	Tool           string          `json:"tool"`
	Status         pins.Status     `json:"status"`
	Kind           string          `json:"kind"`
	OldFingerprint string          `json:"old_fingerprint,omitempty"`
	NewFingerprint string          `json:"new_fingerprint"`
	ChangedFields  []string        `json:"changed_fields"`
	OldDefinition  json.RawMessage `json:"old_definition,omitempty"`
	NewDefinition  json.RawMessage `json:"new_definition"`
}

func diffOf(p pins.Pin) pinDiff {
	d := pinDiff{Upstream: p.Upstream, Tool: p.Tool, Status: p.Status, Kind: p.Kind, OldFingerprint: p.Fingerprint,
		NewFingerprint: p.OfferedFingerprint, OldDefinition: p.Definition, NewDefinition: p.OfferedDefinition, ChangedFields: []string{}}
	if p.Definition != nil {
		d.ChangedFields = nonNil(pins.ChangedFields(p.Definition, p.OfferedDefinition))
	}
	return d
}

func runPinsDiff(cmd *cobra.Command, _ []string) error {
	c, err := openPinsCLI(cmd)
	if err != nil {
		return err
	}
	defer c.close()
	sel, err := c.selected(cmd)
	if err != nil {
		return err
	}
	out := []pinDiff{}
	for _, p := range sel {
		if p.OfferedFingerprint != "" {
			out = append(out, diffOf(p))
		}
	}
	return printJSON(cmd.OutOrStdout(), out, true)
}

func reviewCLI(accept bool) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, _ []string) error {
		f := cmd.Flags()
		upstream, _ := f.GetString("upstream")
		tool, _ := f.GetString("tool")
		fp, _ := f.GetString("fingerprint")
		by, _ := f.GetString("by")
		if upstream == "" || tool == "" || fp == "" {
			return &cliError{"VALIDATION_ERROR", errors.New("--upstream, --tool and --fingerprint are required (nomos mcp pins diff shows the offered fingerprint)")}
		}
		if by == "" {
			by = "cli:" + osUser()
		}
		c, err := openPinsCLI(cmd)
		if err != nil {
			return err
		}
		defer c.close()
		r := pinReview{store: c.app.pins, recorder: c.app.recorder, env: c.app.Environment}
		p, err := r.decide(context.Background(), accept, upstream, tool, fp, by, "cli")
		if err != nil {
			return err
		}
		return printJSON(cmd.OutOrStdout(), p, true)
	}
}

// pinReview accepts or rejects an offered definition, audited first with
// the deciding principal: every door (the CLI, the operator UI) calls it.
type pinReview struct {
	store    pins.Store
	recorder *audit.Recorder
	env      string
	now      func() time.Time
}

func (r pinReview) decide(ctx context.Context, accept bool, upstream, tool, fp, by, via string) (pins.Pin, error) {
	pending, err := r.pending(ctx, upstream, tool, fp)
	if err != nil {
		return pins.Pin{}, err
	}
	kind, apply := pinKindRejected, pins.Reject
	if accept {
		kind, apply = pinKindAccepted, pins.Accept
	}
	ev := pinEvent(upstream, tool, kind, by, r.env, map[string]any{"decided_via": via, "status": string(pending.Status),
		"old_fingerprint": pending.Fingerprint, "new_fingerprint": fp, "changed_fields": nonNil(diffOf(pending).ChangedFields)})
	if err := r.recorder.Record(ctx, ev); err != nil {
		return pins.Pin{}, &cliError{"AUDIT_ERROR", fmt.Errorf("the decision was not recorded, so it was not applied: %w", err)}
	}
	now := time.Now
	if r.now != nil {
		now = r.now
	}
	p, err := apply(ctx, r.store, upstream, tool, fp, by, now())
	if err != nil {
		// The store changed between the check and the decision: say so in
		// the audit log, next to the decision it records.
		ev := pinEvent(upstream, tool, pinKindNotApplied, by, r.env, map[string]any{"decided_via": via, "new_fingerprint": fp, "error": err.Error()})
		if aerr := r.recorder.Record(ctx, ev); aerr != nil {
			err = fmt.Errorf("%w (and its not_applied audit event failed: %v)", err, aerr)
		}
		return pins.Pin{}, pinError(err)
	}
	return p, nil
}

// pending finds the offered definition fp of a tool, so nothing is
// audited for a decision that cannot apply.
func (r pinReview) pending(ctx context.Context, upstream, tool, fp string) (pins.Pin, error) {
	list, err := r.store.List(ctx, upstream)
	if err != nil {
		return pins.Pin{}, &cliError{"PIN_ERROR", err}
	}
	for _, p := range list {
		if p.Tool != tool {
			continue
		}
		if p.OfferedFingerprint == "" {
			return p, &cliError{"PIN_NOT_FOUND", fmt.Errorf("%s/%s is %s: nothing waits for review", upstream, tool, p.Status)}
		}
		if p.OfferedFingerprint != fp {
			return p, &cliError{"PIN_NOT_FOUND", fmt.Errorf("%s/%s offers %s, not %s: review it again (nomos mcp pins diff)", upstream, tool, p.OfferedFingerprint, fp)}
		}
		return p, nil
	}
	return pins.Pin{}, &cliError{"PIN_NOT_FOUND", fmt.Errorf("no pinned tool %s/%s", upstream, tool)}
}

func pinError(err error) error {
	if errors.Is(err, pins.ErrNotFound) {
		return &cliError{"PIN_NOT_FOUND", err}
	}
	return &cliError{"PIN_ERROR", err}
}

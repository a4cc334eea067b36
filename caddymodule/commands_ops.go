package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/spf13/cobra"

	"github.com/caddy-nomos/nomos/audit"
	"github.com/caddy-nomos/nomos/internal/approvals"
	"github.com/caddy-nomos/nomos/internal/service"
)

func auditCommands(cmd *cobra.Command) {
	verify := &cobra.Command{
		Use:   "verify [--db <path>] [--key-file <path> | --key-env <name>]",
		Short: "Checks every row of a sqlite audit log against its hash chain and signed checkpoints; exits 1 on any break",
		RunE:  runCLI(runAuditVerify),
	}
	verify.Flags().String("db", dataPath("audit.db"), "sqlite audit database")
	verify.Flags().String("key-file", "", "checkpoint key: the HMAC key, or an Ed25519 public (or private) key as PEM; signatures are checked and the log must be signed to its last row")
	verify.Flags().String("key-env", "", "name of an environment variable holding the checkpoint key, instead of --key-file")
	cmd.AddCommand(verify)
}

func runAuditVerify(cmd *cobra.Command, _ []string) error {
	path, _ := cmd.Flags().GetString("db")
	opts, err := verifyKeyOption(cmd)
	if err != nil {
		return &cliError{"AUDIT_ERROR", err}
	}
	rep, err := audit.VerifySQLite(context.Background(), path, opts...)
	if err != nil {
		return &cliError{"AUDIT_ERROR", err}
	}
	if err := printJSON(cmd.OutOrStdout(), rep, false); err != nil {
		return err
	}
	if !rep.OK {
		return &cliError{"AUDIT_CHAIN_BROKEN", errors.New(rep.Problem)}
	}
	return nil
}

// verifyKeyOption reads the checkpoint key named by --key-file or
// --key-env, if any.
func verifyKeyOption(cmd *cobra.Command) ([]audit.VerifyOption, error) {
	file, _ := cmd.Flags().GetString("key-file")
	env, _ := cmd.Flags().GetString("key-env")
	var material []byte
	switch {
	case file != "" && env != "":
		return nil, errors.New("verify: set --key-file or --key-env, not both")
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("verify: read key: %w", err)
		}
		material = b
	case env != "":
		v, ok := os.LookupEnv(env)
		if !ok || v == "" {
			return nil, fmt.Errorf("verify: environment variable %s is not set", env)
		}
		material = []byte(v)
	default:
		return nil, nil
	}
	k, err := audit.ParseVerifyKey(material)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	return []audit.VerifyOption{audit.VerifyWithKey(k)}, nil
}

func approvalCommands(cmd *cobra.Command) {
	list := &cobra.Command{
		Use:   "list",
		Short: "Lists approvals, newest first",
		RunE:  runCLI(runApprovalsList),
	}
	list.Flags().String("status", "", "only this status: PENDING, APPROVED or DENIED")
	list.Flags().Int("limit", 50, "at most this many records")
	approve := &cobra.Command{
		Use:   "approve <approval_id>",
		Short: "Approves a pending approval",
		Args:  cobra.ExactArgs(1),
		RunE:  runCLI(decideCLI(approvals.Approved)),
	}
	deny := &cobra.Command{
		Use:   "deny <approval_id>",
		Short: "Denies a pending approval",
		Args:  cobra.ExactArgs(1),
		RunE:  runCLI(decideCLI(approvals.Denied)),
	}
	for _, c := range []*cobra.Command{list, approve, deny} {
		c.Flags().String("config", "", "the server's config: use its approval store and record decisions in its audit log")
		c.Flags().String("adapter", "", "config adapter (default: by file name, caddyfile for Caddyfile)")
		c.Flags().String("store", "sqlite", "store kind without --config: sqlite or file")
		c.Flags().String("path", "", "store path without --config (default: the store under Caddy's data directory)")
	}
	for _, c := range []*cobra.Command{approve, deny} {
		c.Flags().String("approver", "", "who decides (default: cli:<os user>)")
	}
	cmd.AddCommand(list, approve, deny)
}

// approvalsCLI is the store the approvals commands work on and, with
// --config, the server's audit recorder that decisions are recorded in.
type approvalsCLI struct {
	store    approvals.Store
	recorder *audit.Recorder
	env      string
	// allowSelf is the config's approvals allow_self_approval; without a
	// config, separation of duties always holds.
	allowSelf bool
	close     func()
}

// openApprovalsCLI opens the server's store (and audit) from --config, or
// a store named by --store and --path.
func openApprovalsCLI(cmd *cobra.Command) (*approvalsCLI, error) {
	config, _ := cmd.Flags().GetString("config")
	if config == "" {
		st, err := openApprovalsStore(cmd)
		if err != nil {
			return nil, err
		}
		return &approvalsCLI{store: st, close: func() { _ = st.Close() }}, nil
	}
	adapter, _ := cmd.Flags().GetString("adapter")
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	app, err := loadNomosApp(ctx, config, adapter, func(a *App) { a.Upstreams, a.Executor, a.Identity, a.Credentials = nil, nil, nil, nil })
	if err != nil {
		cancel()
		return nil, &cliError{"CONFIG_ERROR", err}
	}
	if app.approvals == nil {
		_ = app.Cleanup()
		cancel()
		return nil, &cliError{"APPROVAL_ERROR", errors.New("approvals are not enabled in " + config)}
	}
	return &approvalsCLI{store: app.approvals, recorder: app.recorder, env: app.Environment,
		allowSelf: app.Approvals.AllowSelfApproval, close: func() { _ = app.Cleanup(); cancel() }}, nil
}

func openApprovalsStore(cmd *cobra.Command) (approvals.Store, error) {
	kind, _ := cmd.Flags().GetString("store")
	path, _ := cmd.Flags().GetString("path")
	if kind != "sqlite" && kind != "file" {
		return nil, &cliError{"VALIDATION_ERROR", fmt.Errorf("--store must be sqlite or file, got %q", kind)}
	}
	if path == "" {
		path = dataPath(map[string]string{"sqlite": "approvals.db", "file": "approvals.json"}[kind])
	}
	st, err := openApprovals(kind, path)
	if err != nil {
		return nil, &cliError{"APPROVAL_ERROR", err}
	}
	return st, nil
}

func runApprovalsList(cmd *cobra.Command, _ []string) error {
	c, err := openApprovalsCLI(cmd)
	if err != nil {
		return err
	}
	defer c.close()
	status, _ := cmd.Flags().GetString("status")
	limit, _ := cmd.Flags().GetInt("limit")
	recs, err := c.store.List(context.Background(), approvals.Filter{Status: status, Limit: limit})
	if err != nil {
		return &cliError{"APPROVAL_ERROR", err}
	}
	if recs == nil {
		recs = []approvals.Record{}
	}
	return printJSON(cmd.OutOrStdout(), recs, true)
}

func decideCLI(status string) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		c, err := openApprovalsCLI(cmd)
		if err != nil {
			return err
		}
		defer c.close()
		approver, _ := cmd.Flags().GetString("approver")
		if approver == "" {
			approver = "cli:" + osUser()
		}
		d := service.Decider{Store: c.store, Environment: c.env, AllowSelfApproval: c.allowSelf}
		if c.recorder != nil {
			d.Audit = c.recorder
		}
		rec, err := d.Decide(context.Background(), args[0], status, approver, map[string]any{"decided_via": "cli"})
		if err != nil {
			se := service.AsError(err)
			return &cliError{strings.ToUpper(se.Code), errors.New(se.Msg)}
		}
		return printJSON(cmd.OutOrStdout(), rec, true)
	}
}

func osUser() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return "unknown"
}

package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"os/user"
	"time"

	"github.com/spf13/cobra"

	"github.com/caddy-nomos/nomos/audit"
	"github.com/caddy-nomos/nomos/internal/approvals"
)

func auditCommands(cmd *cobra.Command) {
	verify := &cobra.Command{
		Use:   "verify [--db <path>]",
		Short: "Checks every row of a sqlite audit log against its hash chain; exits 1 on any break",
		RunE:  runCLI(runAuditVerify),
	}
	verify.Flags().String("db", dataPath("audit.db"), "sqlite audit database")
	cmd.AddCommand(verify)
}

func runAuditVerify(cmd *cobra.Command, _ []string) error {
	path, _ := cmd.Flags().GetString("db")
	rep, err := audit.VerifySQLite(context.Background(), path)
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
		c.Flags().String("store", "sqlite", "store kind: sqlite or file")
		c.Flags().String("path", "", "store path (default: the store under Caddy's data directory)")
	}
	for _, c := range []*cobra.Command{approve, deny} {
		c.Flags().String("approver", "", "who decides (default: cli:<os user>)")
	}
	cmd.AddCommand(list, approve, deny)
}

func openApprovalsCLI(cmd *cobra.Command) (approvals.Store, error) {
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
	st, err := openApprovalsCLI(cmd)
	if err != nil {
		return err
	}
	defer st.Close()
	status, _ := cmd.Flags().GetString("status")
	limit, _ := cmd.Flags().GetInt("limit")
	recs, err := st.List(context.Background(), approvals.Filter{Status: status, Limit: limit})
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
		st, err := openApprovalsCLI(cmd)
		if err != nil {
			return err
		}
		defer st.Close()
		approver, _ := cmd.Flags().GetString("approver")
		if approver == "" {
			approver = "cli:" + osUser()
		}
		rec, err := st.Decide(context.Background(), args[0], status, approver, time.Now())
		if err != nil {
			return &cliError{"APPROVAL_ERROR", err}
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

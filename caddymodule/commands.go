package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/caddy-nomos/nomos/internal/executor"
	"github.com/caddy-nomos/nomos/policy"
	"github.com/caddy-nomos/nomos/policy/action"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:      "policy",
		Usage:     "test|explain|lint",
		Short:     "Tests, explains and lints Nomos policy bundles offline",
		CobraFunc: policyCommands,
	})
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:      "audit",
		Usage:     "verify --db <path>",
		Short:     "Verifies the hash chain of a Nomos sqlite audit log",
		CobraFunc: auditCommands,
	})
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:      executor.LauncherCommand,
		Usage:     "<launch spec> | probe",
		Short:     "Internal: confines itself with Landlock, then execs a process.exec command",
		CobraFunc: sandboxExecCommand,
	})
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:      "approvals",
		Usage:     "list|approve <id>|deny <id> [--store sqlite|file] [--path <path>]",
		Short:     "Lists and decides pending Nomos approvals",
		CobraFunc: approvalCommands,
	})
}

// cliError is printed on stderr as "<PREFIX>: <message>"; the command exits 1.
type cliError struct {
	prefix string
	err    error
}

func (e *cliError) Error() string { return e.prefix + ": " + e.err.Error() }

// runCLI adapts a command body to cobra: errors go to stderr in the stable
// form, without cobra's usage dump, and the exit code is 1.
func runCLI(fn func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		err := fn(cmd, args)
		if err != nil {
			cmd.SilenceErrors = true
			fmt.Fprintln(cmd.ErrOrStderr(), err.Error())
		}
		return err
	}
}

func policyCommands(cmd *cobra.Command) {
	test := &cobra.Command{
		Use:   "test --action <action.json> --bundle <bundle> [--bundle <bundle>...]",
		Short: "Prints the decision for one action as a JSON line; exits 0 for any decision",
		RunE:  runCLI(runPolicyTest),
	}
	explain := &cobra.Command{
		Use:   "explain --action <action.json> --bundle <bundle> [--bundle <bundle>...]",
		Short: "Prints why the policy decides an action the way it does",
		RunE:  runCLI(runPolicyExplain),
	}
	for _, c := range []*cobra.Command{test, explain} {
		c.Flags().String("action", "", "action file: the v1 envelope plus principal, agent and environment")
		c.Flags().StringArray("bundle", nil, "policy bundle (repeat for layered bundles, in order)")
	}
	lint := &cobra.Command{
		Use:   "lint <bundle>...",
		Short: "Reports shadowed, unreachable and covered rules (warnings) and duplicate ids (errors)",
		Args:  cobra.MinimumNArgs(1),
		RunE:  runCLI(runPolicyLint),
	}
	cmd.AddCommand(test, explain, lint)
}

// loadActionAndPolicy reads the CLI inputs of policy test and explain.
func loadActionAndPolicy(cmd *cobra.Command) (*action.Action, *policy.Engine, error) {
	actionPath, _ := cmd.Flags().GetString("action")
	bundles, _ := cmd.Flags().GetStringArray("bundle")
	if actionPath == "" || len(bundles) == 0 {
		return nil, nil, &cliError{"VALIDATION_ERROR", errors.New("--action and at least one --bundle are required")}
	}
	data, err := readInput(actionPath)
	if err != nil {
		return nil, nil, &cliError{"VALIDATION_ERROR", err}
	}
	env, id, err := action.DecodeActionFile(data)
	if err != nil {
		return nil, nil, &cliError{"VALIDATION_ERROR", err}
	}
	a, err := action.New(env, id)
	if err != nil {
		prefix := "VALIDATION_ERROR"
		if errors.Is(err, action.ErrNormalization) {
			prefix = "NORMALIZATION_ERROR"
		}
		return nil, nil, &cliError{prefix, err}
	}
	e, err := policy.LoadFiles(bundles, policy.LoadOptions{Environment: id.Environment})
	if err != nil {
		return nil, nil, &cliError{"VALIDATION_ERROR", err}
	}
	return a, e, nil
}

func readInput(path string) ([]byte, error) {
	if path == "-" {
		return io.ReadAll(io.LimitReader(os.Stdin, 1<<20))
	}
	return os.ReadFile(path)
}

// policyTestResult is the one JSON line policy test prints.
type policyTestResult struct {
	Decision           string   `json:"decision"`
	ReasonCode         string   `json:"reason_code"`
	MatchedRuleIDs     []string `json:"matched_rule_ids"`
	PolicyBundleHash   string   `json:"policy_bundle_hash"`
	NormalizedResource string   `json:"normalized_resource"`
}

func runPolicyTest(cmd *cobra.Command, _ []string) error {
	a, e, err := loadActionAndPolicy(cmd)
	if err != nil {
		return err
	}
	d := e.Evaluate(a)
	ids := d.MatchedRuleIDs
	if ids == nil {
		ids = []string{}
	}
	return printJSON(cmd.OutOrStdout(), policyTestResult{d.Decision, d.ReasonCode, ids, d.PolicyBundleHash, a.Resource}, false)
}

func runPolicyExplain(cmd *cobra.Command, _ []string) error {
	a, e, err := loadActionAndPolicy(cmd)
	if err != nil {
		return err
	}
	return printJSON(cmd.OutOrStdout(), e.Explain(a), true)
}

// runPolicyLint prints one JSON line per finding and a summary on stderr;
// it exits 1 when any finding is an error.
func runPolicyLint(cmd *cobra.Command, args []string) error {
	sources := make([]policy.BundleSource, 0, len(args))
	for _, p := range args {
		data, err := os.ReadFile(p)
		if err != nil {
			return &cliError{"VALIDATION_ERROR", err}
		}
		sources = append(sources, policy.BundleSource{Path: p, Data: data})
	}
	findings, err := policy.LintSources(sources, policy.LoadOptions{AllowLocalOverride: true})
	if err != nil {
		return &cliError{"VALIDATION_ERROR", err}
	}
	errs := 0
	for _, f := range findings {
		if f.Severity == policy.SeverityError {
			errs++
		}
		if err := printJSON(cmd.OutOrStdout(), f, false); err != nil {
			return err
		}
	}
	summary := fmt.Errorf("%d error(s), %d warning(s)", errs, len(findings)-errs)
	if errs > 0 {
		return &cliError{"LINT_ERROR", summary}
	}
	fmt.Fprintln(cmd.ErrOrStderr(), "policy lint: "+summary.Error())
	return nil
}

func printJSON(w io.Writer, v any, indent bool) error {
	var b []byte
	var err error
	if indent {
		b, err = json.MarshalIndent(v, "", "  ")
	} else {
		b, err = json.Marshal(v)
	}
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}

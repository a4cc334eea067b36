package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:      "doctor",
		Usage:     "--config <Caddyfile> [--adapter <name>] [--format text|json]",
		Short:     "Checks a Nomos deployment without serving it; exits 0 ok, 1 failures, 2 bad usage",
		CobraFunc: doctorCommand,
	})
}

// Doctor check statuses, from best to worst.
const (
	checkPass = "pass"
	checkWarn = "warn"
	checkFail = "fail"
)

// doctorCheck is one finding. ID is stable (docs/doctor.md lists every
// one); Subject names the bundle, secret owner, sink, upstream or server
// when a check runs once per item.
type doctorCheck struct {
	ID          string `json:"id"`
	Subject     string `json:"subject,omitempty"`
	Status      string `json:"status"`
	Message     string `json:"message"`
	Remediation string `json:"remediation,omitempty"`
	// Evidence lists the facts behind the result (hashes, tool names,
	// assurance evidence). It never holds a secret.
	Evidence []string `json:"evidence,omitempty"`
}

// doctorReport is what nomos doctor prints and the operator UI's
// readiness view shows.
type doctorReport struct {
	Status         string        `json:"status"`
	AssuranceLevel string        `json:"assurance_level,omitempty"`
	Checks         []doctorCheck `json:"checks"`
}

func doctorCommand(cmd *cobra.Command) {
	cmd.Flags().String("config", "", "the Caddyfile or JSON config to check (required)")
	cmd.Flags().String("adapter", "", "config adapter (default: by file name, caddyfile for Caddyfile)")
	cmd.Flags().String("format", "text", "output: text or json")
	// doctor parses its own flags so a bad flag exits 2 like any other
	// usage error; Caddy's wrapper is what turns a status into an exit code.
	cmd.DisableFlagParsing = true
	cmd.RunE = func(c *cobra.Command, args []string) error {
		return caddycmd.WrapCommandFuncForCobra(func(caddycmd.Flags) (int, error) {
			return runDoctorCLI(c, args)
		})(c, args)
	}
}

// runDoctorCLI returns the exit status: 0 when nothing fails, 1 when a
// check fails, 2 for bad usage.
func runDoctorCLI(cmd *cobra.Command, args []string) (int, error) {
	fs := cmd.Flags()
	err := fs.Parse(args)
	if help, _ := fs.GetBool("help"); help || errors.Is(err, pflag.ErrHelp) {
		return 0, cmd.Help()
	}
	if err != nil {
		return 2, fmt.Errorf("doctor: %w", err)
	}
	config, _ := fs.GetString("config")
	adapter, _ := fs.GetString("adapter")
	format, _ := fs.GetString("format")
	switch {
	case fs.NArg() > 0:
		return 2, fmt.Errorf("doctor: unexpected argument %q", fs.Arg(0))
	case config == "":
		return 2, errors.New("doctor: --config is required")
	case format != "text" && format != "json":
		return 2, fmt.Errorf("doctor: --format must be text or json, got %q", format)
	}
	rep := runDoctor(context.Background(), config, adapter)
	if err := printReport(cmd.OutOrStdout(), rep, format); err != nil {
		return 1, err
	}
	if rep.Status == checkFail {
		return 1, errors.New("doctor: at least one check failed")
	}
	return 0, nil
}

func printReport(w io.Writer, rep doctorReport, format string) error {
	if format == "json" {
		return printJSON(w, rep, true)
	}
	return printDoctorText(w, rep)
}

// runDoctor adapts the config and runs every check against it, offline:
// stores are opened and upstreams started as a server would, then closed.
func runDoctor(ctx context.Context, config, adapter string) doctorReport {
	in, check := loadDoctorInput(config, adapter)
	if check.Status == checkFail {
		return finishReport([]doctorCheck{check}, "")
	}
	cctx, cancel := caddy.NewContext(caddy.Context{Context: ctx})
	defer cancel()
	in.ctx = cctx
	checks := append([]doctorCheck{check}, in.run(ctx)...)
	return finishReport(checks, in.assurance())
}

func finishReport(checks []doctorCheck, level string) doctorReport {
	rep := doctorReport{Status: checkPass, AssuranceLevel: level, Checks: checks}
	for _, c := range checks {
		if rank(c.Status) > rank(rep.Status) {
			rep.Status = c.Status
		}
	}
	return rep
}

func rank(status string) int {
	return map[string]int{checkPass: 0, checkWarn: 1, checkFail: 2}[status]
}

// printDoctorText prints one line per check, the remediation indented
// under anything that is not a pass, then a summary.
func printDoctorText(w io.Writer, rep doctorReport) error {
	counts := map[string]int{}
	var b strings.Builder
	for _, c := range rep.Checks {
		counts[c.Status]++
		subject := ""
		if c.Subject != "" {
			subject = " [" + c.Subject + "]"
		}
		fmt.Fprintf(&b, "%-4s  %s%s: %s\n", strings.ToUpper(c.Status), c.ID, subject, c.Message)
		for _, e := range c.Evidence {
			fmt.Fprintf(&b, "        evidence: %s\n", e)
		}
		if c.Status != checkPass && c.Remediation != "" {
			fmt.Fprintf(&b, "        fix: %s\n", c.Remediation)
		}
	}
	if rep.AssuranceLevel != "" {
		fmt.Fprintf(&b, "assurance level: %s\n", rep.AssuranceLevel)
	}
	fmt.Fprintf(&b, "doctor: %d pass, %d warn, %d fail\n", counts[checkPass], counts[checkWarn], counts[checkFail])
	_, err := io.WriteString(w, b.String())
	return err
}

// loadDoctorInput adapts the config and decodes the nomos app without
// provisioning it.
func loadDoctorInput(config, adapter string) (*doctorInput, doctorCheck) {
	c := doctorCheck{ID: "config.load", Subject: config}
	cfgJSON, _, _, err := caddycmd.LoadConfig(config, adapter)
	if err != nil {
		return nil, c.fail(err.Error(), "fix the config: `nomos adapt --config "+config+"` shows the error with file and line")
	}
	in, err := decodeDoctorInput(cfgJSON)
	if err != nil {
		return nil, c.fail(err.Error(), "add a nomos { } global option block with at least one policy set")
	}
	return in, c.pass("config adapts and the nomos app decodes")
}

func decodeDoctorInput(cfgJSON []byte) (*doctorInput, error) {
	var cfg struct {
		Apps map[string]json.RawMessage `json:"apps"`
	}
	if err := json.Unmarshal(cfgJSON, &cfg); err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	raw, ok := cfg.Apps["nomos"]
	if !ok {
		return nil, errors.New("the config has no nomos app (a nomos { } global option)")
	}
	app := new(App)
	if err := caddy.StrictUnmarshalJSON(raw, app); err != nil {
		return nil, fmt.Errorf("decoding the nomos app: %w", err)
	}
	servers, err := serversFromJSON(cfg.Apps["http"])
	if err != nil {
		return nil, err
	}
	app.applyDefaults()
	return &doctorInput{app: app, servers: servers, raw: raw}, nil
}

func (c doctorCheck) pass(msg string, evidence ...string) doctorCheck {
	c.Status, c.Message, c.Evidence = checkPass, msg, evidence
	return c
}

func (c doctorCheck) warn(msg, fix string, evidence ...string) doctorCheck {
	c.Status, c.Message, c.Remediation, c.Evidence = checkWarn, msg, fix, evidence
	return c
}

func (c doctorCheck) fail(msg, fix string, evidence ...string) doctorCheck {
	c.Status, c.Message, c.Remediation, c.Evidence = checkFail, msg, fix, evidence
	return c
}

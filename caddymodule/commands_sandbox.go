package caddymodule

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/caddy-nomos/nomos/internal/executor"
)

// sandboxExecCommand is the landlock launcher the executor starts for each
// confined process.exec run: it takes its arguments raw (the program's argv
// is inside the spec, never parsed as flags), confines itself and execs the
// program. It only returns on failure, which it has already reported on the
// status pipe; exit code 126 is what a shell uses for "cannot execute".
func sandboxExecCommand(cmd *cobra.Command) {
	cmd.Hidden = true
	cmd.DisableFlagParsing = true
	cmd.Args = cobra.ExactArgs(1)
	cmd.RunE = func(_ *cobra.Command, args []string) error {
		err := executor.RunLauncher(args)
		_, _ = os.Stderr.WriteString(err.Error() + "\n")
		os.Exit(126)
		return nil
	}
}

package executor

import (
	"os"
	"testing"
)

// testLauncher runs this test binary as the landlock launcher, as the
// nomos binary runs itself.
var testLauncher = []string{"/proc/self/exe", LauncherCommand}

// TestMain lets the test binary act as the launcher: the executor under test
// re-executes it with LauncherCommand, like nomos' sandbox-exec command.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == LauncherCommand {
		_ = RunLauncher(os.Args[2:])
		os.Exit(126)
	}
	os.Exit(m.Run())
}

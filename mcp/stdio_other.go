//go:build !unix

package mcp

import (
	"os/exec"
	"syscall"
)

// childProcAttr is nil where process groups are not available: only the
// child itself can be ended, not what it started.
func childProcAttr() *syscall.SysProcAttr { return nil }

// groupKiller ends the child process; any signal means kill here.
func groupKiller(cmd *exec.Cmd) func(syscall.Signal) {
	return func(syscall.Signal) {
		if cmd != nil && cmd.Process != nil {
			_ = cmd.Process.Kill()
		}
	}
}

//go:build unix

package mcp

import (
	"os/exec"
	"syscall"
)

// childProcAttr puts a stdio child in its own process group, so closing
// the upstream also ends whatever the child started.
func childProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

// groupKiller returns a function that signals the child's process group.
func groupKiller(cmd *exec.Cmd) func(syscall.Signal) {
	return func(sig syscall.Signal) {
		if cmd == nil || cmd.Process == nil {
			return
		}
		_ = syscall.Kill(-cmd.Process.Pid, sig)
	}
}

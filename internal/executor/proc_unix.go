//go:build unix

package executor

import (
	"errors"
	"os/exec"
	"syscall"
)

const execSupported = true

// setProcAttrs puts the child in a process group of its own, so a timeout
// can kill it with everything it started.
func setProcAttrs(cmd *exec.Cmd, local bool) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if local {
		localSysProcAttr(cmd.SysProcAttr)
	}
}

// killGroup kills the process group led by pid; an empty group is fine.
func killGroup(pid int) error {
	err := syscall.Kill(-pid, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

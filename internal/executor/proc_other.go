//go:build !unix

package executor

import (
	"errors"
	"os/exec"
)

// execSupported is false: without process groups a timeout could not kill
// what a command started, so process.exec is refused.
const execSupported = false

func setProcAttrs(*exec.Cmd, bool) {}

func killGroup(int) error { return errors.New("process groups are not supported") }

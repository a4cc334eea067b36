//go:build !linux

package executor

import (
	"errors"
	"syscall"
	"time"
)

const localProfileSupported = false

func probeContainer() error {
	return errors.New("container evidence can only be collected on linux")
}

func applyRlimits(int, time.Duration) error { return nil }

func localSysProcAttr(*syscall.SysProcAttr) {}

//go:build !linux

package executor

import "errors"

const landlockSupported = false

// RunLauncher fails: Landlock exists on Linux only.
func RunLauncher([]string) error {
	return errors.New("sandbox launcher: landlock needs linux")
}

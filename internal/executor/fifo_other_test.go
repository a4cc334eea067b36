//go:build !unix

package executor

import "testing"

func mkfifo(t *testing.T, _ string) { t.Skip("no FIFOs on this platform") }

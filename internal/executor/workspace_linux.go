//go:build linux

package executor

import (
	"os"
	"strconv"
)

// openedPath asks the kernel where an open file really is, which no rename
// or symlink swap after the open can change.
func openedPath(f *os.File) (string, bool) {
	p, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(f.Fd())))
	return p, err == nil
}

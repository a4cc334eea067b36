//go:build linux

package executor

import (
	"io/fs"
	"os"
	"strconv"
	"syscall"
)

// openedPath asks the kernel where an open file really is, which no rename
// or symlink swap after the open can change.
func openedPath(f *os.File) (string, bool) {
	p, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(f.Fd())))
	return p, err == nil
}

// linkCount is the number of hard links to the file.
func linkCount(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Nlink)
	}
	return 1
}

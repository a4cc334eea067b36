//go:build unix

package mcpstdio

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// LockWriter takes an exclusive, non-blocking advisory lock on
// path+".mcp-stdio.lock" for as long as the process runs or until the
// returned func is called. An audit hash chain must have one writer: a
// second stdio server on the same file would fork it.
func LockWriter(path string) (func(), error) {
	f, err := os.OpenFile(path+".mcp-stdio.lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s is already written by another nomos mcp stdio: %w", path, ErrLocked)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { _ = f.Close() }, nil
}

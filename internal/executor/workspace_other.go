//go:build !linux

package executor

import (
	"io/fs"
	"os"
)

// openedPath is unavailable off Linux; os.Root's confinement stands alone.
func openedPath(*os.File) (string, bool) { return "", false }

// linkCount is unavailable off Linux; hard links are not detected there.
func linkCount(fs.FileInfo) uint64 { return 1 }

//go:build !linux

package executor

import "os"

// openedPath is unavailable off Linux; os.Root's confinement stands alone.
func openedPath(*os.File) (string, bool) { return "", false }

//go:build !unix

package mcpstdio

// LockWriter is a no-op where advisory file locks are not available.
func LockWriter(string) (func(), error) { return func() {}, nil }

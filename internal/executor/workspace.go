package executor

import (
	"errors"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
)

const fileResourcePrefix = "file://workspace/"

// errPathEscapes is how os.Root reports a path that leaves the root; the
// standard library does not export it.
const errPathEscapes = "path escapes from parent"

// filePath turns a normalized file://workspace/<path> resource into a clean
// slash-separated path relative to the workspace root.
func filePath(resource string) (string, *Error) {
	rest, ok := strings.CutPrefix(resource, fileResourcePrefix)
	if !ok {
		return "", fail(CodeInvalidResource, "resource must be a file://workspace/ path")
	}
	return relPath(rest, true)
}

// relPath checks a slash-separated workspace path; escaped unescapes the
// "%25", "%3F" and "%23" a normalized resource carries.
func relPath(p string, escaped bool) (string, *Error) {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		if escaped {
			u, err := url.PathUnescape(s)
			if err != nil {
				return "", fail(CodeInvalidResource, "invalid escape in path")
			}
			s = u
		}
		if s == "" || s == "." || s == ".." || strings.ContainsAny(s, "/\x00") {
			return "", fail(CodeSandboxViolation, "path escape detected")
		}
		segs[i] = s
	}
	return path.Join(segs...), nil
}

// within reports whether p is root or below it; both are absolute and clean.
func within(root, p string) bool {
	rel, err := filepath.Rel(root, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) &&
		!filepath.IsAbs(rel)
}

// confine checks a workspace path before anything touches it: lexically, and
// by resolving the symlinks of its deepest existing ancestor against the
// resolved root. It gives a clear SANDBOX_VIOLATION; the os.Root every
// operation then goes through enforces the same rule without races.
func (e *Executor) confine(rel string) *Error {
	full := filepath.Join(e.root, filepath.FromSlash(rel))
	if !within(e.root, full) {
		return fail(CodeSandboxViolation, "path escape detected")
	}
	real, err := filepath.EvalSymlinks(deepestExisting(full))
	if err != nil {
		return fail(CodeSandboxViolation, "unresolvable symlink in path")
	}
	if !within(e.root, real) {
		return fail(CodeSandboxViolation, "symlink escape detected")
	}
	return nil
}

// deepestExisting returns p or its closest ancestor that exists (as a
// directory entry: a dangling symlink exists and then fails to resolve).
func deepestExisting(p string) string {
	for {
		if _, err := os.Lstat(p); err == nil {
			return p
		}
		parent := filepath.Dir(p)
		if parent == p {
			return p
		}
		p = parent
	}
}

// openRoot opens the workspace for one request. os.Root resolves every path
// component relative to a directory handle and refuses symlinks that leave
// the root, so a path swapped after confine cannot lead outside.
func (e *Executor) openRoot() (*os.Root, *Error) {
	r, err := os.OpenRoot(e.root)
	if err != nil {
		return nil, fail(CodeExecutionError, "open workspace: %v", err)
	}
	return r, nil
}

// fsError maps a filesystem error on rel to an executor error.
func fsError(op, rel string, err error) *Error {
	var pe *fs.PathError
	var le *os.LinkError
	switch {
	case errors.As(err, &pe) && pe.Err.Error() == errPathEscapes,
		errors.As(err, &le) && le.Err.Error() == errPathEscapes:
		return fail(CodeSandboxViolation, "%s %s: path escape detected", op, rel)
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		return fail(CodeNotFound, "%s %s: no such file", op, rel)
	case errors.Is(err, syscall.ELOOP):
		return fail(CodeSandboxViolation, "%s %s: too many symlinks", op, rel)
	}
	return fail(CodeExecutionError, "%s %s: %v", op, rel, errors.Unwrap(err))
}

// openRegular opens rel for reading and checks that it is a regular file
// that is still inside the root.
func (e *Executor) openRegular(root *os.Root, rel string) (*os.File, *Error) {
	f, err := root.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fsError("open", rel, err)
	}
	if xerr := e.checkOpened(f, rel); xerr != nil {
		f.Close()
		return nil, xerr
	}
	return f, nil
}

func (e *Executor) checkOpened(f *os.File, rel string) *Error {
	fi, err := f.Stat()
	if err != nil {
		return fsError("stat", rel, err)
	}
	if !fi.Mode().IsRegular() {
		return fail(CodeInvalidResource, "%s is not a regular file", rel)
	}
	if xerr := e.checkOpenedAt(f, rel); xerr != nil {
		return xerr
	}
	if n := linkCount(fi); n > 1 {
		return fail(CodeSandboxViolation, "%s has %d hard links; policy cannot tell which name it was decided under", rel, n)
	}
	return nil
}

// checkOpenedAt proves that f is what sits at rel, a path whose symlinks
// were resolved when policy decided: the kernel's name for the open file
// must be exactly that path. A symlink or directory swapped in after the
// decision makes the names differ, and the action fails closed.
func (e *Executor) checkOpenedAt(f *os.File, rel string) *Error {
	want := filepath.Join(e.root, filepath.FromSlash(rel))
	p, ok := openedPath(f)
	if !ok {
		return sameFileAt(f, want, rel)
	}
	if p != want {
		if !within(e.root, p) {
			return fail(CodeSandboxViolation, "%s: opened file is outside the workspace", rel)
		}
		return fail(CodeSandboxViolation, "%s: opened file is not the path policy decided on", rel)
	}
	return nil
}

// sameFileAt is the check without the kernel's name of the file: what is
// at path now, its last component not followed, must be the open file.
func sameFileAt(f *os.File, path, rel string) *Error {
	got, err := f.Stat()
	if err != nil {
		return fsError("stat", rel, err)
	}
	now, err := os.Lstat(path)
	if err != nil || !os.SameFile(got, now) {
		return fail(CodeSandboxViolation, "%s: opened file is not the path policy decided on", rel)
	}
	return nil
}

// readAll reads at most limit bytes of rel through root and reports
// whether the file holds more.
func (e *Executor) readAll(root *os.Root, rel string, limit int64) ([]byte, bool, *Error) {
	f, xerr := e.openRegular(root, rel)
	if xerr != nil {
		return nil, false, xerr
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, false, fsError("read", rel, err)
	}
	if int64(len(data)) > limit {
		return data[:limit], true, nil
	}
	return data, false, nil
}

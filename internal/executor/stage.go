package executor

import (
	"crypto/rand"
	"encoding/hex"
	"io/fs"
	"os"
	"path"
)

// maxOriginalBytes bounds the file a write replaces or a patch edits; the
// original is kept in memory so a failed multi-file patch can be undone.
const maxOriginalBytes = 8 << 20

// newFileMode is the mode of files the executors create; a replaced file
// keeps its mode.
const newFileMode fs.FileMode = 0o600

// change is one file's replacement or removal, staged in its own directory
// so that committing it is a single rename or unlink there.
type change struct {
	rel    string
	remove bool
	// dir is the parent directory, held open from staging to commit;
	// dirInfo is its identity at staging time.
	dir     *os.Root
	dirInfo os.FileInfo
	tmp     string
	// original content, for rollback.
	existed  bool
	original []byte
	mode     fs.FileMode
	// createdDirs are the parent directories staging created, deepest last.
	createdDirs []string
	// size is the length of the new content.
	size int64
}

// prepare opens the change of rel: it confines the path, opens (creating if
// needed) the parent directory and records the original. Nothing visible
// changes until commit.
func (e *Executor) prepare(root *os.Root, rel string, remove bool) (*change, *Error) {
	c := &change{rel: rel, remove: remove, mode: newFileMode}
	if xerr := e.confine(rel); xerr != nil {
		return nil, xerr
	}
	if xerr := c.openDir(e, root); xerr != nil {
		return nil, xerr
	}
	if xerr := e.loadOriginal(root, c); xerr != nil {
		c.abort(root)
		return nil, xerr
	}
	return c, nil
}

// op names what the change does, for results and audit.
func (c *change) op() string {
	switch {
	case c.remove:
		return "deleted"
	case c.existed:
		return "modified"
	}
	return "created"
}

func (c *change) dirRel() string { return path.Dir(c.rel) }
func (c *change) base() string   { return path.Base(c.rel) }

// openDir opens (creating if needed) the parent directory through root.
func (c *change) openDir(e *Executor, root *os.Root) *Error {
	if !c.remove {
		created, xerr := mkdirs(root, c.dirRel())
		c.createdDirs = created
		if xerr != nil {
			c.abort(root)
			return xerr
		}
	}
	dir, err := root.OpenRoot(c.dirRel())
	if err != nil {
		c.abort(root)
		return fsError("open directory", c.dirRel(), err)
	}
	c.dir = dir
	if c.dirInfo, err = dir.Stat("."); err != nil {
		c.abort(root)
		return fsError("stat directory", c.dirRel(), err)
	}
	if xerr := c.checkDir(e); xerr != nil {
		c.abort(root)
		return xerr
	}
	return nil
}

// checkDir proves the directory handle is the one at the decided path,
// which has no symlinks: a parent swapped after the decision fails closed.
func (c *change) checkDir(e *Executor) *Error {
	if c.dirRel() == "." {
		return nil
	}
	f, err := c.dir.Open(".")
	if err != nil {
		return fsError("open directory", c.dirRel(), err)
	}
	defer f.Close()
	return e.checkOpenedAt(f, c.dirRel())
}

// mkdirs creates the missing directories of dir, one at a time through
// root, and returns those it created.
func mkdirs(root *os.Root, dir string) ([]string, *Error) {
	var missing []string
	for d := dir; d != "."; d = path.Dir(d) {
		if _, err := root.Lstat(d); err == nil {
			break
		}
		missing = append([]string{d}, missing...)
	}
	for i, d := range missing {
		if err := root.Mkdir(d, 0o755); err != nil {
			return missing[:i], fsError("mkdir", d, err)
		}
	}
	return missing, nil
}

// loadOriginal records what the change replaces.
func (e *Executor) loadOriginal(root *os.Root, c *change) *Error {
	fi, err := c.dir.Lstat(c.base())
	switch {
	case err != nil && c.remove:
		return fsError("delete", c.rel, err)
	case err != nil:
		return nil
	case fi.IsDir():
		return fail(CodeInvalidResource, "%s is a directory", c.rel)
	case fi.Mode()&fs.ModeSymlink != 0:
		return nil // the link itself is replaced; its target is never written
	}
	data, more, xerr := e.readAll(root, c.rel, maxOriginalBytes)
	if xerr != nil {
		return xerr
	}
	if more {
		return fail(CodeInvalidParams, "%s is larger than %d bytes", c.rel, maxOriginalBytes)
	}
	c.existed, c.original, c.mode = true, data, fi.Mode().Perm()
	return nil
}

// writeTemp stages the new content in a temporary file beside the target.
func (c *change) writeTemp(content []byte) *Error {
	c.size = int64(len(content))
	var raw [8]byte
	_, _ = rand.Read(raw[:])
	c.tmp = ".nomos-" + hex.EncodeToString(raw[:]) + ".tmp"
	f, err := c.dir.OpenFile(c.tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, c.mode)
	if err != nil {
		c.tmp = ""
		return fsError("create", c.rel, err)
	}
	_, err = f.Write(content)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fsError("write", c.rel, err)
	}
	return nil
}

// commit makes the change visible with one rename or unlink in the
// directory staged earlier, after checking that the directory is still the
// one at that path: a parent swapped for a symlink since staging is refused.
func (e *Executor) commit(root *os.Root, c *change) *Error {
	if xerr := e.confine(c.rel); xerr != nil {
		return xerr
	}
	now, err := root.Stat(c.dirRel())
	if err != nil || !os.SameFile(now, c.dirInfo) {
		return fail(CodeSandboxViolation, "%s: parent directory changed during the write", c.rel)
	}
	if c.remove {
		err = c.dir.Remove(c.base())
	} else {
		err = c.dir.Rename(c.tmp, c.base())
	}
	if err != nil {
		return fsError("commit", c.rel, err)
	}
	c.tmp = ""
	return nil
}

// abort removes what staging left behind: the temporary file and the
// directories it created, through the handles opened at staging.
func (c *change) abort(root *os.Root) {
	if c.dir != nil {
		if c.tmp != "" {
			_ = c.dir.Remove(c.tmp)
		}
		_ = c.dir.Close()
		c.dir = nil
	}
	for i := len(c.createdDirs) - 1; i >= 0; i-- {
		_ = root.Remove(c.createdDirs[i])
	}
	c.createdDirs = nil
}

// close releases a committed change.
func (c *change) close() {
	if c.dir != nil {
		_ = c.dir.Close()
		c.dir = nil
	}
}

package executor

import (
	"os"
	"strings"
)

// fileChange is one file a write or patch changes. build computes the new
// content from the original read at staging time.
type fileChange struct {
	rel    string
	remove bool
	build  func(original []byte, existed bool) ([]byte, *Error)
}

// fixedContent builds the same content whatever the original.
func fixedContent(content []byte) func([]byte, bool) ([]byte, *Error) {
	return func([]byte, bool) ([]byte, *Error) { return content, nil }
}

// applyChanges stages every change, then commits them in order. If staging
// fails nothing is visible; if a commit fails the committed ones are rolled
// back, so the workspace ends with all of the changes or none of them.
func (e *Executor) applyChanges(fcs []fileChange) ([]*change, *Error) {
	root, xerr := e.openRoot()
	if xerr != nil {
		return nil, xerr
	}
	defer root.Close()
	staged, xerr := e.stageAll(root, fcs)
	if xerr != nil {
		return nil, xerr
	}
	for i, c := range staged {
		if e.hooks.beforeCommit != nil {
			e.hooks.beforeCommit(c.rel)
		}
		if xerr := e.commit(root, c); xerr != nil {
			abortAll(root, staged[i:])
			return nil, e.rollback(root, staged[:i], xerr)
		}
	}
	for _, c := range staged {
		c.close()
	}
	return staged, nil
}

func (e *Executor) stageAll(root *os.Root, fcs []fileChange) ([]*change, *Error) {
	staged := make([]*change, 0, len(fcs))
	for _, fc := range fcs {
		c, xerr := e.stageOne(root, fc)
		if xerr != nil {
			abortAll(root, staged)
			return nil, xerr
		}
		staged = append(staged, c)
	}
	return staged, nil
}

func (e *Executor) stageOne(root *os.Root, fc fileChange) (*change, *Error) {
	c, xerr := e.prepare(root, fc.rel, fc.remove)
	if xerr != nil {
		return nil, xerr
	}
	content, xerr := fc.build(c.original, c.existed)
	if xerr == nil && !fc.remove {
		xerr = c.writeTemp(content)
	}
	if xerr != nil {
		c.abort(root)
		return nil, xerr
	}
	return c, nil
}

func abortAll(root *os.Root, changes []*change) {
	for _, c := range changes {
		c.abort(root)
	}
}

// rollback undoes committed changes, newest first, and returns cause, or a
// louder error naming the files it could not restore.
func (e *Executor) rollback(root *os.Root, done []*change, cause *Error) *Error {
	var failed []string
	for i := len(done) - 1; i >= 0; i-- {
		if !e.undo(root, done[i]) {
			failed = append(failed, done[i].rel)
		}
		done[i].close()
	}
	if len(failed) > 0 {
		return fail(CodeExecutionError, "%s; rollback failed for %s", cause.Message, strings.Join(failed, ", "))
	}
	return cause
}

// undo restores one committed change from the original kept at staging.
func (e *Executor) undo(root *os.Root, c *change) bool {
	if !c.existed {
		err := root.Remove(c.rel)
		c.tmp = ""
		c.abort(root) // also removes the directories staging created
		return err == nil
	}
	r, xerr := e.prepare(root, c.rel, false)
	if xerr != nil {
		return false
	}
	r.mode = c.mode
	ok := r.writeTemp(c.original) == nil && e.commit(root, r) == nil
	r.abort(root)
	return ok
}

package executor

import (
	"bytes"
	"context"
	"fmt"

	"github.com/caddy-nomos/nomos/policy/action"
)

// fsRead reads a workspace file, bounded: it reads a little past the output
// cap so a secret at the cut is still whole when redaction runs. It opens
// the resolved path that was decided.
func (e *Executor) fsRead(_ context.Context, a *action.Action, ts []Target) (*Result, *Error) {
	if xerr := decodeParams(a.Params); xerr != nil {
		return nil, xerr
	}
	named, rel, xerr := e.decidedFilePath(a.Resource, ts)
	if xerr != nil {
		return nil, xerr
	}
	root, xerr := e.openRoot()
	if xerr != nil {
		return nil, xerr
	}
	defer root.Close()
	data, more, xerr := e.readAll(root, rel, e.cfg.MaxOutputBytes+lookahead)
	if xerr != nil {
		return nil, xerr
	}
	return &Result{
		Output:    string(data),
		Truncated: more,
		Metadata: map[string]any{
			"path":          named,
			"resolved_path": rel,
			"bytes_read":    len(data),
			"lines_read":    bytes.Count(data, []byte("\n")),
		},
	}, nil
}

// decidedFilePath is the workspace path a file resource names and the
// confined, resolved path that was decided for it.
func (e *Executor) decidedFilePath(resource string, ts []Target) (string, string, *Error) {
	named, xerr := filePath(resource)
	if xerr != nil {
		return "", "", xerr
	}
	rel, xerr := resolvedOf(ts, named)
	if xerr != nil {
		return "", "", xerr
	}
	return named, rel, e.confine(rel)
}

// fsWrite replaces a workspace file atomically: the content goes to a
// temporary file in the same directory, which is then renamed over it.
func (e *Executor) fsWrite(_ context.Context, a *action.Action, ts []Target) (*Result, *Error) {
	var content string
	if xerr := decodeParams(a.Params, field{name: "content", dst: &content, required: true}); xerr != nil {
		return nil, xerr
	}
	if xerr := e.checkContent(content); xerr != nil {
		return nil, xerr
	}
	_, rel, xerr := e.decidedFilePath(a.Resource, ts)
	if xerr != nil {
		return nil, xerr
	}
	changes, xerr := e.applyChanges([]fileChange{{rel: rel, build: fixedContent([]byte(content))}})
	if xerr != nil {
		return nil, xerr
	}
	return changesResult(changes), nil
}

func (e *Executor) checkContent(content string) *Error {
	if content == "" {
		return fail(CodeInvalidParams, "params: content must not be empty")
	}
	if int64(len(content)) > e.cfg.MaxOutputBytes {
		return fail(CodeInvalidParams, "params: content exceeds max bytes (%d)", e.cfg.MaxOutputBytes)
	}
	return nil
}

// changesResult summarizes written files; it never echoes their content.
func changesResult(changes []*change) *Result {
	var written int64
	files := make([]map[string]any, len(changes))
	summary := ""
	for i, c := range changes {
		op := c.op()
		files[i] = map[string]any{"path": c.rel, "op": op, "bytes": c.size}
		written += c.size
		summary += fmt.Sprintf("%s %s (%d bytes)\n", op, c.rel, c.size)
	}
	return &Result{
		Output:       summary,
		BytesWritten: written,
		Metadata:     map[string]any{"files": files, "bytes_written": written},
	}
}

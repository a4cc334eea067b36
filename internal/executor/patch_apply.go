package executor

import (
	"context"
	"fmt"
	"strings"

	"github.com/caddy-nomos/nomos/policy/action"
)

// WorkspaceRepo is the only repo:// resource repo.apply_patch accepts: the
// executor has one workspace, and a resource naming another repo would
// mislead whoever reads the policy or the audit.
const WorkspaceRepo = "repo://local/workspace"

// applyPatch applies a unified diff, or replaces one whole file, atomically
// across every file it touches.
// Every file is written at the resolved path that was decided for it.
func (e *Executor) applyPatch(_ context.Context, a *action.Action, ts []Target) (*Result, *Error) {
	var patch, path, content *string
	xerr := decodeParams(a.Params,
		field{name: "patch", dst: &patch}, field{name: "path", dst: &path}, field{name: "content", dst: &content})
	if xerr != nil {
		return nil, xerr
	}
	if a.Resource != WorkspaceRepo {
		return nil, fail(CodeInvalidResource, "repo.apply_patch applies to %s only", WorkspaceRepo)
	}
	fcs, xerr := e.patchChanges(patch, path, content)
	if xerr != nil {
		return nil, xerr
	}
	for i := range fcs {
		if fcs[i].rel, xerr = resolvedOf(ts, fcs[i].rel); xerr != nil {
			return nil, xerr
		}
	}
	changes, xerr := e.applyChanges(fcs)
	if xerr != nil {
		return nil, xerr
	}
	return changesResult(changes), nil
}

// patchChanges turns either params form into file changes.
func (e *Executor) patchChanges(patch, path, content *string) ([]fileChange, *Error) {
	switch {
	case patch != nil && (path != nil || content != nil):
		return nil, fail(CodeInvalidParams, "params: give either patch, or path and content")
	case patch != nil:
		return diffChanges(*patch)
	case path == nil || content == nil:
		return nil, fail(CodeInvalidParams, "params: patch, or path and content, are required")
	}
	if xerr := e.checkContent(*content); xerr != nil {
		return nil, xerr
	}
	rel, xerr := patchTarget(*path)
	if xerr != nil {
		return nil, xerr
	}
	return []fileChange{{rel: rel, build: fixedContent([]byte(*content))}}, nil
}

// patchTarget reads a path from params the way the caller did when it
// checked policy (action.MCPFileShorthand), so both see the same file.
func patchTarget(p string) (string, *Error) {
	res, err := action.MCPFileShorthand(p)
	if err != nil {
		return "", fail(CodeInvalidParams, "params: path: %v", err)
	}
	return filePath(res)
}

func diffChanges(patch string) ([]fileChange, *Error) {
	files, err := parsePatch(patch)
	if err != nil {
		return nil, fail(CodeInvalidParams, "%v", err)
	}
	fcs := make([]fileChange, len(files))
	for i := range files {
		rel, xerr := patchTarget(files[i].target())
		if xerr != nil {
			return nil, xerr
		}
		fp := files[i]
		fcs[i] = fileChange{rel: rel, remove: fp.newPath == "", build: fp.build}
	}
	return fcs, nil
}

// build applies the file patch to the original content.
func (fp *filePatch) build(original []byte, existed bool) ([]byte, *Error) {
	switch {
	case fp.oldPath == "" && existed:
		return nil, fail(CodeInvalidParams, "patch: %s already exists", fp.target())
	case fp.oldPath != "" && !existed:
		return nil, fail(CodeNotFound, "patch: %s does not exist", fp.target())
	}
	out, err := applyHunks(string(original), fp.hunks)
	if err != nil {
		return nil, fail(CodeInvalidParams, "patch: %s: %v", fp.target(), err)
	}
	if fp.newPath == "" && out != "" {
		return nil, fail(CodeInvalidParams, "patch: deleting %s must remove every line", fp.target())
	}
	return []byte(out), nil
}

// applyHunks applies hunks in order with exact context and no fuzz. A hunk
// whose line numbers are off still applies if its whole old text occurs
// exactly once after the previous hunk, as with git apply.
func applyHunks(original string, hunks []hunk) (string, error) {
	lines := splitLinesKeep(original)
	var out []string
	pos := 0
	for i, h := range hunks {
		at, err := locate(lines, pos, h)
		if err != nil {
			return "", fmt.Errorf("hunk %d: %w", i+1, err)
		}
		out = append(out, lines[pos:at]...)
		out = append(out, h.new...)
		pos = at + len(h.old)
	}
	out = append(out, lines[pos:]...)
	return strings.Join(out, ""), nil
}

// locate finds where the hunk's old lines are, at or after pos.
func locate(lines []string, pos int, h hunk) (int, error) {
	want := h.oldStart - 1
	if h.oldLines == 0 {
		want = h.oldStart // a pure insertion goes after line oldStart
	}
	if want >= pos && matchesAt(lines, want, h.old) {
		return want, nil
	}
	if len(h.old) == 0 {
		return 0, fmt.Errorf("insertion point %d is out of range", h.oldStart)
	}
	found := -1
	for i := pos; i+len(h.old) <= len(lines); i++ {
		if !matchesAt(lines, i, h.old) {
			continue
		}
		if found >= 0 {
			return 0, fmt.Errorf("context %q matches more than once", firstLine(h.old))
		}
		found = i
	}
	if found < 0 {
		return 0, fmt.Errorf("context %q does not match", firstLine(h.old))
	}
	return found, nil
}

func matchesAt(lines []string, at int, want []string) bool {
	if at < 0 || at+len(want) > len(lines) {
		return false
	}
	for i, w := range want {
		if lines[at+i] != w {
			return false
		}
	}
	return true
}

func firstLine(lines []string) string {
	return strings.TrimSuffix(lines[0], "\n")
}

// splitLinesKeep splits s into lines that keep their "\n".
func splitLinesKeep(s string) []string {
	parts := strings.SplitAfter(s, "\n")
	if parts[len(parts)-1] == "" {
		parts = parts[:len(parts)-1]
	}
	return parts
}

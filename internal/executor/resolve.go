package executor

import (
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/caddy-nomos/nomos/policy/action"
)

// Kinds of access a Target names.
const (
	AccessRead  = "read"
	AccessWrite = "write"
	AccessCwd   = "cwd"
)

// Target is one workspace path an action opens: as the action names it and
// as the filesystem resolves it now. Policy decides on both (deny wins), and
// the executor opens Resolved only, refusing the action if the workspace
// resolves differently by then.
type Target struct {
	// Access is AccessRead, AccessWrite or AccessCwd.
	Access string
	// Path is the workspace-relative path the action names.
	Path string
	// Resolved is Path with every symlink resolved. A write replaces its
	// last component rather than following it, so only its parent is
	// resolved; a missing path keeps its missing tail as named.
	Resolved string
	// Resource is Resolved as a normalized file://workspace/ resource.
	Resource string
}

// Targets resolves every workspace path a built-in action opens: the file
// of fs.read and fs.write, every file repo.apply_patch touches, and the
// working directory of process.exec. Other actions have none. A path that
// resolves outside the workspace, or to a name policy could not express, is
// an *Error (SANDBOX_VIOLATION or invalid_resource).
func (e *Executor) Targets(a *action.Action) ([]Target, error) {
	ts, xerr := e.targets(a)
	if xerr != nil {
		return nil, e.redactError(e.red, xerr)
	}
	return ts, nil
}

func (e *Executor) targets(a *action.Action) ([]Target, *Error) {
	if a == nil {
		return nil, fail(CodeInvalidParams, "no action")
	}
	if _, ok := e.files[a.ActionType]; ok {
		if xerr := checkNormalized(a); xerr != nil {
			return nil, xerr
		}
	}
	var ts []Target
	var xerr *Error
	switch a.ActionType {
	case action.TypeFSRead, action.TypeFSWrite:
		rel, xerr := filePath(a.Resource)
		if xerr != nil {
			return nil, xerr
		}
		access := AccessRead
		if a.ActionType == action.TypeFSWrite {
			access = AccessWrite
		}
		t, xerr := e.target(access, rel)
		if xerr != nil {
			return nil, xerr
		}
		ts = []Target{t}
	case action.TypeRepoApplyPatch:
		ts, xerr = e.patchTargets(a)
	case action.TypeProcessExec:
		return e.cwdTargets(a)
	}
	if xerr != nil {
		return nil, xerr
	}
	var writes []string
	for _, t := range ts {
		if t.Access == AccessWrite {
			writes = append(writes, t.Resolved)
		}
	}
	if xerr := e.plantsRepository(writes); xerr != nil {
		return nil, xerr
	}
	return ts, nil
}

// target resolves one path.
func (e *Executor) target(access, rel string) (Target, *Error) {
	resolved, xerr := e.resolve(rel, access != AccessWrite)
	if xerr != nil {
		return Target{}, xerr
	}
	res, err := action.MCPFileShorthand(resolved)
	if err != nil {
		return Target{}, fail(CodeInvalidResource, "%s resolves to a name policy cannot express", rel)
	}
	if back, xerr := filePath(res); xerr != nil || back != resolved {
		return Target{}, fail(CodeInvalidResource, "%s resolves to a name policy cannot express", rel)
	}
	return Target{Access: access, Path: rel, Resolved: resolved, Resource: res}, nil
}

// gitDirMarkers are the sets of names that make git take a directory for
// a repository (its is_git_directory): HEAD, objects/ and refs/, or HEAD
// and a commondir file naming where those are.
var gitDirMarkers = [][]string{{"HEAD", "objects", "refs"}, {"HEAD", "commondir"}}

// plantsRepository refuses writes (the resolved paths of one action) that
// would create git metadata under any name: a ".git" in another letter
// case (the same directory on a case-insensitive file system), or a
// directory that would then hold HEAD, objects/ and refs/, an embedded
// repository whose config (core.fsmonitor, core.pager) runs a command when
// a developer, a shell prompt or an editor runs git inside it. A deny rule
// on .git/** cannot see either. The writes are weighed together, on the
// disk as it will be once all of them exist: a patch creating HEAD,
// objects/x and refs/x at once plants as surely as three writes one after
// the other (writes of separate actions are serialized, see writeMu).
func (e *Executor) plantsRepository(rels []string) *Error {
	adds := map[string][]string{} // directory -> the names the writes create in it
	for _, rel := range rels {
		dir := ""
		for _, name := range strings.Split(rel, "/") {
			adds[dir] = append(adds[dir], name)
			dir = path.Join(dir, name)
		}
	}
	for _, rel := range rels {
		parts := strings.Split(rel, "/")
		if slices.Contains(parts, ".git") {
			continue // a real .git: policy decides on it (base.yaml denies writes)
		}
		dir := ""
		for _, name := range parts {
			if strings.EqualFold(name, ".git") || e.wouldBeGitDir(dir, adds[dir]) {
				return fail(CodeSandboxViolation, "%s would plant git repository metadata in the workspace", rel)
			}
			dir = path.Join(dir, name)
		}
	}
	return nil
}

// wouldBeGitDir reports whether workspace directory dir holds every marker
// of one set once the names adding (written into it) exist.
func (e *Executor) wouldBeGitDir(dir string, adding []string) bool {
	full := filepath.Join(e.root, filepath.FromSlash(dir))
	return slices.ContainsFunc(gitDirMarkers, func(set []string) bool {
		return !slices.ContainsFunc(set, func(m string) bool {
			if slices.ContainsFunc(adding, func(a string) bool { return strings.EqualFold(a, m) }) {
				return false
			}
			_, err := os.Lstat(filepath.Join(full, m))
			return err != nil
		})
	})
}

// resolve returns rel with its symlinks resolved, confined to the root. A
// missing tail is kept as named: it cannot be a symlink yet, and the open
// later proves it still is not.
func (e *Executor) resolve(rel string, followLast bool) (string, *Error) {
	if xerr := e.confine(rel); xerr != nil {
		return "", xerr
	}
	if !followLast {
		dir, base := path.Split(rel)
		if dir == "" {
			return rel, nil
		}
		rd, xerr := e.resolve(strings.TrimSuffix(dir, "/"), true)
		return path.Join(rd, base), xerr
	}
	full := filepath.Join(e.root, filepath.FromSlash(rel))
	existing := deepestExisting(full)
	real, err := filepath.EvalSymlinks(existing)
	if err != nil {
		return "", fail(CodeSandboxViolation, "unresolvable symlink in path")
	}
	tail, err := filepath.Rel(existing, full)
	if err != nil {
		return "", fail(CodeSandboxViolation, "path escape detected")
	}
	out := filepath.Join(real, tail)
	if !within(e.root, out) {
		return "", fail(CodeSandboxViolation, "symlink escape detected")
	}
	r, err := filepath.Rel(e.root, out)
	if err != nil || r == "." {
		return "", fail(CodeInvalidResource, "%s resolves to the workspace root", rel)
	}
	return filepath.ToSlash(r), nil
}

// patchTargets resolves every file a patch touches, read the same way
// applyPatch reads them.
func (e *Executor) patchTargets(a *action.Action) ([]Target, *Error) {
	var patch, p, content *string
	xerr := decodeParams(a.Params,
		field{name: "patch", dst: &patch}, field{name: "path", dst: &p}, field{name: "content", dst: &content})
	if xerr != nil {
		return nil, xerr
	}
	var rels []string
	switch {
	case patch != nil:
		files, err := parsePatch(*patch)
		if err != nil {
			return nil, fail(CodeInvalidParams, "%v", err)
		}
		for i := range files {
			rel, xerr := patchTarget(files[i].target())
			if xerr != nil {
				return nil, xerr
			}
			rels = append(rels, rel)
		}
	case p != nil:
		rel, xerr := patchTarget(*p)
		if xerr != nil {
			return nil, xerr
		}
		rels = append(rels, rel)
	}
	return e.targetsOf(AccessWrite, rels)
}

// targetsOf resolves several paths. Two names for one file (through a
// symlink) are refused: the change would be staged twice.
func (e *Executor) targetsOf(access string, rels []string) ([]Target, *Error) {
	ts := make([]Target, 0, len(rels))
	seen := map[string]string{}
	for _, rel := range slices.Sorted(slices.Values(rels)) {
		t, xerr := e.target(access, rel)
		if xerr != nil {
			return nil, xerr
		}
		if other, dup := seen[t.Resolved]; dup {
			return nil, fail(CodeInvalidParams, "patch: %s and %s are the same file", other, rel)
		}
		seen[t.Resolved] = rel
		ts = append(ts, t)
	}
	return ts, nil
}

// cwdTargets resolves the working directory of process.exec. A working
// directory reached through a symlink is refused outright: no policy rule
// names working directories, so there is nothing to decide the resolved
// one on.
func (e *Executor) cwdTargets(a *action.Action) ([]Target, *Error) {
	p, xerr := decodeExecParams(a.Params)
	if xerr != nil {
		return nil, xerr
	}
	real, rel, xerr := e.execDir(p.cwd)
	if xerr != nil || rel == "." {
		return nil, xerr
	}
	r, err := filepath.Rel(e.root, real)
	if err != nil || filepath.ToSlash(r) != rel {
		return nil, fail(CodeSandboxViolation, "cwd %s passes through a symlink", rel)
	}
	return []Target{{Access: AccessCwd, Path: rel, Resolved: rel}}, nil
}

// checkDecided refuses an action whose paths resolve differently now than
// when policy decided: a symlink swapped in between fails closed.
func (e *Executor) checkDecided(a *action.Action, decided []Target) ([]Target, *Error) {
	now, xerr := e.targets(a)
	if xerr != nil {
		return nil, xerr
	}
	if !slices.Equal(now, decided) {
		return nil, fail(CodeSandboxViolation, "workspace paths changed between the decision and execution")
	}
	return now, nil
}

// resolvedOf is the resolved path decided for the named path.
func resolvedOf(ts []Target, rel string) (string, *Error) {
	for _, t := range ts {
		if t.Path == rel {
			return t.Resolved, nil
		}
	}
	return "", fail(CodeSandboxViolation, "%s was not decided", rel)
}

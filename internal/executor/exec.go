package executor

import (
	"context"
	"errors"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/caddy-nomos/nomos/audit"
	"github.com/caddy-nomos/nomos/internal/credentials"
	"github.com/caddy-nomos/nomos/policy"
	"github.com/caddy-nomos/nomos/policy/action"
)

// drainGrace is how long output pipes may stay open after the process group
// was killed (only a process that left the group can hold them).
const drainGrace = time.Second

// Exec enforcement modes, reported in metadata.
const (
	execModeConstraints = "derived_exec_constraints"
	execModeAllowlist   = "legacy_exec_allowlist"
	execModePolicyOnly  = "policy_only"
)

type execParams struct {
	argv    []string
	cwd     *string
	envKeys []string
	leases  []string
}

// processExec runs argv directly (never through a shell) in the workspace,
// with an empty environment except allowlisted keys and leased secrets.
func (e *Executor) processExec(ctx context.Context, a *action.Action, d policy.Decision) (*Result, *Error) {
	if !execSupported {
		return nil, fail(CodeUnsupportedAction, "process.exec needs process groups, which this platform lacks")
	}
	p, xerr := decodeExecParams(a.Params)
	if xerr != nil {
		return nil, xerr
	}
	mode, xerr := authorizeArgv(p.argv, d.Obligations)
	if xerr != nil {
		return nil, xerr
	}
	dir, rel, xerr := e.execDir(p.cwd)
	if xerr != nil {
		return nil, xerr
	}
	env, keys, xerr := e.execEnv(p, a)
	if xerr != nil {
		return nil, xerr
	}
	var box *confinement
	if e.profile >= profileLandlock {
		if box, xerr = e.landlockBox(p.argv, dir, env, d.Obligations); xerr != nil {
			return nil, xerr
		}
		defer box.cleanup()
	}
	res, xerr := e.runCommand(ctx, p.argv, dir, env, box)
	if xerr != nil {
		return nil, xerr
	}
	if box != nil {
		res.Metadata["landlock_abi"] = e.landlockABI
		res.Metadata["landlock_write_paths"] = box.writeRel
		res.Metadata["landlock_connect_tcp"] = box.spec.ConnectTCP
	}
	res.Metadata["exec_enforcement_mode"] = mode
	res.Metadata["cwd"] = rel
	res.Metadata["env_keys"] = keys
	res.Metadata["credential_lease_ids"] = p.leases
	return res, nil
}

func decodeExecParams(raw []byte) (execParams, *Error) {
	var p execParams
	xerr := decodeParams(raw,
		field{name: "argv", dst: &p.argv, required: true},
		field{name: "cwd", dst: &p.cwd},
		field{name: "env_allowlist_keys", dst: &p.envKeys},
		field{name: "credential_lease_ids", dst: &p.leases})
	if xerr != nil {
		return p, xerr
	}
	if len(p.argv) == 0 || p.argv[0] == "" {
		return p, fail(CodeInvalidParams, "params: argv must name a program")
	}
	for _, s := range slices.Concat(p.argv, p.envKeys, p.leases) {
		if strings.ContainsRune(s, 0) {
			return p, fail(CodeInvalidParams, "params: NUL byte in argv, env_allowlist_keys or credential_lease_ids")
		}
	}
	for _, k := range p.envKeys {
		if !envKeyPattern.MatchString(k) {
			return p, fail(CodeInvalidParams, "params: invalid env key %q", k)
		}
	}
	return p, nil
}

// authorizeArgv re-checks argv against the decision at run time: the exec
// constraints derived from exec_match (see policy.MatchArgv: wildcards admit
// options only where the pattern says "-*" or "-**"), else the legacy exec
// allowlist.
func authorizeArgv(argv []string, ob policy.Obligations) (string, *Error) {
	if ob.ExecConstraints != nil {
		for _, pattern := range ob.ExecConstraints.ArgvPatterns {
			if policy.MatchArgv(pattern, argv) {
				return execModeConstraints, nil
			}
		}
		return "", fail(CodeExecConstraintViolation, "argv matches none of the exec constraints")
	}
	if len(ob.ExecAllowlist) > 0 {
		for _, prefix := range ob.ExecAllowlist {
			if legacyPrefixAdmits(prefix, argv) {
				return execModeAllowlist, nil
			}
		}
		return "", fail(CodeExecNotAllowlisted, "argv starts with no prefix of the exec allowlist, or passes an option after it")
	}
	return execModePolicyOnly, nil
}

// legacyPrefixAdmits: argv starts with the prefix, and what follows it is
// operands only. Like a wildcard in exec_match, the open tail of a legacy
// prefix never admits an option (--output=, -c, --exec); an option the
// operator allows is written into the prefix.
func legacyPrefixAdmits(prefix, argv []string) bool {
	if len(prefix) == 0 || len(argv) < len(prefix) || !slices.Equal(argv[:len(prefix)], prefix) {
		return false
	}
	return !slices.ContainsFunc(argv[len(prefix):], policy.IsOption)
}

// execDir is the confined working directory: the root, or a workspace
// directory given relative to it.
func (e *Executor) execDir(cwd *string) (string, string, *Error) {
	if cwd == nil {
		return e.root, ".", nil
	}
	c := strings.TrimPrefix(*cwd, "./")
	if c == "" || c == "." {
		return e.root, ".", nil
	}
	if filepath.IsAbs(c) {
		return "", "", fail(CodeSandboxViolation, "cwd escape detected")
	}
	rel, xerr := relPath(strings.TrimSuffix(c, "/"), false)
	if xerr != nil {
		return "", "", fail(CodeSandboxViolation, "cwd escape detected")
	}
	if xerr := e.confine(rel); xerr != nil {
		return "", "", xerr
	}
	real, err := filepath.EvalSymlinks(filepath.Join(e.root, filepath.FromSlash(rel)))
	if err != nil {
		return "", "", fail(CodeNotFound, "cwd %s does not exist", rel)
	}
	if fi, err := os.Stat(real); err != nil || !fi.IsDir() || !within(e.root, real) {
		return "", "", fail(CodeInvalidParams, "cwd %s is not a workspace directory", rel)
	}
	return real, rel, nil
}

// execEnv builds the child environment: the requested keys that the config
// also allowlists, copied from this process, then the leased secrets.
func (e *Executor) execEnv(p execParams, a *action.Action) ([]string, []string, *Error) {
	vars := map[string]string{}
	for _, k := range p.envKeys {
		if v, ok := os.LookupEnv(k); ok && slices.Contains(e.cfg.EnvAllowlist, k) {
			vars[k] = v
		}
	}
	if len(p.leases) > 0 {
		if xerr := e.materialize(p.leases, a, vars); xerr != nil {
			return nil, nil, xerr
		}
	}
	keys := slices.Sorted(maps.Keys(vars))
	env := make([]string, len(keys))
	for i, k := range keys {
		env[i] = k + "=" + vars[k]
	}
	return env, keys, nil
}

func (e *Executor) materialize(leases []string, a *action.Action, vars map[string]string) *Error {
	if e.broker == nil {
		return fail(CodeCredentialsUnavailable, "no credential broker is configured")
	}
	env, _, err := e.broker.Materialize(leases, binding(a))
	if err != nil {
		return fail(CodeCredentialsUnavailable, "%v", err)
	}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	return nil
}

func binding(a *action.Action) credentials.Binding {
	return credentials.Binding{Principal: a.Principal, Agent: a.Agent, Environment: a.Environment, TraceID: a.TraceID}
}

// runCommand starts argv in its own process group and collects its output.
// The group is killed on timeout and again when the command exits, so
// nothing it started outlives it. With a confinement, the launcher starts
// first and execs argv once Landlock holds.
func (e *Executor) runCommand(ctx context.Context, argv []string, dir string, env []string, box *confinement) (*Result, *Error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.ExecTimeout)
	defer cancel()
	name, args := argv[0], argv[1:]
	if box != nil {
		name, args, env = e.cfg.Launcher[0], append(slices.Clone(e.cfg.Launcher[1:]), box.specJSON), box.env
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir, cmd.Env = dir, env
	setProcAttrs(cmd, e.profile >= profileLocal)
	cmd.Cancel = func() error { return killGroup(cmd.Process.Pid) }
	out, xerr := e.startCommand(cmd, box)
	if xerr != nil {
		return nil, xerr
	}
	start := time.Now()
	waitErr := cmd.Wait()
	_ = killGroup(cmd.Process.Pid)
	stdout, stderr := out.collect()
	timedOut := errors.Is(ctx.Err(), context.DeadlineExceeded)
	return execResult(cmd, timedOut, waitErr, stdout, stderr, time.Since(start)), nil
}

// startCommand wires the output pipes, starts cmd, applies the local
// profile's limits and, with a confinement, waits until the launcher has
// exec'd the program under Landlock.
func (e *Executor) startCommand(cmd *exec.Cmd, box *confinement) (*outputs, *Error) {
	out, err := newOutputs(e.cfg.MaxOutputBytes + lookahead)
	if err != nil {
		return nil, fail(CodeExecutionError, "output pipes: %v", err)
	}
	cmd.Stdout, cmd.Stderr = out.stdout.w, out.stderr.w
	var status *os.File
	if box != nil {
		if status, err = box.attachStatus(cmd); err != nil {
			out.closeWriters()
			out.collect()
			return nil, fail(CodeExecutionError, "sandbox status pipe: %v", err)
		}
		defer status.Close()
	}
	err = cmd.Start()
	out.closeWriters()
	closeExtraFiles(cmd)
	if err != nil {
		out.collect()
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			return nil, fail(CodeNotFound, "executable %q not found", cmd.Args[0])
		}
		return nil, fail(CodeExecutionError, "start: %v", err)
	}
	out.drain()
	if xerr := e.afterStart(cmd, out); xerr != nil {
		return nil, xerr
	}
	if status != nil {
		if xerr := awaitExec(cmd, out, status); xerr != nil {
			return nil, xerr
		}
	}
	if e.hooks.afterStart != nil {
		e.hooks.afterStart(cmd.Process.Pid)
	}
	return out, nil
}

// afterStart applies the local profile's limits to a started child.
func (e *Executor) afterStart(cmd *exec.Cmd, out *outputs) *Error {
	if e.profile < profileLocal {
		return nil
	}
	if err := applyRlimits(cmd.Process.Pid, e.cfg.ExecTimeout); err != nil {
		abandon(cmd, out)
		return fail(CodeExecutionError, "local sandbox limits: %v", err)
	}
	return nil
}

// abandon kills a child that must not run on and reaps it.
func abandon(cmd *exec.Cmd, out *outputs) {
	_ = killGroup(cmd.Process.Pid)
	_ = cmd.Wait()
	out.collect()
}

func closeExtraFiles(cmd *exec.Cmd) {
	for _, f := range cmd.ExtraFiles {
		_ = f.Close()
	}
}

func execResult(cmd *exec.Cmd, timedOut bool, waitErr error, stdout, stderr *capturedOutput, took time.Duration) *Result {
	code := cmd.ProcessState.ExitCode()
	class := audit.ResultSuccess
	switch {
	case timedOut:
		class = audit.ResultExecTimeout
	case code != 0 || waitErr != nil:
		class = audit.ResultExecutionError
	}
	return &Result{
		Stdout:         string(stdout.data),
		Stderr:         string(stderr.data),
		Truncated:      stdout.more || stderr.more,
		ExitCode:       &code,
		Classification: class,
		Metadata: map[string]any{
			"exit_code":    code,
			"timed_out":    timedOut,
			"duration_ms":  took.Milliseconds(),
			"stdout_bytes": stdout.total,
			"stderr_bytes": stderr.total,
		},
	}
}

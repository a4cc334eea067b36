package executor

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"time"
)

// sandboxProfile is what isolation the host provides, ordered by strength.
type sandboxProfile int

const (
	profileNone sandboxProfile = iota
	profileLocal
	profileLandlock
	profileContainer
)

// Resource limits the local profile sets on process.exec children.
const (
	rlimitFileBytes = 256 << 20
	rlimitOpenFiles = 1024
)

var profileNames = []string{"none", "local", "landlock", "container"}

// probeTimeout bounds the start-up run of the launcher's Landlock probe.
const probeTimeout = 10 * time.Second

func (p sandboxProfile) String() string { return profileNames[p] }

func parseProfile(s string) (sandboxProfile, bool) {
	for i, name := range profileNames {
		if s == name {
			return sandboxProfile(i), true
		}
	}
	return 0, false
}

// available lists the profiles an obligation may require on this host.
func (p sandboxProfile) available() []string {
	return append([]string(nil), profileNames[:p+1]...)
}

// guarantees states what the profile adds, in the words of
// docs/executors.md. The executor checks of every profile apply always.
func (p sandboxProfile) guarantees() []string {
	g := []string{
		"workspace_confinement", "empty_exec_env", "process_group_kill", "exec_timeout",
		"output_caps", "net_allowlist", "public_ip_only",
	}
	if p >= profileLocal {
		g = append(g, "exec_rlimits", "exec_parent_death_signal")
	}
	if p >= profileLandlock {
		g = append(g, "exec_landlock_fs", "exec_landlock_tcp", "exec_git_hardening")
	}
	if p >= profileContainer {
		g = append(g, "host_container_evidence")
	}
	return g
}

func (e *Executor) setProfile() error {
	p, ok := parseProfile(e.cfg.SandboxProfile)
	if !ok {
		return fmt.Errorf("executor: unknown sandbox profile %q (want none, local, landlock or container)", e.cfg.SandboxProfile)
	}
	if p >= profileLocal && !localProfileSupported {
		return fmt.Errorf("executor: sandbox profile %q needs linux", p)
	}
	if p == profileContainer {
		probe := e.hooks.probeContainer
		if probe == nil {
			probe = probeContainer
		}
		if err := probe(); err != nil {
			return fmt.Errorf("executor: sandbox profile container: the host does not provide it: %w", err)
		}
	}
	if p >= profileLandlock {
		abi, err := e.probeLandlock()
		if err != nil {
			return fmt.Errorf("executor: sandbox profile %s: the host does not provide landlock: %w", p, err)
		}
		e.landlockABI = abi
	}
	e.profile = p
	return nil
}

// probeLandlock runs the launcher once in probe mode: it must confine
// itself, check that a write outside its grant fails, and report the ABI.
// Every later run uses exactly that rule set; nothing is downgraded.
func (e *Executor) probeLandlock() (int, error) {
	if !landlockSupported {
		return 0, fmt.Errorf("landlock needs linux")
	}
	if len(e.cfg.Launcher) == 0 {
		return 0, fmt.Errorf("no launcher is configured")
	}
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.cfg.Launcher[0], append(e.cfg.Launcher[1:], launcherProbe)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("probe: %v: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	abi, err := strconv.Atoi(string(bytes.TrimSpace(stdout.Bytes())))
	if err != nil || abi < minLandlockABI || abi > maxLandlockABI {
		return 0, fmt.Errorf("probe: unexpected answer %q", stdout.String())
	}
	return abi, nil
}

// checkSandbox refuses, before any side effect, an action whose obligation
// requires a stronger profile than the host provides. An unknown mode is
// refused too: it cannot be shown to be met.
func (e *Executor) checkSandbox(required string) *Error {
	if required == "" {
		return nil
	}
	p, ok := parseProfile(required)
	if !ok {
		return fail(CodeSandboxRequired, "unknown sandbox mode %q is required", required)
	}
	if p > e.profile {
		return fail(CodeSandboxRequired, "sandbox mode %q is required but this host provides %q", p, e.profile)
	}
	return nil
}

//go:build linux

package executor

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

const localProfileSupported = true

// probeContainer collects the evidence that this process runs in a locked
// down container: the "container" profile is refused without all of it.
func probeContainer() error {
	checks := []struct {
		name string
		ok   func() bool
	}{
		{"container_backend", inContainer},
		{"rootless", rootless},
		{"read_only_root_fs", readOnlyRoot},
		{"no_new_privileges", noNewPrivileges},
		{"network_default_deny", noExternalInterfaces},
	}
	var missing []string
	for _, c := range checks {
		if !c.ok() {
			missing = append(missing, c.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing evidence: %s", strings.Join(missing, ", "))
	}
	return nil
}

func inContainer() bool {
	for _, marker := range []string{"/.dockerenv", "/run/.containerenv"} {
		if _, err := os.Stat(marker); err == nil {
			return true
		}
	}
	return os.Getenv("KUBERNETES_SERVICE_HOST") != ""
}

// rootless: not uid 0, or uid 0 only inside a user namespace.
func rootless() bool {
	if os.Geteuid() != 0 {
		return true
	}
	m, err := os.ReadFile("/proc/self/uid_map")
	return err == nil && !bytes.Equal(bytes.Join(bytes.Fields(m), []byte(" ")), []byte("0 0 4294967295"))
}

func readOnlyRoot() bool {
	var st syscall.Statfs_t
	const stRdonly = 0x1
	return syscall.Statfs("/", &st) == nil && st.Flags&stRdonly != 0
}

func noNewPrivileges() bool {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(status), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == "NoNewPrivs" {
			return strings.TrimSpace(v) == "1"
		}
	}
	return false
}

// noExternalInterfaces: no network interface but loopback is up.
func noExternalInterfaces() bool {
	ifaces, err := net.Interfaces()
	if err != nil {
		return false
	}
	for _, i := range ifaces {
		if i.Flags&net.FlagUp != 0 && i.Flags&net.FlagLoopback == 0 {
			return false
		}
	}
	return true
}

// localSysProcAttr adds what the local profile gives a child at start.
func localSysProcAttr(attr *syscall.SysProcAttr) {
	attr.Pdeathsig = syscall.SIGKILL
}

// applyRlimits sets the local profile's resource limits on a started child.
// The child runs briefly before they apply: Go cannot set them between fork
// and exec.
func applyRlimits(pid int, timeout time.Duration) error {
	cpu := uint64(timeout/time.Second) + 1
	limits := []struct {
		resource int
		value    uint64
	}{
		{syscall.RLIMIT_CORE, 0},
		{syscall.RLIMIT_CPU, cpu},
		{syscall.RLIMIT_FSIZE, rlimitFileBytes},
		{syscall.RLIMIT_NOFILE, rlimitOpenFiles},
	}
	for _, l := range limits {
		rl := syscall.Rlimit{Cur: l.value, Max: l.value}
		_, _, errno := syscall.RawSyscall6(syscall.SYS_PRLIMIT64, uintptr(pid), uintptr(l.resource),
			uintptr(unsafe.Pointer(&rl)), 0, 0, 0)
		if errno != 0 && !errors.Is(errno, syscall.ESRCH) {
			return fmt.Errorf("prlimit: %w", errno)
		}
	}
	return nil
}

//go:build linux

package executor

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"

	"github.com/landlock-lsm/go-landlock/landlock"
	llsys "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/sys/unix"
)

const landlockSupported = true

var landlockPresets = map[int]landlock.Config{
	4: landlock.V4, 5: landlock.V5, 6: landlock.V6, 7: landlock.V7, 8: landlock.V8, 9: landlock.V9,
}

// RunLauncher is the landlock launcher: args are the JSON launchSpec (or
// "probe"). It confines this process and execs the program, so it returns
// only on failure, which it also writes to the status pipe.
func RunLauncher(args []string) error {
	status := os.NewFile(statusFD, "status")
	err := launch(args)
	if status != nil {
		_, _ = status.WriteString(err.Error())
	}
	return err
}

func launch(args []string) error {
	// Capabilities belong to a thread: the one that drops them must be the
	// one that execs.
	runtime.LockOSThread()
	if len(args) != 1 {
		return errors.New("sandbox launcher: want one argument, the launch spec")
	}
	if args[0] == launcherProbe {
		return probeLandlock()
	}
	var spec launchSpec
	if err := json.Unmarshal([]byte(args[0]), &spec); err != nil {
		return fmt.Errorf("sandbox launcher: spec: %w", err)
	}
	if err := setOwnRlimits(spec.CPUSeconds); err != nil {
		return err
	}
	if err := restrict(spec); err != nil {
		return err
	}
	if err := dropCapabilities(); err != nil {
		return err
	}
	// Go closes only the descriptors it opened itself on exec: one Nomos
	// inherited (a supervisor's pipe, a socket-activation listener) would
	// reach the program, and Landlock does not govern an open descriptor.
	// The program keeps stdin, stdout and stderr only; the status pipe
	// closes with the exec too.
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return fmt.Errorf("sandbox launcher: close inherited descriptors: %w", err)
	}
	err := syscall.Exec(spec.Path, spec.Argv, os.Environ())
	return fmt.Errorf("sandbox launcher: exec: %w", err)
}

// restrict applies the spec's rules with the rule set of its ABI, exactly:
// a kernel that cannot enforce it fails the run.
func restrict(spec launchSpec) error {
	cfg, ok := landlockPresets[spec.ABI]
	if !ok {
		return fmt.Errorf("sandbox launcher: unsupported landlock abi %d", spec.ABI)
	}
	rules, err := landlockRules(spec)
	if err != nil {
		return err
	}
	if err := cfg.Restrict(rules...); err != nil {
		return fmt.Errorf("sandbox launcher: landlock: %w", err)
	}
	return nil
}

// writeDirRights is what a writable directory grants: read and write,
// but never creating a character or block device. A child running as root
// could otherwise mknod the disk or /dev/kmem inside its grant and read or
// write through it past every other rule.
const writeDirRights = llsys.AccessFSExecute | llsys.AccessFSReadFile | llsys.AccessFSReadDir |
	llsys.AccessFSWriteFile | llsys.AccessFSRemoveDir | llsys.AccessFSRemoveFile | llsys.AccessFSMakeDir |
	llsys.AccessFSMakeReg | llsys.AccessFSMakeSock | llsys.AccessFSMakeFifo | llsys.AccessFSMakeSym |
	llsys.AccessFSTruncate

func writeDirs(paths ...string) landlock.FSRule { return landlock.PathAccess(writeDirRights, paths...) }

// landlockRules grants read (and execute) on spec.Read, read and write on
// spec.Write, and TCP connect to spec.ConnectTCP. Landlock grants on files
// and directories differently, so each path is looked at first; a missing
// path is skipped.
func landlockRules(spec launchSpec) ([]landlock.Rule, error) {
	var rules []landlock.Rule
	for _, group := range []struct {
		paths     []string
		dir, file func(...string) landlock.FSRule
	}{
		{spec.Read, landlock.RODirs, landlock.ROFiles},
		{spec.Write, writeDirs, landlock.RWFiles},
	} {
		for _, p := range group.paths {
			fi, err := os.Stat(p)
			switch {
			case errors.Is(err, os.ErrNotExist):
				continue
			case err != nil:
				return nil, fmt.Errorf("sandbox launcher: %w", err)
			case fi.IsDir():
				rules = append(rules, group.dir(p))
			default:
				rules = append(rules, group.file(p))
			}
		}
	}
	if err := checkWriteTargets(spec.Write); err != nil {
		return nil, err
	}
	for _, port := range spec.ConnectTCP {
		rules = append(rules, landlock.ConnectTCP(port))
	}
	return rules, nil
}

// probeLandlock restricts this process with the newest preset the kernel
// enforces and prints its ABI. It is run once, in a child, at start-up.
func probeLandlock() error {
	abi, err := llsys.LandlockGetABIVersion()
	if err != nil || abi < minLandlockABI {
		return fmt.Errorf("sandbox launcher: the kernel does not provide landlock abi %d or newer (abi %d, %v)", minLandlockABI, abi, err)
	}
	dir, err := os.MkdirTemp("", "nomos-landlock-probe-")
	if err != nil {
		return fmt.Errorf("sandbox launcher: probe: %w", err)
	}
	defer os.RemoveAll(dir)
	for v := min(abi, maxLandlockABI); v >= minLandlockABI; v-- {
		spec := launchSpec{ABI: v, Read: []string{"/usr"}, Write: []string{dir}}
		if err = restrict(spec); err == nil {
			return verifyProbe(v, dir)
		}
	}
	return err
}

// verifyProbe checks that the restriction holds (a write outside the
// granted directory fails), then reports the ABI on stdout.
func verifyProbe(abi int, dir string) error {
	if f, err := os.CreateTemp(os.TempDir(), "nomos-landlock-escape-"); err == nil {
		f.Close()
		os.Remove(f.Name())
		return errors.New("sandbox launcher: probe: landlock did not refuse a write outside the granted paths")
	}
	if err := os.WriteFile(dir+"/ok", nil, 0o600); err != nil {
		return fmt.Errorf("sandbox launcher: probe: a granted write failed: %w", err)
	}
	fmt.Println(strconv.Itoa(abi))
	os.Exit(0)
	return nil
}

// checkWriteTargets refuses a write path that became a symlink after the
// executor resolved it: Landlock would grant on what it points to now.
func checkWriteTargets(paths []string) error {
	for _, p := range paths {
		real, err := filepath.EvalSymlinks(p)
		if err == nil && real != p {
			return fmt.Errorf("sandbox launcher: write path %s changed into a link", p)
		}
	}
	return nil
}

// dropCapabilities leaves the program no capability when Nomos runs as
// root: Landlock confines paths and TCP, but root's capabilities would
// still open raw sockets, make device nodes, change file ownership or
// override file permissions. The bounding set is emptied so that the exec
// (which gives root every capability in it) grants none. A non-root
// launcher has none to drop.
func dropCapabilities() error {
	if os.Geteuid() != 0 {
		return nil
	}
	for c := 0; c < 64; c++ {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err == unix.EINVAL {
			break // past the kernel's last capability
		} else if err != nil {
			return fmt.Errorf("sandbox launcher: drop capability %d: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && err != unix.EINVAL {
		return fmt.Errorf("sandbox launcher: clear ambient capabilities: %w", err)
	}
	var data [2]unix.CapUserData
	if err := unix.Capset(&unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}, &data[0]); err != nil {
		return fmt.Errorf("sandbox launcher: drop capabilities: %w", err)
	}
	return nil
}

// setOwnRlimits applies the local profile's limits to the launcher, which
// the program inherits across the exec.
func setOwnRlimits(cpu uint64) error {
	if cpu == 0 {
		return nil
	}
	for _, l := range []struct {
		resource int
		value    uint64
	}{
		{syscall.RLIMIT_CORE, 0}, {syscall.RLIMIT_CPU, cpu},
		{syscall.RLIMIT_FSIZE, rlimitFileBytes}, {syscall.RLIMIT_NOFILE, rlimitOpenFiles},
	} {
		if err := syscall.Setrlimit(l.resource, &syscall.Rlimit{Cur: l.value, Max: l.value}); err != nil {
			return fmt.Errorf("sandbox launcher: setrlimit: %w", err)
		}
	}
	return nil
}

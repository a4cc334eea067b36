package executor

// The landlock profile confines a process.exec child with Landlock. Landlock
// restricts the calling threads for good, so Nomos never restricts itself:
// it starts a small launcher (this binary again, Config.Launcher) that
// applies the rules of a launchSpec to itself and then execs the program.
// The launcher reports a failure before exec on a status pipe (fd 3), which
// the exec closes on success.

// LauncherCommand is the subcommand of the nomos binary that runs the
// landlock launcher; caddymodule registers it.
const LauncherCommand = "sandbox-exec"

// launcherProbe as the spec argument asks the launcher to apply a sample
// rule set and report the Landlock ABI it enforced, instead of running a
// program.
const launcherProbe = "probe"

// statusFD is the launcher's status pipe: empty at EOF means the exec
// happened.
const statusFD = 3

// Landlock ABI versions: 4 adds TCP connect and bind, the least the
// profile needs; 9 (connecting to pathname unix sockets outside the
// domain) is the newest rule set the profile uses. 10 would restrict UDP,
// which the resolver needs.
const (
	minLandlockABI = 4
	maxLandlockABI = 9
)

// launchSpec is what the launcher enforces before it execs Path.
type launchSpec struct {
	// ABI is the Landlock rule set version, from the start-up probe.
	ABI int `json:"abi"`
	// Path is the program, absolute or relative to the working directory.
	Path string   `json:"path"`
	Argv []string `json:"argv"`
	// Read are files and directories the child may read and execute.
	Read []string `json:"read"`
	// Write are directories and files the child may read and write.
	Write []string `json:"write"`
	// ConnectTCP are the TCP ports the child may connect to. It may bind
	// none.
	ConnectTCP []uint16 `json:"connect_tcp,omitempty"`
	// CPUSeconds, when set, makes the launcher set the local profile's
	// resource limits on itself before the exec, so they hold from the
	// program's first instruction.
	CPUSeconds uint64 `json:"cpu_seconds,omitempty"`
}

// systemReadPaths are what programs commonly need besides the workspace:
// binaries and libraries, the dynamic loader's cache, time zones, user and
// host name databases, CA certificates and a few devices. Missing ones are
// skipped. /proc/self is the child's own process directory only: other
// processes' (Nomos') environments stay unreadable.
var systemReadPaths = []string{
	"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
	"/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime", "/etc/passwd", "/etc/group",
	"/etc/nsswitch.conf", "/etc/hosts", "/etc/resolv.conf", "/etc/host.conf", "/etc/gai.conf",
	"/etc/ssl", "/etc/ca-certificates", "/etc/pki", "/etc/alternatives", "/etc/mime.types", "/etc/terminfo",
	"/dev/urandom", "/dev/random", "/dev/zero", "/proc/self",
}

// systemWritePaths are writable devices every program may use.
var systemWritePaths = []string{"/dev/null"}

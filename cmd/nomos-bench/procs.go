package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// bench is one run: its working directory, the upstream, and the processes
// it started (stopped in reverse order at the end).
type bench struct {
	o            options
	dir          string
	everything   string
	upstreamAddr string
	allowAll     string
	bigPolicy    string
	// bigGuardPolicy is bigPolicy with nomos_guard's request allowed.
	bigGuardPolicy string
	procs          []*exec.Cmd
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// start runs a process with its output in logName under the run's
// directory and waits until addr accepts connections.
func (e *bench) start(ctx context.Context, logName, addr, dir string, env []string, name string, args ...string) error {
	logf, err := os.Create(filepath.Join(e.dir, logName))
	if err != nil {
		return err
	}
	cmd := exec.Command(name, args...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, logf, logf
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", logName, err)
	}
	e.procs = append(e.procs, cmd)
	return waitListening(ctx, addr, cmd, logName)
}

func waitListening(ctx context.Context, addr string, cmd *exec.Cmd, logName string) error {
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("%s exited before listening on %s (see its log)", logName, addr)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s: nothing listens on %s after 60s", logName, addr)
}

// stopAll ends every process group it started: SIGTERM, then SIGKILL.
func (e *bench) stopAll() {
	for i := len(e.procs) - 1; i >= 0; i-- {
		p := e.procs[i].Process
		_ = syscall.Kill(-p.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _, _ = p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-p.Pid, syscall.SIGKILL)
		}
	}
}

// buildEverything builds the Go MCP SDK's conformance server into the run's
// directory (the module is a test dependency of this one).
func (e *bench) buildEverything() error {
	if e.o.everything != "" {
		e.everything = e.o.everything
		return nil
	}
	e.everything = filepath.Join(e.dir, "everything-server")
	out, err := exec.Command("go", "build", "-o", e.everything,
		"github.com/modelcontextprotocol/go-sdk/conformance/everything-server").CombinedOutput()
	if err != nil {
		return fmt.Errorf("build everything-server: %v\n%s", err, out)
	}
	return nil
}

// hasModule reports whether the nomos binary has a Caddy module.
func (e *bench) hasModule(id string) bool {
	out, err := exec.Command(e.o.nomos, "list-modules").Output()
	if err != nil {
		return false
	}
	for _, l := range splitLines(string(out)) {
		if l == id {
			return true
		}
	}
	return false
}

// startNomos writes the configuration's Caddyfile and runs it.
func (e *bench) startNomos(ctx context.Context, c config) (url, adminAddr string, err error) {
	port, err := freePort()
	if err != nil {
		return "", "", err
	}
	admin, err := freePort()
	if err != nil {
		return "", "", err
	}
	dir := filepath.Join(e.dir, c.name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "Caddyfile"), []byte(c.caddyfile(e, port, admin)), 0o644); err != nil {
		return "", "", err
	}
	env := []string{"XDG_DATA_HOME=" + filepath.Join(dir, "data"), "XDG_CONFIG_HOME=" + filepath.Join(dir, "config"), "HOME=" + dir,
		"NOMOS_BENCH_AUDIT_KEY=" + benchAuditKey}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	err = e.start(ctx, "nomos-"+c.name+".log", addr, dir, env, e.o.nomos, "run", "--config", "Caddyfile", "--adapter", "caddyfile")
	return "http://" + addr + "/mcp", fmt.Sprintf("127.0.0.1:%d", admin), err
}

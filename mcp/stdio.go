package mcp

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"sync"

	"github.com/mark3labs/mcp-go/client/transport"
)

// stderrTailBytes is how much of a child's stderr is kept for errors.
const stderrTailBytes = 8 << 10

// childEnv builds a stdio child's environment: empty, plus the allowlisted
// parent variables that are set, plus fixed values (which win), sorted.
func childEnv(cfg UpstreamConfig, lookup func(string) (string, bool)) []string {
	vals := map[string]string{}
	for _, name := range cfg.EnvAllowlist {
		if v, ok := lookup(name); ok {
			vals[name] = v
		}
	}
	for k, v := range cfg.Env {
		vals[k] = v
	}
	env := make([]string, 0, len(vals)) // non-nil: exec must not inherit
	for k, v := range vals {
		env = append(env, k+"="+v)
	}
	sort.Strings(env)
	return env
}

// openStdio spawns the child in its own process group, with an isolated
// environment, and watches its stderr so a crash is noticed at once.
func (u *Upstream) openStdio() (*conn, error) {
	tail := &tailBuffer{max: stderrTailBytes}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("stderr pipe: %w", err)
	}
	var cmd *exec.Cmd
	cmdFunc := func(_ context.Context, command string, _ []string, args []string) (*exec.Cmd, error) {
		cmd = exec.Command(command, args...) // not tied to a request context
		cmd.Env = childEnv(u.cfg, os.LookupEnv)
		cmd.Dir = u.cfg.Workdir
		cmd.Stderr = pw
		cmd.SysProcAttr = childProcAttr()
		return cmd, nil
	}
	t := transport.NewStdioWithOptions(u.cfg.Command, nil, u.cfg.Args,
		transport.WithCommandFunc(cmdFunc), transport.WithCommandLogger(u.log))
	c := newConn(u, t, nil)
	c.stderr = tail
	c.stderrDone = make(chan struct{})
	startErr := t.Start(u.ctx)
	pw.Close() // the child holds its own copy
	if startErr != nil {
		pr.Close()
		return nil, newUpstreamError(ErrUpstreamUnavailable, startErr, "upstream %q: launch", u.cfg.Name)
	}
	c.killGroup = groupKiller(cmd)
	go u.watchStderr(c, pr, tail)
	return c, nil
}

// watchStderr keeps the stderr tail; EOF means the child (and every
// process sharing its stderr) is gone.
func (u *Upstream) watchStderr(c *conn, r io.ReadCloser, tail *tailBuffer) {
	defer u.recoverPanic("stderr")
	defer r.Close()
	_, _ = io.Copy(tail, r)
	close(c.stderrDone)
	if !c.dead.Load() {
		u.log.Warn("mcp upstream child exited", "stderr_tail_bytes", tail.Len())
	}
	c.markDead()
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

func (b *tailBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.buf)
}

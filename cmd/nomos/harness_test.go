package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-nomos/nomos/internal/identity"
)

// Every request the tests send with http.DefaultClient (or http.Get) may
// be resent by Go's transport when the keep-alive connection it reused was
// closed under it before any answer: a reload closes the old server's idle
// connections, and a request racing that close never reached Nomos (nothing
// of it is audited). Clients retry such requests, as docs/deployment.md
// says; Go's transport does it for requests marked idempotent.
func init() { http.DefaultClient.Transport = replayOnClose{http.DefaultTransport} }

type replayOnClose struct{ next http.RoundTripper }

func (rt replayOnClose) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Header.Get("Idempotency-Key") == "" && (req.Body == nil || req.GetBody != nil) {
		req = req.Clone(req.Context())
		req.Header.Set("Idempotency-Key", newNonce())
	}
	return rt.next.RoundTrip(req)
}

// nomosBin is the binary under test: $NOMOS_BIN (make test builds it), or
// one built once for this test run.
var (
	binOnce sync.Once
	binPath string
	binErr  error
)

func nomosBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: skipped with -short")
	}
	binOnce.Do(func() {
		if p := os.Getenv("NOMOS_BIN"); p != "" {
			binPath = p
			return
		}
		dir, err := os.MkdirTemp("", "nomos-bin")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "nomos")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// freePort reserves a loopback port for a server started right after.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// server is one running nomos process.
type server struct {
	t       *testing.T
	dir     string
	base    string
	admin   string
	cmd     *exec.Cmd
	logs    *lockedBuffer
	dataDir string
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startServer writes files into a fresh directory and runs nomos there on
// the Caddyfile, with {PORT} and {ADMIN} replaced by free loopback ports.
// Caddy's data dir is private to the test.
func startServer(t *testing.T, caddyfile string, files map[string]string, env ...string) *server {
	t.Helper()
	port, admin := freePort(t), freePort(t)
	files["Caddyfile"] = strings.NewReplacer("{PORT}", fmt.Sprint(port), "{ADMIN}", fmt.Sprint(admin)).Replace(caddyfile)
	s := launch(t, "Caddyfile", files, env)
	s.base, s.admin = fmt.Sprintf("http://127.0.0.1:%d", port), fmt.Sprintf("127.0.0.1:%d", admin)
	s.waitHealthy()
	return s
}

// startServerWith runs nomos on a config file that is already among files;
// its site address must be http://127.0.0.1:<port>.
func startServerWith(t *testing.T, config string, files map[string]string, env ...string) *server {
	t.Helper()
	s := launch(t, config, files, env)
	m := regexp.MustCompile(`http://(?:127\.0\.0\.1)?:(\d+)`).FindStringSubmatch(files[config])
	if m == nil {
		t.Fatalf("%s has no http://127.0.0.1:<port> or http://:<port> site", config)
	}
	s.base = "http://127.0.0.1:" + m[1]
	s.waitHealthy()
	return s
}

// launch writes the files into a fresh directory and starts nomos there.
// Caddy's data dir is private to the test.
func launch(t *testing.T, config string, files map[string]string, env []string) *server {
	t.Helper()
	bin := nomosBinary(t)
	dir := t.TempDir()
	writeFiles(t, dir, files)
	s := &server{t: t, dir: dir, logs: new(lockedBuffer), dataDir: filepath.Join(dir, "data")}
	s.cmd = exec.Command(bin, "run", "--config", config, "--adapter", "caddyfile")
	s.cmd.Dir = dir
	s.cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+s.dataDir, "XDG_CONFIG_HOME="+filepath.Join(dir, "config"), "HOME="+dir)
	s.cmd.Env = append(s.cmd.Env, env...)
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.stop)
	return s
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if strings.HasPrefix(name, "bin/") {
			mode = 0o755
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
}

// waitHealthy waits for the site to answer: 200 on /healthz where
// nomos_api serves it, or any HTTP answer from a route without it (such as
// a bare nomos_mcp site).
func (s *server) waitHealthy() {
	s.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(s.base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.Header.Get("Content-Type") != "" && resp.StatusCode != http.StatusBadGateway {
				return
			}
		}
		if s.cmd.ProcessState != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Fatalf("nomos did not become healthy; logs:\n%s", s.logs.String())
}

// stop shuts nomos down gracefully, as an operator's SIGTERM would.
func (s *server) stop() {
	if s.cmd.Process == nil || s.cmd.ProcessState != nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
}

// auditDB is the default sqlite audit file of this server.
func (s *server) auditDB() string {
	return filepath.Join(s.dataDir, "caddy", "nomos", "audit.db")
}

// client signs requests as an agent and authenticates a principal.
type client struct {
	base, apiKey, agent, secret string
	// principal is the name apiKey authenticates, which the agent signature
	// covers. Default: apiKey without its "-key" suffix ("alice-key" is
	// alice), the harness's naming convention.
	principal string
}

func (c client) principalName() string {
	if c.principal != "" {
		return c.principal
	}
	return strings.TrimSuffix(c.apiKey, "-key")
}

// newNonce returns a fresh X-Nomos-Nonce value.
func newNonce() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// signV2 sets the v2 agent signature headers on req for body, as the agent
// of principal, with a fresh timestamp and nonce. It is the harness's one
// signer; see docs/identity.md.
func signV2(req *http.Request, principal, agent, secret string, body []byte) {
	sr := identity.SignedRequest{Method: req.Method, Target: req.URL.RequestURI(), Principal: principal, Agent: agent,
		Timestamp: fmt.Sprint(time.Now().Unix()), Nonce: newNonce(), Body: body}
	req.Header.Set("X-Nomos-Agent-Id", agent)
	req.Header.Set("X-Nomos-Timestamp", sr.Timestamp)
	req.Header.Set("X-Nomos-Nonce", sr.Nonce)
	req.Header.Set("X-Nomos-Agent-Signature", identity.Sign(secret, sr))
}

func (c client) request(path string, body []byte) *http.Request {
	req, _ := http.NewRequest(http.MethodPost, c.base+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if c.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.apiKey)
	}
	if c.agent != "" {
		signV2(req, c.principalName(), c.agent, c.secret, body)
	}
	return req
}

// post sends body and decodes the JSON answer.
func (c client) post(t *testing.T, path string, body any) (int, map[string]any) {
	t.Helper()
	raw, ok := body.([]byte)
	if !ok {
		raw, _ = json.Marshal(body)
	}
	return do(t, c.request(path, raw))
}

func do(t *testing.T, req *http.Request) (int, map[string]any) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(data) > 0 && json.Unmarshal(data, &out) != nil {
		t.Fatalf("%s %s: non-JSON answer %d: %s", req.Method, req.URL.Path, resp.StatusCode, data)
	}
	return resp.StatusCode, out
}

// envelope builds a v1 action request.
func envelope(id, typ, resource string, params map[string]any) map[string]any {
	if params == nil {
		params = map[string]any{}
	}
	return map[string]any{
		"schema_version": "v1", "action_id": id, "trace_id": "trace-" + id,
		"action_type": typ, "resource": resource, "params": params,
		"context": map[string]any{"extensions": map[string]any{}},
	}
}

// runCLI runs a nomos subcommand and returns stdout, stderr and the code.
func runCLI(t *testing.T, dir string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.CommandContext(context.Background(), nomosBinary(t), args...)
	cmd.Dir = dir
	// Like the server started in dir (see launch), the CLI keeps Caddy's
	// data under dir/data.
	cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+filepath.Join(dir, "data"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

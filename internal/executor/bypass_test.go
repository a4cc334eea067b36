package executor

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-nomos/nomos/audit"
	"github.com/caddy-nomos/nomos/internal/credentials"
	"github.com/caddy-nomos/nomos/policy"
	"github.com/caddy-nomos/nomos/policy/action"
)

// The bypass suite of issue 4 §3 at the executor level: each case gets an
// ALLOW from policy (the worst case) and must still be contained. The
// end-to-end suite runs the same cases through the built binary.

// bypassOutcome is what one case produced, for the common assertions.
type bypassOutcome struct {
	res  *Result
	xerr *Error
}

// evidence is everything the caller could show or log about the outcome.
func (o bypassOutcome) evidence(t *testing.T) string {
	b, err := json.Marshal(o.res)
	if err != nil {
		t.Fatal(err)
	}
	if o.xerr != nil {
		return string(b) + " " + o.xerr.Code + " " + o.xerr.Message
	}
	return string(b)
}

func (o bypassOutcome) classification() string {
	if o.xerr != nil {
		return o.xerr.Classification
	}
	return o.res.Classification
}

func TestBypassSuite(t *testing.T) {
	outside := t.TempDir()
	writeFile(t, outside, "secret.txt", "OUTSIDE-SECRET-CONTENT")
	const leased = "prod-db-pass-7Hq2-kk91"
	broker, err := credentials.NewBroker([]credentials.Secret{{ID: "db_password", EnvKey: "DB_PASSWORD", Value: leased, TTL: time.Minute}}, nil)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name        string
		run         func(t *testing.T) bypassOutcome
		code, class string
		forbidden   []string
		afterwards  func(t *testing.T)
	}{
		{
			name: "path traversal",
			run: func(t *testing.T) bypassOutcome {
				env := &action.Envelope{SchemaVersion: "v1", ActionID: "a1", TraceID: "t1", ActionType: "fs.read",
					Resource: "file://workspace/../" + filepath.Base(outside) + "/secret.txt", Params: []byte(`{}`)}
				if _, err := action.New(env, testIdentity); !errors.Is(err, action.ErrNormalization) {
					t.Fatalf("normalization let the traversal through: %v", err)
				}
				// A forged action that skipped normalization is refused too.
				e := newTestExecutor(t, Config{})
				a := newAction(t, "fs.read", "file://workspace/x", map[string]any{})
				a.Resource = env.Resource
				_, xerr := execute(t, e, a, noObligations)
				return bypassOutcome{xerr: xerr}
			},
			code: CodeInvalidResource, class: audit.ResultValidationError, forbidden: []string{"OUTSIDE-SECRET-CONTENT"},
		},
		{
			name: "symlink escape on read",
			run: func(t *testing.T) bypassOutcome {
				e := newTestExecutor(t, Config{})
				mustSymlink(t, outside, filepath.Join(e.root, "docs"))
				res, xerr := execute(t, e, newAction(t, "fs.read", "file://workspace/docs/secret.txt", map[string]any{}), noObligations)
				return bypassOutcome{res, xerr}
			},
			code: CodeSandboxViolation, class: audit.ResultSandboxViolation, forbidden: []string{"OUTSIDE-SECRET-CONTENT"},
		},
		{
			name: "write through a symlinked parent swapped mid-request",
			run: func(t *testing.T) bypassOutcome {
				root := t.TempDir()
				writeFile(t, root, "src/main.go", "package main\n")
				e := newTestExecutorWith(t, Config{WorkspaceRoot: root}, nil, testHooks{beforeCommit: func(string) {
					mustRename(t, filepath.Join(root, "src"), filepath.Join(root, "src.orig"))
					mustSymlink(t, outside, filepath.Join(root, "src"))
				}})
				res, xerr := execute(t, e, newAction(t, "fs.write", "file://workspace/src/secret.txt", map[string]any{"content": "overwritten"}), noObligations)
				return bypassOutcome{res, xerr}
			},
			code: CodeSandboxViolation, class: audit.ResultSandboxViolation,
			afterwards: func(t *testing.T) {
				if readFile(t, outside, "secret.txt") != "OUTSIDE-SECRET-CONTENT" {
					t.Error("the write reached outside the workspace")
				}
			},
		},
		{
			name: "redirect to a disallowed host",
			run: func(t *testing.T) bypassOutcome {
				var evilHits atomic.Int32
				evil := newTestServer(t, func(w http.ResponseWriter, r *http.Request) { evilHits.Add(1) })
				good := newTestServer(t, func(w http.ResponseWriter, r *http.Request) {
					http.Redirect(w, r, evil.URL+"/collect?data=1", http.StatusFound)
				})
				e := newTestExecutor(t, loopbackConfig())
				ob := policy.Obligations{NetAllowlist: []string{good.host}, HTTPRedirects: ptr(true)}
				res, xerr := execute(t, e, newAction(t, "net.http_request", "url://"+good.host+"/start", map[string]any{}), ob)
				if evilHits.Load() != 0 {
					t.Error("the disallowed host was contacted")
				}
				if xerr != nil && strings.Contains(xerr.Message, evil.host) {
					t.Errorf("the refusal names the final resource: %q", xerr.Message)
				}
				return bypassOutcome{res, xerr}
			},
			code: CodeRedirectBlocked, class: audit.ResultDeniedPolicy, forbidden: []string{"collect"},
		},
		{
			name: "secret echoed by a command",
			run: func(t *testing.T) bypassOutcome {
				e := newTestExecutorWith(t, Config{}, broker, testHooks{})
				co := mustRun(t, e, newAction(t, "secrets.checkout", "secret://vault/db_password", map[string]any{"secret_id": "db_password"}), noObligations)
				res, xerr := execute(t, e, execAction(t, map[string]any{
					"argv":                 []string{"sh", "-c", `echo "db=$DB_PASSWORD"; echo "aws=AKIAQWERTYUIOPASDFGH" >&2`},
					"credential_lease_ids": []string{co.CredentialLeaseID},
				}), noObligations)
				if res != nil && (res.Stdout != "db=[REDACTED]\n" || res.Stderr != "aws=[REDACTED]\n") {
					t.Errorf("stdout %q stderr %q", res.Stdout, res.Stderr)
				}
				return bypassOutcome{res, xerr}
			},
			class: audit.ResultSuccess, forbidden: []string{leased, "AKIAQWERTYUIOPASDFGH"},
		},
		{
			name: "sandbox requirement on a host without that profile",
			run: func(t *testing.T) bypassOutcome {
				e := newTestExecutor(t, Config{SandboxProfile: "local"})
				res, xerr := execute(t, e, execAction(t, map[string]any{"argv": []string{"touch", "escaped"}}), policy.Obligations{SandboxMode: "container"})
				if _, err := os.Stat(filepath.Join(e.root, "escaped")); err == nil {
					t.Error("the command ran")
				}
				return bypassOutcome{res, xerr}
			},
			code: CodeSandboxRequired, class: audit.ResultSandboxViolation,
		},
		{
			name: "SSRF to 127.0.0.1 and 169.254.169.254 through DNS names",
			run: func(t *testing.T) bypassOutcome {
				internal := newTestServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "INTERNAL-ONLY") })
				_, port, _ := net.SplitHostPort(internal.host)
				resolver := &fakeResolver{hosts: map[string][]string{"api.partner.test": {"127.0.0.1"}, "meta.partner.test": {"169.254.169.254"}}}
				var dials atomic.Int32
				e := newTestExecutor(t, Config{InsecureHTTP: true, Resolver: resolver,
					DialContext: func(ctx context.Context, n, a string) (net.Conn, error) {
						dials.Add(1)
						return (&net.Dialer{}).DialContext(ctx, n, a)
					}})
				var last bypassOutcome
				for _, host := range []string{"api.partner.test:" + port, "meta.partner.test:" + port} {
					res, xerr := execute(t, e, newAction(t, "net.http_request", "url://"+host+"/latest/meta-data", map[string]any{}), netOb(host))
					if xerr == nil || xerr.Code != CodeNetNotAllowlisted {
						t.Errorf("%s: got %v", host, xerr)
					}
					last = bypassOutcome{res, xerr}
				}
				if dials.Load() != 0 || internal.hits.Load() != 0 {
					t.Error("a non-public address was dialed")
				}
				return last
			},
			code: CodeNetNotAllowlisted, class: audit.ResultDeniedPolicy, forbidden: []string{"INTERNAL-ONLY", "127.0.0.1", "169.254"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.run(t)
			if tt.code != "" {
				wantError(t, o.xerr, tt.code)
				if o.res != nil {
					t.Errorf("a refusal also returned a result: %+v", o.res)
				}
			} else if o.xerr != nil {
				t.Fatalf("refused: %v", o.xerr)
			}
			if got := o.classification(); got != tt.class {
				t.Errorf("classification %s, want %s", got, tt.class)
			}
			ev := o.evidence(t)
			for _, f := range tt.forbidden {
				if strings.Contains(ev, f) {
					t.Errorf("forbidden %q appears in %s", f, ev)
				}
			}
			if tt.afterwards != nil {
				tt.afterwards(t)
			}
		})
	}
}

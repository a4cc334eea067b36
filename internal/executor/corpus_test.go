package executor

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/caddy-nomos/nomos/internal/redact"
)

type corpusCase struct {
	Name      string   `json:"name"`
	Input     string   `json:"input"`
	Forbidden []string `json:"forbidden"`
}

func loadCorpus(t *testing.T, name string) []corpusCase {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "testdata", "redaction", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []corpusCase
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var c corpusCase
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

var headerLine = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9-]*): ([^\n]*)$`)

// echoServer answers /<n> with corpus input n in a response header and in
// the body.
func echoServer(t *testing.T, cases []corpusCase) *testServer {
	return newTestServer(t, func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/"))
		in := cases[n].Input
		w.Header().Set("X-Debug", strings.ReplaceAll(in, "\n", " "))
		if m := headerLine.FindStringSubmatch(in); m != nil {
			w.Header().Set(m[1], m[2]) // "Authorization: ..." travels as itself
		}
		io.WriteString(w, in+"\n")
	})
}

// streamOutputs runs one corpus input through every executor path that can
// carry it back and returns each stream as the caller would see it.
func streamOutputs(t *testing.T, e *Executor, srv *testServer, n int, input string) map[string]string {
	out := map[string]string{}
	echo := []string{"sh", "-c", `printf '%s\n' "$1"; printf '%s\n' "$1" >&2`, "sh", input}
	res := mustRun(t, e, execAction(t, map[string]any{"argv": echo}), noObligations)
	out["stdout"], out["stderr"] = res.Stdout, res.Stderr

	res = mustRun(t, e, newAction(t, "net.http_request", fmt.Sprintf("url://%s/%d", srv.host, n), map[string]any{}), netOb(srv.host))
	headers, _ := json.Marshal(res.Metadata["response_headers"])
	out["http_headers"], out["http_body"] = string(headers), res.Output

	// The patch stream: a hunk quoting the secret as context that does not
	// match, so the error message carries it.
	lines := strings.Split(input, "\n")
	patch := fmt.Sprintf("--- a/cfg.txt\n+++ b/cfg.txt\n@@ -1,%d +1 @@\n-%s\n+x\n", len(lines), strings.Join(lines, "\n-"))
	_, xerr := execute(t, e, newAction(t, "repo.apply_patch", WorkspaceRepo, map[string]any{"patch": patch}), noObligations)
	if xerr == nil {
		t.Fatal("mismatching patch applied")
	}
	out["patch_error"] = xerr.Message
	out["patch_text"] = e.red.String(patch)

	res = mustRun(t, e, newAction(t, "fs.write", "file://workspace/out.env", map[string]any{"content": input}), noObligations)
	event, _ := json.Marshal(map[string]any{
		"event_type": "action.completed", "params_redacted_summary": input,
		"executor_metadata": res.Metadata, "result": res, "stderr": input,
	})
	out["audit_json"] = string(e.red.JSON(event))
	return out
}

func TestCorpusSecretsVanishThroughExecutors(t *testing.T) {
	cases := loadCorpus(t, "secrets.jsonl")
	if len(cases) < 150 {
		t.Fatalf("corpus has %d cases, want >= 150", len(cases))
	}
	srv := echoServer(t, cases)
	e := newTestExecutor(t, loopbackConfig())
	writeFile(t, e.root, "cfg.txt", "unrelated\n")
	for n, c := range cases {
		for stream, got := range streamOutputs(t, e, srv, n, c.Input) {
			for _, f := range c.Forbidden {
				if strings.Contains(got, f) {
					t.Errorf("%s: %s carries the secret: %q", c.Name, stream, got)
				}
			}
			if !strings.Contains(got, redact.Mask) {
				t.Errorf("%s: %s shows no mask, so the secret never reached it: %q", c.Name, stream, got)
			}
		}
		if got := readFile(t, e.root, "out.env"); got != c.Input {
			t.Fatalf("%s: fs.write must store content unredacted, got %q", c.Name, got)
		}
	}
}

func TestCorpusLookalikesPassThroughExecutors(t *testing.T) {
	cases := loadCorpus(t, "lookalikes.jsonl")
	srv := echoServer(t, cases)
	e := newTestExecutor(t, loopbackConfig())
	for n, c := range cases {
		res := mustRun(t, e, execAction(t, map[string]any{"argv": []string{"printf", "%s", c.Input}}), noObligations)
		if res.Stdout != c.Input {
			t.Errorf("%s: stdout %q", c.Name, res.Stdout)
		}
		res = mustRun(t, e, newAction(t, "net.http_request", fmt.Sprintf("url://%s/%d", srv.host, n), map[string]any{}), netOb(srv.host))
		if res.Output != c.Input+"\n" {
			t.Errorf("%s: body %q", c.Name, res.Output)
		}
	}
}

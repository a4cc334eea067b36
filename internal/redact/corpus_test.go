package redact

import (
	"bufio"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

type secretCase struct {
	Name      string   `json:"name"`
	Kind      string   `json:"kind"`
	Input     string   `json:"input"`
	Forbidden []string `json:"forbidden"`
}

type lookalikeCase struct {
	Name  string `json:"name"`
	Input string `json:"input"`
}

func loadJSONL[T any](t testing.TB, name string) []T {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "testdata", "redaction", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []T
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var c T
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out = append(out, c)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func mustNew(t testing.TB, extra ...string) *Redactor {
	t.Helper()
	r, err := New(extra)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

var headerLine = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9-]*):[ \t]*(.*)$`)

// asHeader puts a corpus line into a header: "Name: value" lines keep their
// name, anything else travels in a neutral header.
func asHeader(line string) http.Header {
	h := http.Header{}
	m := headerLine.FindStringSubmatch(line)
	if m != nil && !strings.HasPrefix(m[2], "//") && !strings.Contains(line, "\n") {
		h.Add(m[1], m[2])
		return h
	}
	h.Add("X-Debug", line)
	return h
}

// streams renders one corpus input the way each output stream carries it and
// returns what the redactor makes of it.
func streams(r *Redactor, input string) map[string]string {
	hdr, _ := json.Marshal(r.Header(asHeader(input)))
	event, _ := json.Marshal(map[string]any{
		"event_type":              "action.completed",
		"params_redacted_summary": input,
		"executor_metadata":       map[string]any{"stderr": input, "argv": []string{"printf", input}},
	})
	patch := "--- a/config.env\n+++ b/config.env\n@@ -1 +1,2 @@\n keep\n+" +
		strings.ReplaceAll(input, "\n", "\n+") + "\n"
	return map[string]string{
		"stdout":      r.String(input + "\n"),
		"stderr":      string(r.Bytes([]byte("error: " + input))),
		"http_header": string(hdr),
		"http_body":   r.String(`{"echo":` + quote(input) + `}`),
		"patch":       r.String(patch),
		"audit_json":  string(r.JSON(event)),
	}
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func TestCorpusSizes(t *testing.T) {
	if n := len(loadJSONL[secretCase](t, "secrets.jsonl")); n < 150 {
		t.Fatalf("secrets corpus has %d cases, want >= 150", n)
	}
	if n := len(loadJSONL[lookalikeCase](t, "lookalikes.jsonl")); n < 20 {
		t.Fatalf("lookalike corpus has %d cases, want >= 20", n)
	}
}

func TestSecretsVanishFromEveryStream(t *testing.T) {
	r := mustNew(t)
	for _, c := range loadJSONL[secretCase](t, "secrets.jsonl") {
		for stream, out := range streams(r, c.Input) {
			for _, f := range c.Forbidden {
				if strings.Contains(out, f) || strings.Contains(out, strings.Trim(quote(f), `"`)) {
					t.Errorf("%s: %s still carries the secret: %q", c.Name, stream, out)
				}
			}
			if !strings.Contains(out, Mask) {
				t.Errorf("%s: %s has no mask: %q", c.Name, stream, out)
			}
		}
	}
}

func TestLookalikesPassUnchanged(t *testing.T) {
	r := mustNew(t)
	for _, c := range loadJSONL[lookalikeCase](t, "lookalikes.jsonl") {
		if got := r.String(c.Input); got != c.Input {
			t.Errorf("%s: String changed %q to %q", c.Name, c.Input, got)
		}
		h := http.Header{"X-Debug": {c.Input}}
		if got := r.Header(h).Get("X-Debug"); got != c.Input {
			t.Errorf("%s: Header changed %q to %q", c.Name, c.Input, got)
		}
		doc := `{"message":` + quote(c.Input) + `}`
		if got := string(r.JSON([]byte(doc))); got != doc {
			t.Errorf("%s: JSON changed %s to %s", c.Name, doc, got)
		}
	}
}

func TestRedactionIsIdempotent(t *testing.T) {
	r := mustNew(t)
	for _, c := range loadJSONL[secretCase](t, "secrets.jsonl") {
		once := r.String(c.Input)
		if twice := r.String(once); twice != once {
			t.Errorf("%s: second pass changed %q to %q", c.Name, once, twice)
		}
	}
}

package caddymodule

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

var updateGoldens = flag.Bool("update", false, "rewrite adapt goldens from current output")

// adapt runs the Caddyfile adapter exactly as `nomos adapt` does.
func adapt(t *testing.T, caddyfile string) ([]byte, error) {
	t.Helper()
	ad := caddyconfig.GetAdapter("caddyfile")
	out, _, err := ad.Adapt([]byte(caddyfile), map[string]any{"filename": "Caddyfile"})
	return out, err
}

// TestAdaptGoldens checks every .caddyfiletest: a Caddyfile, a line of
// dashes, and the JSON it must adapt to.
func TestAdaptGoldens(t *testing.T) {
	files, _ := filepath.Glob("testdata/adapt/*.caddyfiletest")
	if len(files) == 0 {
		t.Fatal("no adapt goldens found")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			in, want, ok := strings.Cut(string(raw), "\n----------\n")
			if !ok {
				t.Fatalf("%s: missing ---------- separator", f)
			}
			out, err := adapt(t, in)
			if err != nil {
				t.Fatalf("adapt: %v", err)
			}
			var got bytes.Buffer
			if err := json.Indent(&got, out, "", "\t"); err != nil {
				t.Fatal(err)
			}
			if *updateGoldens {
				if err := os.WriteFile(f, []byte(in+"\n----------\n"+got.String()+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if strings.TrimSpace(got.String()) != strings.TrimSpace(want) {
				t.Errorf("adapted JSON differs\n--- got\n%s\n--- want\n%s", got.String(), want)
			}
		})
	}
}

// TestAdaptErrors checks that every bad Caddyfile is refused with its
// message and the line of the offender. Each file's first line is
// "# error: <substring>".
func TestAdaptErrors(t *testing.T) {
	files, _ := filepath.Glob("testdata/adapt_errors/*.caddyfile")
	if len(files) == 0 {
		t.Fatal("no adapt error cases found")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			first, _, _ := strings.Cut(string(raw), "\n")
			want, ok := strings.CutPrefix(first, "# error: ")
			if !ok {
				t.Fatalf("%s: first line must be '# error: <substring>'", f)
			}
			_, err = adapt(t, string(raw))
			if err == nil {
				t.Fatalf("adapt succeeded; want error containing %q", want)
			}
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("error %q does not contain %q", err, want)
			}
			if !strings.Contains(err.Error(), "Caddyfile:") {
				t.Fatalf("error %q does not name the file and line", err)
			}
		})
	}
}

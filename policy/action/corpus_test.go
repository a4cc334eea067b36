package action

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const corpusDir = "../../testdata/normalization"

// corpusVector is one line of corpus.jsonl.
type corpusVector struct {
	Name       string `json:"name"`
	ActionType string `json:"action_type"`
	Resource   string `json:"resource"`
	Normalized string `json:"normalized"`
}

// bypassVector is one line of bypass_attempts.jsonl.
type bypassVector struct {
	Name          string `json:"name"`
	ActionType    string `json:"action_type"`
	Resource      string `json:"resource"`
	ErrorContains string `json:"error_contains"`
}

// readJSONL decodes every line of a corpus file strictly, so a typo in a
// vector's keys fails the test instead of silently testing nothing.
func readJSONL[T any](t testing.TB, name string) []T {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(corpusDir, name))
	if err != nil {
		t.Fatal(err)
	}
	var out []T
	sc := bufio.NewScanner(bytes.NewReader(data))
	for line := 1; sc.Scan(); line++ {
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		var v T
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("%s:%d: %v", name, line, err)
		}
		out = append(out, v)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestNormalizationCorpus(t *testing.T) {
	vectors := readJSONL[corpusVector](t, "corpus.jsonl")
	if len(vectors) < 260 {
		t.Fatalf("corpus has %d vectors, want at least 260", len(vectors))
	}
	checkCategories(t, vectors)
	seen := map[string]bool{}
	for _, v := range vectors {
		if seen[v.Name] {
			t.Errorf("duplicate vector name %q", v.Name)
		}
		seen[v.Name] = true
		got, err := NormalizeResource(v.ActionType, v.Resource)
		if err != nil || got != v.Normalized {
			t.Errorf("%s: NormalizeResource(%q, %q) = %q, %v; want %q", v.Name, v.ActionType, v.Resource, got, err, v.Normalized)
			continue
		}
		// The normalized form is itself an input that must not move again.
		if again, err := NormalizeResource(v.ActionType, got); err != nil || again != got {
			t.Errorf("%s: not idempotent: %q -> %q, %v", v.Name, got, again, err)
		}
	}
}

// checkCategories keeps every family of the issue represented.
func checkCategories(t *testing.T, vectors []corpusVector) {
	t.Helper()
	want := map[string]int{
		"file_posix": 60, "file_windows": 40, "file_unicode": 40, "file_mixed": 20,
		"url_host": 30, "url_punycode": 20, "url_ipv6": 20, "repo": 30,
		"secret": 15, "mcp": 20, "custom": 15,
	}
	got := map[string]int{}
	for _, v := range vectors {
		for cat := range want {
			if strings.HasPrefix(v.Name, cat+"_") {
				got[cat]++
			}
		}
	}
	for _, cat := range sortedKeys(want) {
		if got[cat] < want[cat] {
			t.Errorf("category %s has %d vectors, want at least %d", cat, got[cat], want[cat])
		}
	}
}

func TestBypassAttempts(t *testing.T) {
	vectors := readJSONL[bypassVector](t, "bypass_attempts.jsonl")
	if len(vectors) < 45 {
		t.Fatalf("bypass corpus has %d vectors, want at least 45", len(vectors))
	}
	seen := map[string]bool{}
	for _, v := range vectors {
		if seen[v.Name] {
			t.Errorf("duplicate vector name %q", v.Name)
		}
		seen[v.Name] = true
		if v.ErrorContains == "" {
			t.Errorf("%s: error_contains is empty", v.Name)
			continue
		}
		got, err := NormalizeResource(v.ActionType, v.Resource)
		if err == nil {
			t.Errorf("%s: NormalizeResource(%q, %q) = %q, want an error containing %q", v.Name, v.ActionType, v.Resource, got, v.ErrorContains)
			continue
		}
		if !errors.Is(err, ErrNormalization) || !strings.Contains(err.Error(), v.ErrorContains) {
			t.Errorf("%s: error %q, want one wrapping ErrNormalization and containing %q", v.Name, err, v.ErrorContains)
		}
		if got != "" {
			t.Errorf("%s: returned %q alongside an error", v.Name, got)
		}
	}
}

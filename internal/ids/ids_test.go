package ids

import (
	"regexp"
	"sort"
	"testing"
	"time"
)

var shape = regexp.MustCompile(`^[0-9a-f]{32}$`)

func TestNewIsHexAndUnique(t *testing.T) {
	seen := map[string]bool{}
	for range 10000 {
		id := New()
		if !shape.MatchString(id) {
			t.Fatalf("id %q: want 32 lowercase hex characters", id)
		}
		if seen[id] {
			t.Fatalf("id %q made twice", id)
		}
		seen[id] = true
	}
}

// Ids made in later milliseconds sort after earlier ones, which is what
// keeps the audit file's index inserts at the right edge.
func TestIdsSortByTime(t *testing.T) {
	base := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	var made []string
	for i := range 50 {
		made = append(made, at(base.Add(time.Duration(i)*time.Millisecond)))
	}
	if !sort.StringsAreSorted(made) {
		t.Fatalf("ids of increasing times do not sort: %v", made)
	}
	if got, want := at(base)[:12], "01a24b39aa00"; got != want {
		t.Fatalf("time prefix of %s = %s, want %s (48-bit big-endian Unix milliseconds)", base, got, want)
	}
}

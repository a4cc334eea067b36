package audit

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// searchFixture records 10 events: every third by bob, every even one
// denied, timestamps one millisecond apart from 03:04:05.001.
func searchFixture(t *testing.T) *SQLiteSink {
	t.Helper()
	path, db := openTestSQLite(t)
	r := newTestRecorder(t, []Sink{db})
	for i := range 10 {
		e := testEvent(i)
		if i%3 == 0 {
			e.Principal = "bob"
		}
		if i%2 == 0 {
			e.Decision = "DENY"
		}
		if i == 9 {
			e.ActionType = "mcp.call"
		}
		if err := r.Record(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { r.Close() })
	reader, err := OpenSQLiteReader(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reader.Close() })
	return reader
}

func actionIDs(p SearchPage) string {
	s := ""
	for _, e := range p.Events {
		s += e.ActionID[4:] + " "
	}
	return s
}

func TestSearch(t *testing.T) {
	s := searchFixture(t)
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cases := []struct {
		name string
		q    SearchQuery
		want string
		next bool
	}{
		{"newest first, paged", SearchQuery{Limit: 3}, "9 8 7 ", true},
		{"second page (seq 7 is act-6)", SearchQuery{Limit: 3, Before: 7}, "5 4 3 ", true},
		{"last page", SearchQuery{Limit: 3, Before: 2}, "0 ", false},
		{"principal", SearchQuery{Principal: "bob"}, "9 6 3 0 ", false},
		{"decision", SearchQuery{Decision: "DENY", Principal: "bob"}, "6 0 ", false},
		{"trace", SearchQuery{TraceID: "trace-1"}, "5 4 3 ", false},
		{"time range", SearchQuery{Since: base.Add(3 * time.Millisecond), Until: base.Add(5 * time.Millisecond)}, "4 3 2 ", false},
		{"action type prefix", SearchQuery{ActionTypePrefix: "mcp."}, "9 ", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := s.Search(context.Background(), c.q)
			if err != nil {
				t.Fatal(err)
			}
			if got := actionIDs(p); got != c.want || (p.Next != 0) != c.next {
				t.Fatalf("got %q next %d, want %q next %v", got, p.Next, c.want, c.next)
			}
		})
	}
}

// TestSearchPagesChain: following Next visits every event exactly once.
func TestSearchPagesChain(t *testing.T) {
	s := searchFixture(t)
	got := ""
	q := SearchQuery{Limit: 4}
	for range 5 {
		p, err := s.Search(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		got += actionIDs(p)
		if p.Next == 0 {
			break
		}
		q.Before = p.Next
	}
	if got != "9 8 7 6 5 4 3 2 1 0 " {
		t.Fatalf("pages visited %q", got)
	}
}

// TestSearchReaderCannotWrite: the UI's reader is read-only.
func TestSearchReaderCannotWrite(t *testing.T) {
	s := searchFixture(t)
	if err := s.Write(context.Background(), testEvent(99), []byte(fmt.Sprintf(`{"event_id":"x%d"}`, 99))); err == nil {
		t.Fatal("a read-only reader wrote an event")
	}
}

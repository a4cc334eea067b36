package approvals

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestSQLiteTwoInstances stands in for the CLI and the server: two Stores,
// each with its own connection, on one database file.
func TestSQLiteTwoInstances(t *testing.T) {
	path := filepath.Join(t.TempDir(), "approvals.db")
	server, err := OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	cli, err := OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()

	req := request()
	req.SingleUse = true
	rec := create(t, server, req, t0)
	again, created, err := cli.CreateOrGetPending(ctx, req, ttl, t0)
	if err != nil || created || again.ID != rec.ID {
		t.Fatalf("second instance did not reuse the pending record: %v %v", created, err)
	}
	if _, err := cli.Decide(ctx, rec.ID, Approved, "bob", t0); err != nil {
		t.Fatal(err)
	}
	if n := concurrentUses(t, rec, server, cli); n != 1 {
		t.Fatalf("%d uses across two instances succeeded, want 1", n)
	}
	info, err := os.Stat(path)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("db mode %v, err %v; want 0600", info.Mode().Perm(), err)
	}
}

func TestSQLiteConcurrentWritersOnTwoInstances(t *testing.T) {
	path := filepath.Join(t.TempDir(), "approvals.db")
	a, err := OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	both := []Store{a, b}
	ids := make(chan string, 20)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			rec, _, err := both[i%2].CreateOrGetPending(ctx, request(), ttl, t0)
			if err != nil {
				t.Error(err)
			}
			ids <- rec.ID
		})
	}
	wg.Wait()
	close(ids)
	seen := map[string]bool{}
	for id := range ids {
		seen[id] = true
	}
	if len(seen) != 1 {
		t.Fatalf("%d records for one request across two instances, want 1", len(seen))
	}
	var id string
	for id = range seen {
	}
	for i := range 20 {
		wg.Go(func() {
			if _, err := both[i%2].Decide(ctx, id, Approved, "bob", t0.Add(time.Second)); err != nil {
				t.Errorf("concurrent identical decisions: %v", err)
			}
		})
	}
	wg.Wait()
}

func TestSQLitePathWithSpecialCharacters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a dir?#%", "approvals.db")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	s, err := OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	create(t, s, request(), t0)
	s.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("database not at %s: %v", path, err)
	}
}

package approvals

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var idPattern = regexp.MustCompile(`^apr_[0-9a-f]{24}$`)

func validID(id string) bool { return idPattern.MatchString(id) }

func TestNewID(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		id := NewID()
		if !validID(id) || seen[id] {
			t.Fatalf("bad or repeated id %q", id)
		}
		seen[id] = true
	}
}

func TestParseDecision(t *testing.T) {
	tests := []struct {
		in, want string
		err      bool
	}{
		{in: "APPROVE", want: Approved}, {in: "approve", want: Approved}, {in: "approved", want: Approved},
		{in: "APPROVED", want: Approved}, {in: " Approve ", want: Approved},
		{in: "DENY", want: Denied}, {in: "deny", want: Denied}, {in: "denied", want: Denied}, {in: "DENIED", want: Denied},
		{in: "", err: true}, {in: "yes", err: true}, {in: "PENDING", err: true}, {in: "approves", err: true},
	}
	for _, tt := range tests {
		got, err := ParseDecision(tt.in)
		if tt.err {
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("ParseDecision(%q) = %q, %v; want ErrInvalid", tt.in, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseDecision(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestCheckApprover(t *testing.T) {
	tests := []struct {
		name      string
		approvers []string
		principal string
		ok        bool
	}{
		{name: "listed", approvers: []string{"alice", "bob"}, principal: "bob", ok: true},
		{name: "not listed", approvers: []string{"alice"}, principal: "bob"},
		{name: "empty list authorizes nobody", approvers: nil, principal: "alice"},
		{name: "empty principal", approvers: []string{""}, principal: ""},
		{name: "case matters", approvers: []string{"Alice"}, principal: "alice"},
	}
	for _, tt := range tests {
		err := CheckApprover(tt.approvers, tt.principal)
		if tt.ok != (err == nil) || (err != nil && !errors.Is(err, ErrForbidden)) {
			t.Errorf("%s: CheckApprover = %v", tt.name, err)
		}
	}
}

func TestDisabled(t *testing.T) {
	var s Store = Disabled{}
	_, _, err := s.CreateOrGetPending(ctx, request(), ttl, t0)
	wantErr(t, err, ErrDisabled)
	_, err = s.Get(ctx, "x")
	wantErr(t, err, ErrDisabled)
	_, err = s.Decide(ctx, "x", Approved, "bob", t0)
	wantErr(t, err, ErrDisabled)
	_, err = s.Use(ctx, "x", "k", "p", "a", "e", t0)
	wantErr(t, err, ErrDisabled)
	_, err = s.List(ctx, Filter{})
	wantErr(t, err, ErrDisabled)
}

func TestRecordJSONNames(t *testing.T) {
	data, err := json.Marshal(Record{ID: "apr_1", ExpiresAt: t0})
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"approval_id"`, `"scope_type"`, `"scope_key"`, `"action_type"`, `"single_use"`, `"expires_at":"2027-01-02T03:04:05.0000006Z"`} {
		if !strings.Contains(string(data), key) {
			t.Errorf("%s lacks %s", data, key)
		}
	}
}

func TestRecordExpired(t *testing.T) {
	r := Record{ExpiresAt: t0}
	if r.Expired(t0.Add(-time.Nanosecond)) || !r.Expired(t0) {
		t.Fatal("a record expires exactly at ExpiresAt")
	}
}

func TestFileStoreInteropAcrossInstances(t *testing.T) {
	path := filepath.Join(t.TempDir(), "approvals.json")
	server, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rec := create(t, server, request(), t0)
	if _, err := cli.Decide(ctx, rec.ID, Approved, "bob", t0.Add(time.Minute)); err != nil {
		t.Fatalf("cli decide: %v", err)
	}
	if _, err := useAs(server, rec, t0.Add(2*time.Minute)); err != nil {
		t.Fatalf("server does not see the cli's decision: %v", err)
	}
	info, err := os.Stat(path)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("file mode %v, err %v; want 0600", info.Mode().Perm(), err)
	}
	leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*.tmp"))
	if len(leftovers) != 0 {
		t.Fatalf("temp files left behind: %v", leftovers)
	}
}

func TestFileStoreRefusesCorruptFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "approvals.json")
	if err := os.WriteFile(path, []byte(`{"version":1,"approvals":[`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenFile(path); err == nil {
		t.Fatal("OpenFile accepted a truncated file")
	}
	if err := os.WriteFile(path, []byte(`{"version":2,"approvals":[]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenFile(path); err == nil || !strings.Contains(err.Error(), "format version 2") {
		t.Fatalf("OpenFile of a newer format: %v", err)
	}
}

func TestFileStoreRetriesWhenFileChangedUnderneath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "approvals.json")
	s, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := OpenFile(path)
	fs := s.(*fileStore)
	first := true
	// Simulate another process writing between our read and our write.
	err = fs.update(ctx, func(d *fileDoc) (bool, error) {
		if first {
			first = false
			create(t, other, request(), t0)
		}
		d.Approvals = append(d.Approvals, newRecord(func() Request { r := request(); r.Fingerprint, r.ScopeKey = "fp-2", "fp-2"; return r }(), ttl, t0))
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	all, _ := s.List(ctx, Filter{})
	if len(all) != 2 {
		t.Fatalf("lost update: %d records, want 2", len(all))
	}
}

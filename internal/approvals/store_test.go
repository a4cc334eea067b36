package approvals

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

var (
	t0  = time.Date(2027, 1, 2, 3, 4, 5, 600, time.UTC)
	ttl = 15 * time.Minute
	ctx = context.Background()
)

// stores lists the Store constructors the conformance suite runs against.
var stores = []struct {
	name string
	file string
	open func(string) (Store, error)
}{
	{name: "sqlite", file: "approvals.db", open: OpenSQLite},
	{name: "file", file: "approvals.json", open: OpenFile},
	{name: "redis", file: "approvals", open: openRedisForTest},
}

// forEachStore runs fn against every store; open reopens the same path.
func forEachStore(t *testing.T, fn func(t *testing.T, s Store, open func() Store)) {
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			if st.name == "redis" && testing.Short() {
				t.Skip("needs redis-server: skipped with -short")
			}
			t.Parallel()
			path := filepath.Join(t.TempDir(), st.file)
			open := func() Store {
				s, err := st.open(path)
				if err != nil {
					t.Fatalf("open: %v", err)
				}
				t.Cleanup(func() { s.Close() })
				return s
			}
			fn(t, open(), open)
		})
	}
}

func request() Request {
	return Request{
		Fingerprint: "fp-1", ScopeType: ScopeFingerprint, ScopeKey: "fp-1",
		TraceID: "trace-1", ActionID: "act-1", ActionType: "fs.write", Resource: "file://workspace/a.txt",
		ParamsHash: "ph-1", Principal: "alice", Agent: "agent-1", Environment: "dev",
	}
}

func create(t *testing.T, s Store, req Request, now time.Time) Record {
	t.Helper()
	rec, created, err := s.CreateOrGetPending(ctx, req, ttl, now)
	if err != nil || !created {
		t.Fatalf("CreateOrGetPending: created %v, err %v", created, err)
	}
	return rec
}

func approved(t *testing.T, s Store, req Request) Record {
	t.Helper()
	rec := create(t, s, req, t0)
	rec, err := s.Decide(ctx, rec.ID, Approved, "bob", t0.Add(time.Minute))
	if err != nil {
		t.Fatalf("Decide: %v", err)
	}
	return rec
}

func wantErr(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error %v, want %v", err, target)
	}
}

func TestCreatePending(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store, _ func() Store) {
		rec := create(t, s, request(), t0)
		if !validID(rec.ID) || rec.Status != Pending || !rec.CreatedAt.Equal(t0) || !rec.ExpiresAt.Equal(t0.Add(ttl)) {
			t.Fatalf("record %+v", rec)
		}
		if rec.Principal != "alice" || rec.Agent != "agent-1" || rec.Environment != "dev" || rec.ScopeKey != "fp-1" || rec.ActionType != "fs.write" {
			t.Fatalf("record fields not stored: %+v", rec)
		}
		got, err := s.Get(ctx, rec.ID)
		if err != nil || !sameRecord(got, rec) {
			t.Fatalf("Get = %+v, %v; want %+v", got, err, rec)
		}
		_, err = s.Get(ctx, "apr_000000000000000000000000")
		wantErr(t, err, ErrNotFound)
	})
}

func TestPendingReuse(t *testing.T) {
	class := request()
	class.ScopeType, class.ScopeKey = ScopeClass, `["fs.write","file://workspace/a.txt","",""]`
	tests := []struct {
		name  string
		first Request
		again func(Request) Request
		at    time.Duration
		reuse bool
	}{
		{name: "same request", first: request(), again: same, reuse: true},
		{name: "same scope, new trace", first: request(), again: func(r Request) Request { r.TraceID = "trace-2"; return r }, reuse: true},
		{name: "changed fingerprint", first: request(), again: func(r Request) Request { r.Fingerprint, r.ScopeKey = "fp-2", "fp-2"; return r }},
		{name: "other principal", first: request(), again: func(r Request) Request { r.Principal = "mallory"; return r }},
		{name: "other agent", first: request(), again: func(r Request) Request { r.Agent = "agent-2"; return r }},
		{name: "other environment", first: request(), again: func(r Request) Request { r.Environment = "prod"; return r }},
		{name: "expired pending", first: request(), again: same, at: ttl},
		{name: "just before expiry", first: request(), again: same, at: ttl - time.Nanosecond, reuse: true},
		{name: "class scope with new params", first: class, again: func(r Request) Request { r.Fingerprint = "fp-9"; return r }, reuse: true},
		{name: "class scope, other resource", first: class, again: func(r Request) Request { r.ScopeKey = `["fs.write","file://workspace/b.txt","",""]`; return r }},
		{name: "class versus fingerprint scope", first: class, again: func(r Request) Request { r.ScopeType, r.ScopeKey = ScopeFingerprint, r.Fingerprint; return r }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			forEachStore(t, func(t *testing.T, s Store, _ func() Store) {
				first := create(t, s, tt.first, t0)
				rec, created, err := s.CreateOrGetPending(ctx, tt.again(tt.first), ttl, t0.Add(tt.at))
				if err != nil {
					t.Fatal(err)
				}
				if reused := !created && rec.ID == first.ID; reused != tt.reuse || created == tt.reuse {
					t.Fatalf("created %v, id %s (first %s), want reuse %v", created, rec.ID, first.ID, tt.reuse)
				}
			})
		})
	}
}

func same(r Request) Request { return r }

func TestDecidedRecordIsNotReused(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store, _ func() Store) {
		rec := approved(t, s, request())
		again := create(t, s, request(), t0.Add(2*time.Minute))
		if again.ID == rec.ID {
			t.Fatal("an approved record was handed out as pending")
		}
	})
}

func TestCreateRejectsInvalidRequests(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Request)
		ttl  time.Duration
	}{
		{name: "zero ttl", mod: func(*Request) {}, ttl: 0},
		{name: "no fingerprint", mod: func(r *Request) { r.Fingerprint = "" }, ttl: ttl},
		{name: "no principal", mod: func(r *Request) { r.Principal = "" }, ttl: ttl},
		{name: "unknown scope", mod: func(r *Request) { r.ScopeType = "global" }, ttl: ttl},
		{name: "fingerprint scope with other key", mod: func(r *Request) { r.ScopeKey = "something" }, ttl: ttl},
		{name: "class scope key not a tuple", mod: func(r *Request) { r.ScopeType = ScopeClass }, ttl: ttl},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			forEachStore(t, func(t *testing.T, s Store, _ func() Store) {
				req := request()
				tt.mod(&req)
				_, _, err := s.CreateOrGetPending(ctx, req, tt.ttl, t0)
				wantErr(t, err, ErrInvalid)
			})
		})
	}
}

func TestDecide(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store, _ func() Store) {
		_, err := s.Decide(ctx, "apr_000000000000000000000000", Approved, "bob", t0)
		wantErr(t, err, ErrNotFound)

		rec := create(t, s, request(), t0)
		_, err = s.Decide(ctx, rec.ID, "MAYBE", "bob", t0)
		wantErr(t, err, ErrInvalid)

		got, err := s.Decide(ctx, rec.ID, Approved, "bob", t0.Add(time.Minute))
		if err != nil || got.Status != Approved || got.DecidedBy != "bob" || !got.UpdatedAt.Equal(t0.Add(time.Minute)) {
			t.Fatalf("Decide = %+v, %v", got, err)
		}
		again, err := s.Decide(ctx, rec.ID, Approved, "carol", t0.Add(2*time.Minute))
		if err != nil || !sameRecord(again, got) {
			t.Fatalf("repeat Decide = %+v, %v; want unchanged %+v", again, err, got)
		}
		_, err = s.Decide(ctx, rec.ID, Denied, "carol", t0.Add(2*time.Minute))
		wantErr(t, err, ErrConflict)
		if stored, _ := s.Get(ctx, rec.ID); stored.Status != Approved || stored.DecidedBy != "bob" {
			t.Fatalf("conflicting decision changed the record: %+v", stored)
		}
	})
}

func TestDecideDenyThenApproveConflicts(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store, _ func() Store) {
		rec := create(t, s, request(), t0)
		if _, err := s.Decide(ctx, rec.ID, Denied, "bob", t0); err != nil {
			t.Fatal(err)
		}
		_, err := s.Decide(ctx, rec.ID, Approved, "bob", t0)
		wantErr(t, err, ErrConflict)
	})
}

func TestDecideExpired(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store, _ func() Store) {
		rec := create(t, s, request(), t0)
		_, err := s.Decide(ctx, rec.ID, Approved, "bob", t0.Add(ttl))
		wantErr(t, err, ErrExpired)
		if stored, _ := s.Get(ctx, rec.ID); stored.Status != Pending {
			t.Fatalf("expired record was decided: %+v", stored)
		}
	})
}

func TestUse(t *testing.T) {
	tests := []struct {
		name    string
		decide  string // "" leaves the record pending
		single  bool
		mod     func(key, principal, agent, env *string)
		at      time.Duration
		wantErr error
	}{
		{name: "approved", decide: Approved},
		{name: "pending", decide: "", wantErr: ErrNotApproved},
		{name: "denied", decide: Denied, wantErr: ErrNotApproved},
		{name: "changed fingerprint", decide: Approved, mod: func(k, _, _, _ *string) { *k = "fp-2" }, wantErr: ErrMismatch},
		{name: "other principal", decide: Approved, mod: func(_, p, _, _ *string) { *p = "mallory" }, wantErr: ErrMismatch},
		{name: "other agent", decide: Approved, mod: func(_, _, a, _ *string) { *a = "agent-2" }, wantErr: ErrMismatch},
		{name: "other environment", decide: Approved, mod: func(_, _, _, e *string) { *e = "prod" }, wantErr: ErrMismatch},
		{name: "expired", decide: Approved, at: ttl, wantErr: ErrExpired},
		{name: "single use", decide: Approved, single: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			forEachStore(t, func(t *testing.T, s Store, _ func() Store) {
				req := request()
				req.SingleUse = tt.single
				rec := create(t, s, req, t0)
				if tt.decide != "" {
					if _, err := s.Decide(ctx, rec.ID, tt.decide, "bob", t0); err != nil {
						t.Fatal(err)
					}
				}
				key, p, a, e := req.ScopeKey, req.Principal, req.Agent, req.Environment
				if tt.mod != nil {
					tt.mod(&key, &p, &a, &e)
				}
				got, err := s.Use(ctx, rec.ID, key, p, a, e, t0.Add(tt.at))
				if tt.wantErr != nil {
					wantErr(t, err, tt.wantErr)
					return
				}
				if err != nil || got.Status != Approved || got.Consumed != tt.single {
					t.Fatalf("Use = %+v, %v", got, err)
				}
			})
		})
	}
}

func useAs(s Store, rec Record, now time.Time) (Record, error) {
	return s.Use(ctx, rec.ID, rec.ScopeKey, rec.Principal, rec.Agent, rec.Environment, now)
}

func TestUseUnknownID(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store, _ func() Store) {
		_, err := s.Use(ctx, "apr_000000000000000000000000", "fp-1", "alice", "agent-1", "dev", t0)
		wantErr(t, err, ErrNotFound)
	})
}

func TestApprovalReusableUntilTTL(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store, _ func() Store) {
		rec := approved(t, s, request())
		for i := range 3 {
			if _, err := useAs(s, rec, t0.Add(time.Duration(i)*time.Minute)); err != nil {
				t.Fatalf("use %d: %v", i, err)
			}
		}
		_, err := useAs(s, rec, t0.Add(ttl))
		wantErr(t, err, ErrExpired)
	})
}

func TestSingleUseConsumedOnce(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store, _ func() Store) {
		req := request()
		req.SingleUse = true
		rec := approved(t, s, req)
		if _, err := useAs(s, rec, t0); err != nil {
			t.Fatal(err)
		}
		_, err := useAs(s, rec, t0)
		wantErr(t, err, ErrConsumed)
	})
}

func TestSingleUseUnderConcurrentUse(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store, _ func() Store) {
		req := request()
		req.SingleUse = true
		rec := approved(t, s, req)
		if n := concurrentUses(t, rec, s); n != 1 {
			t.Fatalf("%d concurrent uses succeeded, want 1", n)
		}
	})
}

// concurrentUses spends rec from 16 goroutines spread over the stores and
// returns how many succeeded; every failure must be ErrConsumed.
func concurrentUses(t *testing.T, rec Record, stores ...Store) int {
	var mu sync.Mutex
	ok := 0
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			_, err := useAs(stores[i%len(stores)], rec, t0.Add(time.Minute))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case !errors.Is(err, ErrConsumed):
				t.Errorf("use: %v", err)
			}
		})
	}
	wg.Wait()
	return ok
}

func TestConcurrentCreateReusesOneRecord(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store, _ func() Store) {
		ids := make(chan string, 16)
		var wg sync.WaitGroup
		for range 16 {
			wg.Go(func() {
				rec, _, err := s.CreateOrGetPending(ctx, request(), ttl, t0)
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
			t.Fatalf("concurrent requests created %d records, want 1", len(seen))
		}
	})
}

func TestReopenPersists(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store, open func() Store) {
		req := request()
		req.SingleUse = true
		rec := approved(t, s, req)
		used, err := useAs(s, rec, t0.Add(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		pending := create(t, s, func() Request { r := request(); r.Fingerprint, r.ScopeKey = "fp-2", "fp-2"; return r }(), t0)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s2 := open()
		got, err := s2.Get(ctx, rec.ID)
		if err != nil || !sameRecord(got, used) {
			t.Fatalf("after reopen Get = %+v, %v; want %+v", got, err, used)
		}
		_, err = useAs(s2, rec, t0.Add(time.Minute))
		wantErr(t, err, ErrConsumed)
		again, created, err := s2.CreateOrGetPending(ctx, func() Request { r := request(); r.Fingerprint, r.ScopeKey = "fp-2", "fp-2"; return r }(), ttl, t0)
		if err != nil || created || again.ID != pending.ID {
			t.Fatalf("pending record not reused after reopen: %+v created %v err %v", again, created, err)
		}
	})
}

func TestList(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store, _ func() Store) {
		var ids []string
		for i := range 4 {
			req := request()
			req.Fingerprint = "fp-" + string(rune('a'+i))
			req.ScopeKey = req.Fingerprint
			rec := create(t, s, req, t0.Add(time.Duration(i)*time.Second))
			ids = append(ids, rec.ID)
		}
		if _, err := s.Decide(ctx, ids[1], Approved, "bob", t0.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		all, err := s.List(ctx, Filter{})
		if err != nil || len(all) != 4 || all[0].ID != ids[3] || all[3].ID != ids[0] {
			t.Fatalf("List = %v, %v; want newest first", idsOf(all), err)
		}
		two, _ := s.List(ctx, Filter{Limit: 2})
		if len(two) != 2 || two[0].ID != ids[3] || two[1].ID != ids[2] {
			t.Fatalf("List limit 2 = %v", idsOf(two))
		}
		pending, _ := s.List(ctx, Filter{Status: Pending})
		if len(pending) != 3 {
			t.Fatalf("pending = %v", idsOf(pending))
		}
		approvedOnly, _ := s.List(ctx, Filter{Status: Approved})
		if len(approvedOnly) != 1 || approvedOnly[0].ID != ids[1] {
			t.Fatalf("approved = %v", idsOf(approvedOnly))
		}
		_, err = s.List(ctx, Filter{Status: "EXPIRED"})
		wantErr(t, err, ErrInvalid)
	})
}

func TestListEmpty(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store, _ func() Store) {
		got, err := s.List(ctx, Filter{})
		if err != nil || len(got) != 0 {
			t.Fatalf("List = %v, %v", got, err)
		}
	})
}

func idsOf(recs []Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, r.ID)
	}
	return out
}

// sameRecord compares records with time.Time.Equal.
func sameRecord(a, b Record) bool {
	ta := []time.Time{a.CreatedAt, a.ExpiresAt, a.UpdatedAt}
	tb := []time.Time{b.CreatedAt, b.ExpiresAt, b.UpdatedAt}
	for i := range ta {
		if !ta[i].Equal(tb[i]) {
			return false
		}
	}
	a.CreatedAt, a.ExpiresAt, a.UpdatedAt = time.Time{}, time.Time{}, time.Time{}
	b.CreatedAt, b.ExpiresAt, b.UpdatedAt = time.Time{}, time.Time{}, time.Time{}
	return a == b
}

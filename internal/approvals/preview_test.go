package approvals

import (
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/caddy-nomos/nomos/internal/sqlitefile"
)

// TestPreviewKeptAndCapped: a reviewer sees the preview the service gave,
// after a reopen, cut to MaxPreviewBytes on a rune boundary.
func TestPreviewKeptAndCapped(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store, open func() Store) {
		req := request()
		req.ParamsPreview = strings.Repeat("é", MaxPreviewBytes) // 2 bytes each
		rec := create(t, s, req, t0)
		got, err := open().Get(ctx, rec.ID)
		if err != nil {
			t.Fatal(err)
		}
		p := got.ParamsPreview
		if len(p) > MaxPreviewBytes || !utf8.ValidString(p) || !strings.HasSuffix(p, "…") || !strings.HasPrefix(p, "éé") {
			t.Fatalf("preview not capped on a rune boundary: %d bytes, valid %v", len(p), utf8.ValidString(p))
		}
		short := request()
		short.ScopeKey, short.Fingerprint, short.ParamsPreview = "fp-2", "fp-2", `{"amount":40}`
		rec2 := create(t, s, short, t0)
		if got, _ := s.Get(ctx, rec2.ID); got.ParamsPreview != `{"amount":40}` {
			t.Fatalf("short preview changed: %q", got.ParamsPreview)
		}
	})
}

// TestSQLiteMigratesVersion1: a file written by the previous schema opens,
// keeps its records and gains the preview column.
func TestSQLiteMigratesVersion1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "approvals.db")
	db, err := sqlitefile.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	v1 := strings.Replace(sqliteSchema, "params_preview TEXT NOT NULL DEFAULT '',", "", 1)
	mustExec(t, db, v1, "PRAGMA user_version = 1",
		`INSERT INTO approvals (approval_id, fingerprint, scope_type, scope_key, status, principal, created_at, expires_at, updated_at)
		 VALUES ('apr_old', 'fp', 'fingerprint', 'fp', 'PENDING', 'alice', 1, 2, 1)`)
	db.Close()
	s, err := OpenSQLite(path)
	if err != nil {
		t.Fatalf("opening a version 1 file: %v", err)
	}
	defer s.Close()
	rec, err := s.Get(ctx, "apr_old")
	if err != nil || rec.Principal != "alice" || rec.ParamsPreview != "" {
		t.Fatalf("old record after migration: %+v, %v", rec, err)
	}
	req := request()
	req.ParamsPreview = "{}"
	if got := create(t, s, req, t0); got.ParamsPreview != "{}" {
		t.Fatalf("new record lost its preview: %q", got.ParamsPreview)
	}
}

func mustExec(t *testing.T, db *sql.DB, stmts ...string) {
	t.Helper()
	for _, q := range stmts {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

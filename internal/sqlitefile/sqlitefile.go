// Package sqlitefile opens the sqlite files Nomos keeps its local state in
// (approvals, tool pins), one way: private to the owner, WAL, and write
// transactions that take the lock up front.
package sqlitefile

import (
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	_ "modernc.org/sqlite" // registers the pure-Go "sqlite" driver
)

// busyTimeoutMS lets another process's writer wait for the lock instead of
// failing at once with SQLITE_BUSY.
const busyTimeoutMS = 10000

// Open creates path if needed, with its parent directories, mode 0600 (so
// it and SQLite's -wal and -shm files, which copy its mode, are private to
// the owner), and opens it in WAL mode with BEGIN IMMEDIATE transactions and
// one connection: in-process callers queue in database/sql instead of
// spinning on SQLite's busy handler; other processes use busy_timeout.
func Open(path string) (*sql.DB, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	f.Close()
	dsn := "file:" + (&url.URL{Path: abs}).EscapedPath() +
		fmt.Sprintf("?_busy_timeout=%d&_journal_mode=WAL&_txlock=immediate", busyTimeoutMS)
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	if err := db.Ping(); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

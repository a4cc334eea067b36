package audit

import (
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	_ "modernc.org/sqlite" // registers the pure-Go "sqlite" driver
)

// busyTimeoutMS lets a writer wait for another connection's lock instead of
// failing at once with SQLITE_BUSY.
const busyTimeoutMS = 5000

// The synchronous modes of a writable file. Both keep WAL, so a commit is
// atomic either way; they differ in what a committed row survives.
const (
	// SyncFull fsyncs the WAL at every commit: a committed row survives
	// power loss and an operating system crash.
	SyncFull = "full"
	// SyncNormal fsyncs only at WAL checkpoints: a committed row survives
	// a crash or SIGKILL of the process (it is in the operating system's
	// page cache), but the last commits before a power loss or kernel crash
	// may be lost. The chain still verifies after such a loss: it ends
	// early, it does not fork.
	SyncNormal = "normal"
)

// openWritable opens (creating if needed) a SQLite file for appending
// evidence: WAL so readers never block the writer, synchronous=FULL so a
// committed row survives power loss, and BEGIN IMMEDIATE so a transaction
// takes the write lock up front rather than failing midway.
func openWritable(path string) (*sql.DB, error) {
	return openWritableSync(path, SyncFull)
}

// openWritableSync is openWritable with an explicit synchronous mode.
func openWritableSync(path, sync string) (*sql.DB, error) {
	pragma := map[string]string{SyncFull: "FULL", SyncNormal: "NORMAL"}[sync]
	if pragma == "" {
		return nil, fmt.Errorf("synchronous %q: want %s or %s", sync, SyncFull, SyncNormal)
	}
	abs, err := prepareFile(path)
	if err != nil {
		return nil, err
	}
	dsn := fileURI(abs) + fmt.Sprintf(
		"?_busy_timeout=%d&_journal_mode=WAL&_synchronous=%s&_txlock=immediate", busyTimeoutMS, pragma)
	return openPinged(dsn)
}

// openReadOnly opens an existing SQLite file without the right to change or
// create it, which is what a verifier must use.
func openReadOnly(path string) (*sql.DB, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(abs); err != nil {
		return nil, err
	}
	return openPinged(fileURI(abs) + fmt.Sprintf("?mode=ro&_busy_timeout=%d", busyTimeoutMS))
}

func openPinged(dsn string) (*sql.DB, error) {
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	if err := db.Ping(); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// prepareFile creates the parent directories and the file itself with
// owner-only permissions: audit rows name principals and resources, and
// SQLite would otherwise create the file world-readable.
func prepareFile(path string) (string, error) {
	if path == "" {
		return "", errors.New("empty path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return "", err
	}
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return "", err
	}
	return abs, f.Close()
}

// fileURI escapes the path so that '?', '#' or '%' in a directory name
// cannot be read as URI syntax by SQLite.
func fileURI(abs string) string {
	return "file:" + (&url.URL{Path: filepath.ToSlash(abs)}).EscapedPath()
}

// execAll runs schema statements in order.
func execAll(db *sql.DB, stmts ...string) error {
	for _, stmt := range stmts {
		if _, err := db.Exec(stmt); err != nil {
			return err
		}
	}
	return nil
}

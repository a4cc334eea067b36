package approvals

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

const (
	fileFormatVersion = 1
	// fileWriteAttempts bounds retries when another process changed the
	// file between our read and our write.
	fileWriteAttempts = 5
)

// fileDoc is the JSON document of a file store.
type fileDoc struct {
	Version   int      `json:"version"`
	Approvals []Record `json:"approvals"`
}

// fileStore keeps approvals in one JSON file. Each operation re-reads the
// file, so a CLI and a server see each other's writes; each write replaces
// the file atomically (temp file, fsync, rename), so a reader never sees a
// torn document. A mutex serializes operations within this Store. Across
// processes there is no lock: before renaming, the store checks that the
// file still holds what it read and retries if not, which narrows but does
// not close the window for a lost update. Use SQLite when several
// processes write often.
type fileStore struct {
	path string
	mu   sync.Mutex
}

// OpenFile opens the JSON approvals file at path, creating it (mode 0600)
// on the first write. A file that exists must parse.
func OpenFile(path string) (Store, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("approvals: open file %s: %w", path, err)
	}
	s := &fileStore{path: abs}
	if _, _, err := s.load(); err != nil {
		return nil, err
	}
	return s, nil
}

// load reads and parses the file; a missing file is an empty store.
func (s *fileStore) load() (fileDoc, []byte, error) {
	raw, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return fileDoc{Version: fileFormatVersion}, nil, nil
	}
	if err != nil {
		return fileDoc{}, nil, fmt.Errorf("approvals: read %s: %w", s.path, err)
	}
	var doc fileDoc
	if err := json.Unmarshal(raw, &doc); err != nil {
		return fileDoc{}, nil, fmt.Errorf("approvals: parse %s: %w", s.path, err)
	}
	if doc.Version != fileFormatVersion {
		return fileDoc{}, nil, fmt.Errorf("approvals: %s has format version %d, want %d", s.path, doc.Version, fileFormatVersion)
	}
	return doc, raw, nil
}

// read runs fn on a fresh copy of the document.
func (s *fileStore) read(ctx context.Context, fn func(*fileDoc) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	doc, _, err := s.load()
	if err != nil {
		return err
	}
	return fn(&doc)
}

// update runs fn on a fresh copy of the document and writes the result if
// fn reports a change. fn may run more than once.
func (s *fileStore) update(ctx context.Context, fn func(*fileDoc) (bool, error)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for range fileWriteAttempts {
		doc, raw, err := s.load()
		if err != nil {
			return err
		}
		changed, err := fn(&doc)
		if err != nil || !changed {
			return err
		}
		if !s.unchanged(raw) {
			continue // another process wrote meanwhile: redo on its version
		}
		return s.write(doc)
	}
	return fmt.Errorf("approvals: %s keeps changing under concurrent writers", s.path)
}

func (s *fileStore) unchanged(raw []byte) bool {
	now, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return raw == nil
	}
	return err == nil && bytes.Equal(now, raw)
}

// write replaces the file atomically.
func (s *fileStore) write(doc fileDoc) error {
	data, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return fmt.Errorf("approvals: encode: %w", err)
	}
	dir := filepath.Dir(s.path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(s.path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("approvals: write %s: %w", s.path, err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if err := writeSync(tmp, append(data, '\n')); err != nil {
		return fmt.Errorf("approvals: write %s: %w", s.path, err)
	}
	if err := os.Rename(tmp.Name(), s.path); err != nil {
		return fmt.Errorf("approvals: write %s: %w", s.path, err)
	}
	syncDir(dir)
	return nil
}

func writeSync(f *os.File, data []byte) error {
	_, err := f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// syncDir makes the rename durable. Some platforms cannot sync a directory;
// the rename has happened either way, so failures are ignored.
func syncDir(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	defer d.Close()
	_ = d.Sync()
}

func (d *fileDoc) find(id string) int {
	return slices.IndexFunc(d.Approvals, func(r Record) bool { return r.ID == id })
}

func (s *fileStore) CreateOrGetPending(ctx context.Context, req Request, ttl time.Duration, now time.Time) (Record, bool, error) {
	if err := validateRequest(req, ttl); err != nil {
		return Record{}, false, err
	}
	var rec Record
	var created bool
	err := s.update(ctx, func(d *fileDoc) (bool, error) {
		var found bool
		if rec, found = newestPending(d, req, now); found {
			created = false
			return false, nil
		}
		rec, created = newRecord(req, ttl, now), true
		d.Approvals = append(d.Approvals, rec)
		return true, nil
	})
	if err != nil {
		return Record{}, false, err
	}
	return rec, created, nil
}

// newestPending returns the newest pending record req may reuse.
func newestPending(d *fileDoc, req Request, now time.Time) (Record, bool) {
	var best Record
	found := false
	for _, r := range d.Approvals {
		if reusable(r, req, now) && (!found || r.CreatedAt.After(best.CreatedAt)) {
			best, found = r, true
		}
	}
	return best, found
}

func (s *fileStore) Get(ctx context.Context, id string) (Record, error) {
	var rec Record
	err := s.read(ctx, func(d *fileDoc) error {
		i := d.find(id)
		if i < 0 {
			return notFound(id)
		}
		rec = d.Approvals[i]
		return nil
	})
	return rec, err
}

// transition applies fn to the record with id and stores it if changed.
func (s *fileStore) transition(ctx context.Context, id string, fn func(*Record) (bool, error)) (Record, error) {
	var rec Record
	err := s.update(ctx, func(d *fileDoc) (bool, error) {
		i := d.find(id)
		if i < 0 {
			return false, notFound(id)
		}
		rec = d.Approvals[i]
		changed, err := fn(&rec)
		if changed {
			d.Approvals[i] = rec
		}
		return changed, err
	})
	if err != nil {
		return Record{}, err
	}
	return rec, nil
}

func (s *fileStore) Decide(ctx context.Context, id, decision, approver string, now time.Time) (Record, error) {
	return s.transition(ctx, id, func(r *Record) (bool, error) { return decide(r, decision, approver, now) })
}

func (s *fileStore) Use(ctx context.Context, id, scopeKey, principal, agent, environment string, now time.Time) (Record, error) {
	return s.transition(ctx, id, func(r *Record) (bool, error) {
		return use(r, scopeKey, principal, agent, environment, now)
	})
}

func (s *fileStore) List(ctx context.Context, f Filter) ([]Record, error) {
	if err := validateFilter(f); err != nil {
		return nil, err
	}
	var out []Record
	err := s.read(ctx, func(d *fileDoc) error {
		for _, r := range d.Approvals {
			if f.Status == "" || r.Status == f.Status {
				out = append(out, r)
			}
		}
		return nil
	})
	slices.SortStableFunc(out, newestFirst)
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, err
}

func newestFirst(a, b Record) int {
	if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
		return c
	}
	return strings.Compare(b.ID, a.ID)
}

func (s *fileStore) Close() error { return nil }

// Interface guards
var _ Store = (*fileStore)(nil)

package pins

import (
	"context"
	"sort"
	"sync"
)

// memoryStore keeps pins in process memory, for `runtime { stateless }`:
// they reset when the process restarts, so the first listing after a
// restart is trusted again (trust on first use).
type memoryStore struct {
	mu   sync.Mutex
	pins map[string]map[string]Pin // upstream -> tool -> pin
}

// NewMemory returns an empty in-memory pin store.
func NewMemory() Store { return &memoryStore{pins: map[string]map[string]Pin{}} }

func (s *memoryStore) Update(_ context.Context, upstream string, fn func(map[string]Pin) ([]Pin, error)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := make(map[string]Pin, len(s.pins[upstream]))
	for k, v := range s.pins[upstream] {
		cur[k] = v
	}
	writes, err := fn(cur)
	if err != nil {
		return err
	}
	if len(writes) > 0 && s.pins[upstream] == nil {
		s.pins[upstream] = map[string]Pin{}
	}
	for _, p := range writes {
		s.pins[upstream][p.Tool] = p
	}
	return nil
}

func (s *memoryStore) List(_ context.Context, upstream string) ([]Pin, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Pin
	for u, tools := range s.pins {
		if upstream != "" && u != upstream {
			continue
		}
		for _, p := range tools {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Upstream != out[j].Upstream {
			return out[i].Upstream < out[j].Upstream
		}
		return out[i].Tool < out[j].Tool
	})
	return out, nil
}

func (s *memoryStore) Close() error { return nil }

// Interface guards
var _ Store = (*memoryStore)(nil)

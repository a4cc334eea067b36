package caddymodule

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"

	"github.com/caddyserver/caddy/v2"
)

// pool holds every piece of state that must survive a config reload
// (compiled policies, audit chain heads, approval stores, replay caches),
// keyed by a hash of its configuration, so an unchanged reload rebuilds
// nothing and keeps counters and connections.
var pool = caddy.NewUsagePool()

// pooled adapts any value to caddy.Destructor.
type pooled[T any] struct {
	value   T
	destroy func() error
}

func (p *pooled[T]) Destruct() error {
	if p.destroy == nil {
		return nil
	}
	return p.destroy()
}

// loadPooled returns the shared value for key, building it on first use.
// The caller must release key with pool.Delete in Cleanup.
func loadPooled[T any](key string, build func() (T, func() error, error)) (T, error) {
	v, _, err := pool.LoadOrNew(key, func() (caddy.Destructor, error) {
		value, destroy, err := build()
		if err != nil {
			return nil, err
		}
		return &pooled[T]{value: value, destroy: destroy}, nil
	})
	if err != nil {
		var zero T
		return zero, err
	}
	return v.(*pooled[T]).value, nil
}

// configKey hashes any JSON-encodable configuration (including resolved
// secrets, which never leave the hash) into a pool key. A part that does not
// marshal gets a random key, so its state is rebuilt rather than shared with
// an unrelated config (say, one with a revoked API key).
func configKey(kind string, parts ...any) string {
	h := sha256.New()
	for _, p := range parts {
		b, err := json.Marshal(p)
		if err != nil {
			b = make([]byte, 32)
			_, _ = rand.Read(b)
		}
		h.Write(b)
		h.Write([]byte{0})
	}
	return kind + ":" + hex.EncodeToString(h.Sum(nil))
}

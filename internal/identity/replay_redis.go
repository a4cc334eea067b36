package identity

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/caddy-nomos/nomos/internal/sharedstate"
)

// SharedReplay is the ReplayStore on the shared Redis: every replica
// admits a signature at most once, with one SET NX per signature. An entry
// lives as long as its timestamp stays within the clock skew, so Redis
// bounds the store and no floor is needed.
type SharedReplay struct {
	c    *sharedstate.Client
	skew time.Duration
}

// NewSharedReplay returns the shared store; skew 0 means
// DefaultMaxClockSkew.
func NewSharedReplay(c *sharedstate.Client, skew time.Duration) *SharedReplay {
	if skew <= 0 {
		skew = DefaultMaxClockSkew
	}
	return &SharedReplay{c: c, skew: skew}
}

// Admit implements ReplayStore. The key is hashed: it holds agent ids and
// nonces of any shape. It lives until the signature expires on this
// replica's clock plus one more skew window: a replica whose clock runs
// behind (by up to the skew the signatures tolerate) still accepts the
// timestamp after this one stopped, and must still find the nonce.
func (s *SharedReplay) Admit(ctx context.Context, key string, ts, now time.Time) error {
	ttl := ts.Add(2 * s.skew).Sub(now)
	if ttl < time.Second {
		ttl = time.Second
	}
	sum := sha256.Sum256([]byte(key))
	seen, err := s.c.SeenOnce(ctx, hex.EncodeToString(sum[:]), ttl)
	if err != nil {
		return fmt.Errorf("replay store: %w", err)
	}
	if seen {
		return ErrReplayed
	}
	return nil
}

// Interface guards
var _ ReplayStore = (*SharedReplay)(nil)

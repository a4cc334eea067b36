package credentials

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/caddy-nomos/nomos/internal/redact"
)

// MaxLeases bounds the live leases, so a client checking out in a loop
// cannot grow the broker's memory without bound.
const MaxLeases = 10000

// Errors returned by the broker. Their messages never contain a value.
var (
	ErrUnknownSecret   = errors.New("credentials: unknown secret")
	ErrLeaseNotFound   = errors.New("credentials: credential lease not found")
	ErrLeaseExpired    = errors.New("credentials: credential lease expired")
	ErrBindingMismatch = errors.New("credentials: credential lease binding mismatch")
	ErrTooManyLeases   = errors.New("credentials: too many live leases")
	ErrInvalidBinding  = errors.New("credentials: binding needs a principal and a trace id")
)

var (
	secretIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,127}$`)
	envKeyPattern   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)
)

// Secret is one brokered credential.
type Secret struct {
	// ID names the secret, as the last segment of secret://<host>/<id>. It is
	// lowercase because resource normalization lowercases it.
	ID string
	// EnvKey is the environment variable a lease materializes into.
	EnvKey string
	// Value is the credential. It is never returned by Checkout.
	Value string
	// TTL is the lifetime of a lease; it must be positive.
	TTL time.Duration
}

// Binding is who a lease belongs to; every field must match to use it.
type Binding struct {
	Principal, Agent, Environment, TraceID string
}

type lease struct {
	secretID string
	bind     Binding
	expires  time.Time
}

// Broker holds the configured secrets and the live leases. It is safe for
// concurrent use.
type Broker struct {
	secrets map[string]Secret
	values  []string
	clock   func() time.Time

	mu     sync.Mutex
	leases map[string]lease
}

// NewBroker validates the secrets. clock may be nil for time.Now.
func NewBroker(secrets []Secret, clock func() time.Time) (*Broker, error) {
	if clock == nil {
		clock = time.Now
	}
	b := &Broker{secrets: make(map[string]Secret, len(secrets)), clock: clock, leases: make(map[string]lease)}
	for i, s := range secrets {
		if err := validateSecret(s); err != nil {
			return nil, fmt.Errorf("credentials: secret %d: %w", i, err)
		}
		if _, dup := b.secrets[s.ID]; dup {
			return nil, fmt.Errorf("credentials: secret %d: duplicate id %q", i, s.ID)
		}
		b.secrets[s.ID] = s
		b.values = append(b.values, s.Value)
	}
	slices.Sort(b.values)
	b.values = slices.Compact(b.values)
	return b, nil
}

func validateSecret(s Secret) error {
	switch {
	case !secretIDPattern.MatchString(s.ID):
		return fmt.Errorf("id %q must match %s", s.ID, secretIDPattern)
	case !envKeyPattern.MatchString(s.EnvKey):
		return fmt.Errorf("env key %q must match %s", s.EnvKey, envKeyPattern)
	case len(s.Value) < redact.MinExactSecretBytes:
		return fmt.Errorf("value is shorter than %d bytes and could not be redacted", redact.MinExactSecretBytes)
	case s.TTL <= 0:
		return errors.New("ttl must be positive")
	}
	return nil
}

// Checkout leases the secret to bind and returns the lease id ("lease_" and
// 24 hex digits) and its expiry. It never returns the value.
func (b *Broker) Checkout(secretID string, bind Binding) (string, time.Time, error) {
	s, ok := b.secrets[secretID]
	if !ok {
		return "", time.Time{}, ErrUnknownSecret
	}
	if bind.Principal == "" || bind.TraceID == "" {
		return "", time.Time{}, ErrInvalidBinding
	}
	id, err := newLeaseID()
	if err != nil {
		return "", time.Time{}, err
	}
	now := b.clock()
	l := lease{secretID: s.ID, bind: bind, expires: now.Add(s.TTL)}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.leases) >= MaxLeases {
		b.sweepLocked(now)
	}
	if len(b.leases) >= MaxLeases {
		return "", time.Time{}, ErrTooManyLeases
	}
	b.leases[id] = l
	return id, l.expires, nil
}

// Materialize resolves leases held by bind into "KEY=value" environment
// entries (sorted by key) and the values themselves. Every lease must exist,
// be unexpired and match bind exactly, or nothing is returned.
func (b *Broker) Materialize(leaseIDs []string, bind Binding) ([]string, []string, error) {
	byKey := make(map[string]string, len(leaseIDs))
	for _, id := range leaseIDs {
		s, err := b.resolve(id, bind)
		if err != nil {
			return nil, nil, err
		}
		if v, dup := byKey[s.EnvKey]; dup && v != s.Value {
			return nil, nil, fmt.Errorf("credentials: two leases set %s", s.EnvKey)
		}
		byKey[s.EnvKey] = s.Value
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	env := make([]string, len(keys))
	values := make([]string, len(keys))
	for i, k := range keys {
		env[i], values[i] = k+"="+byKey[k], byKey[k]
	}
	return env, values, nil
}

// resolve returns the secret behind a live lease held by bind.
func (b *Broker) resolve(id string, bind Binding) (Secret, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	l, ok := b.leases[id]
	switch {
	case !ok:
		return Secret{}, ErrLeaseNotFound
	case !b.clock().Before(l.expires):
		delete(b.leases, id)
		return Secret{}, ErrLeaseExpired
	case l.bind != bind:
		return Secret{}, ErrBindingMismatch
	}
	return b.secrets[l.secretID], nil
}

// Values returns every configured secret value, sorted, for exact-value
// redaction. The caller must not log or return them.
func (b *Broker) Values() []string {
	return slices.Clone(b.values)
}

// SecretIDs returns the configured secret ids, sorted.
func (b *Broker) SecretIDs() []string {
	ids := make([]string, 0, len(b.secrets))
	for id := range b.secrets {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// sweepLocked forgets expired leases; b.mu must be held. It runs only when
// the lease table is full, so its cost is paid once per MaxLeases checkouts.
func (b *Broker) sweepLocked(now time.Time) {
	for id, l := range b.leases {
		if !now.Before(l.expires) {
			delete(b.leases, id)
		}
	}
}

func newLeaseID() (string, error) {
	var raw [12]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("credentials: lease id: %w", err)
	}
	return "lease_" + hex.EncodeToString(raw[:]), nil
}

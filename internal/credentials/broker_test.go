package credentials

import (
	"errors"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

var alice = Binding{Principal: "alice", Agent: "coder", Environment: "dev", TraceID: "trace-1"}

func newTestBroker(t *testing.T) (*Broker, *fakeClock) {
	t.Helper()
	clock := &fakeClock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	b, err := NewBroker([]Secret{
		{ID: "db_password", EnvKey: "DB_PASSWORD", Value: "pg-s3cret-value-1", TTL: time.Minute},
		{ID: "api_token", EnvKey: "API_TOKEN", Value: "tok-abcdef-123456", TTL: time.Hour},
	}, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	return b, clock
}

func TestCheckoutReturnsOnlyALeaseID(t *testing.T) {
	b, clock := newTestBroker(t)
	id, expires, err := b.Checkout("db_password", alice)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^lease_[0-9a-f]{24}$`).MatchString(id) {
		t.Errorf("lease id %q has the wrong shape", id)
	}
	if strings.Contains(id, "pg-s3cret") {
		t.Error("lease id carries the value")
	}
	if want := clock.Now().Add(time.Minute); !expires.Equal(want) {
		t.Errorf("expires %v, want %v", expires, want)
	}
	other, _, _ := b.Checkout("db_password", alice)
	if other == id {
		t.Error("two checkouts returned the same lease id")
	}
}

func TestMaterialize(t *testing.T) {
	b, _ := newTestBroker(t)
	l1, _, _ := b.Checkout("db_password", alice)
	l2, _, _ := b.Checkout("api_token", alice)
	env, values, err := b.Materialize([]string{l1, l2}, alice)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"API_TOKEN=tok-abcdef-123456", "DB_PASSWORD=pg-s3cret-value-1"}; !slices.Equal(env, want) {
		t.Errorf("env = %v, want %v", env, want)
	}
	if want := []string{"tok-abcdef-123456", "pg-s3cret-value-1"}; !slices.Equal(values, want) {
		t.Errorf("values = %v, want %v", values, want)
	}
}

func TestMaterializeRefusals(t *testing.T) {
	b, clock := newTestBroker(t)
	lease, _, _ := b.Checkout("db_password", alice)
	longLease, _, _ := b.Checkout("api_token", alice)
	for _, tt := range []struct {
		name string
		bind Binding
		want error
	}{
		{"other principal", Binding{"mallory", "coder", "dev", "trace-1"}, ErrBindingMismatch},
		{"other agent", Binding{"alice", "other", "dev", "trace-1"}, ErrBindingMismatch},
		{"other environment", Binding{"alice", "coder", "prod", "trace-1"}, ErrBindingMismatch},
		{"other trace", Binding{"alice", "coder", "dev", "trace-2"}, ErrBindingMismatch},
	} {
		if _, _, err := b.Materialize([]string{lease}, tt.bind); !errors.Is(err, tt.want) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.want)
		}
	}
	if _, _, err := b.Materialize([]string{"lease_000000000000000000000000"}, alice); !errors.Is(err, ErrLeaseNotFound) {
		t.Errorf("unknown lease: err = %v", err)
	}
	clock.Advance(time.Minute)
	env, _, err := b.Materialize([]string{longLease, lease}, alice)
	if !errors.Is(err, ErrLeaseExpired) || env != nil {
		t.Errorf("expired lease: env = %v, err = %v; want nothing and %v", env, err, ErrLeaseExpired)
	}
	if _, _, err := b.Materialize([]string{lease}, alice); !errors.Is(err, ErrLeaseNotFound) {
		t.Errorf("an expired lease should be forgotten, got %v", err)
	}
}

func TestCheckoutRefusals(t *testing.T) {
	b, _ := newTestBroker(t)
	if _, _, err := b.Checkout("nope", alice); !errors.Is(err, ErrUnknownSecret) {
		t.Errorf("unknown secret: %v", err)
	}
	if _, _, err := b.Checkout("db_password", Binding{Agent: "x"}); !errors.Is(err, ErrInvalidBinding) {
		t.Errorf("empty binding: %v", err)
	}
}

func TestLeaseCapAndSweep(t *testing.T) {
	b, clock := newTestBroker(t)
	for range MaxLeases {
		if _, _, err := b.Checkout("db_password", alice); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := b.Checkout("db_password", alice); !errors.Is(err, ErrTooManyLeases) {
		t.Fatalf("lease %d: err = %v, want %v", MaxLeases+1, err, ErrTooManyLeases)
	}
	clock.Advance(time.Minute)
	if _, _, err := b.Checkout("db_password", alice); err != nil {
		t.Errorf("expired leases were not swept: %v", err)
	}
}

func TestNewBrokerValidation(t *testing.T) {
	good := Secret{ID: "db", EnvKey: "DB", Value: "long-enough-value", TTL: time.Second}
	for _, tt := range []struct {
		name    string
		secrets []Secret
	}{
		{"uppercase id", []Secret{{ID: "DB", EnvKey: "DB", Value: good.Value, TTL: time.Second}}},
		{"id with slash", []Secret{{ID: "a/b", EnvKey: "DB", Value: good.Value, TTL: time.Second}}},
		{"bad env key", []Secret{{ID: "db", EnvKey: "DB-X", Value: good.Value, TTL: time.Second}}},
		{"short value", []Secret{{ID: "db", EnvKey: "DB", Value: "1234", TTL: time.Second}}},
		{"zero ttl", []Secret{{ID: "db", EnvKey: "DB", Value: good.Value}}},
		{"duplicate", []Secret{good, good}},
	} {
		if _, err := NewBroker(tt.secrets, nil); err == nil {
			t.Errorf("%s: accepted", tt.name)
		} else if strings.Contains(err.Error(), good.Value) {
			t.Errorf("%s: error leaks the value: %v", tt.name, err)
		}
	}
}

func TestValuesAndIDs(t *testing.T) {
	b, _ := newTestBroker(t)
	if got := b.Values(); !slices.Equal(got, []string{"pg-s3cret-value-1", "tok-abcdef-123456"}) {
		t.Errorf("Values = %v", got)
	}
	if got := b.SecretIDs(); !slices.Equal(got, []string{"api_token", "db_password"}) {
		t.Errorf("SecretIDs = %v", got)
	}
}

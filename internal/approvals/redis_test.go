package approvals

import (
	"flag"
	"fmt"
	"os"
	"testing"

	"github.com/caddy-nomos/nomos/internal/sharedstate"
	"github.com/caddy-nomos/nomos/internal/sharedstate/redistest"
)

// redisAddr is the package's redis-server, started by TestMain; "" under
// -short, where the redis cases are skipped.
var redisAddr string

func TestMain(m *testing.M) {
	os.Exit(runWithRedis(m))
}

func runWithRedis(m *testing.M) int {
	flag.Parse()
	if !testing.Short() {
		addr, stop, err := redistest.StartMain()
		if err != nil {
			fmt.Fprintln(os.Stderr, "approvals tests:", err)
			return 1
		}
		defer stop()
		redisAddr = addr
	}
	return m.Run()
}

// openRedisForTest opens a store on the package's server; the path (unique
// per test) becomes the key prefix, so tests share nothing, and opening
// the same path again is a second replica on the same state.
func openRedisForTest(path string) (Store, error) {
	if redisAddr == "" {
		return nil, fmt.Errorf("redis store: skipped with -short")
	}
	c, err := sharedstate.Open(sharedstate.Config{Address: redisAddr, KeyPrefix: path + ":"})
	if err != nil {
		return nil, err
	}
	return &closingStore{Store: OpenRedis(c), c: c}, nil
}

// closingStore closes the test's client with the store.
type closingStore struct {
	Store
	c *sharedstate.Client
}

func (s *closingStore) Close() error { return s.c.Close() }

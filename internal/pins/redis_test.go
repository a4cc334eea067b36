package pins

import (
	"flag"
	"fmt"
	"os"
	"testing"

	"github.com/caddy-nomos/nomos/internal/sharedstate"
	"github.com/caddy-nomos/nomos/internal/sharedstate/redistest"
)

var redisAddr string

// TestMain runs the package's tests once per backend: sqlite, then Redis
// (skipped with -short).
func TestMain(m *testing.M) {
	flag.Parse()
	if code := m.Run(); code != 0 || testing.Short() {
		os.Exit(code)
	}
	addr, stop, err := redistest.StartMain()
	if err != nil {
		fmt.Fprintln(os.Stderr, "pins tests:", err)
		os.Exit(1)
	}
	redisAddr, backend = addr, backends[1]
	code := m.Run()
	stop()
	os.Exit(code)
}

func openRedisForTest(t *testing.T, path string) Store {
	c, err := sharedstate.Open(sharedstate.Config{Address: redisAddr, KeyPrefix: path + ":"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return OpenRedis(c)
}

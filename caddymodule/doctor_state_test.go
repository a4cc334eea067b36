package caddymodule

import (
	"context"
	"strings"
	"testing"

	"github.com/caddy-nomos/nomos/internal/pins"
	"github.com/caddy-nomos/nomos/internal/sharedstate/redistest"
)

// TestDoctorState: state.redis passes when Redis answers, fails when it
// does not, and the redis approval store is checked on it.
func TestDoctorState(t *testing.T) {
	srv := redistest.Start(t)
	state := func(addr string) string {
		return withExtra("state {\n\t\t\tredis {\n\t\t\t\taddress " + addr + "\n\t\t\t\tkey_prefix doctor-test:\n\t\t\t}\n\t\t}\n" +
			"\t\tapprovals {\n\t\t\tstore redis\n\t\t\tapprovers reviewer\n\t\t}")
	}
	cases := []struct {
		name, caddyfile string
		check           func(*doctorInput) []doctorCheck
		want            string
	}{
		{"no state pass", withExtra(""), ctxChecks((*doctorInput).checkState), "state.redis=pass"},
		{"redis answers", state(srv.Addr), ctxChecks((*doctorInput).checkState), "state.redis=pass"},
		{"redis store opens", state(srv.Addr), ctxChecks((*doctorInput).checkApprovals), "approvals.store=pass,approvals.approvers=pass"},
		{"redis down fails", state("127.0.0.1:1"), ctxChecks((*doctorInput).checkState), "state.redis=fail"},
		{"redis store down fails", state("127.0.0.1:1"), ctxChecks((*doctorInput).checkApprovals), "approvals.store=fail"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := doctorConfig(t, strings.ReplaceAll(c.caddyfile, "{PORT}", "18089"))
			if got := statuses(c.check(in)); got != c.want {
				t.Fatalf("got %s, want %s\n%+v", got, c.want, c.check(in))
			}
		})
	}
}

// TestDoctorReadsPinsFromTheSharedState: with state { redis } the pins
// live in Redis in every mode, so offline doctor reads them there (not a
// pins.db it would find empty, nor "kept in memory" when stateless).
func TestDoctorReadsPinsFromTheSharedState(t *testing.T) {
	srv := redistest.Start(t)
	for _, stateless := range []bool{false, true} {
		extra := "state {\n\t\t\tredis {\n\t\t\t\taddress " + srv.Addr + "\n\t\t\t\tkey_prefix doctor-pins:\n\t\t\t}\n\t\t}"
		if stateless {
			extra += "\n\t\truntime {\n\t\t\tstateless\n\t\t}\n\t\taudit {\n\t\t\tsink stdout\n\t\t}"
		}
		in := doctorConfig(t, strings.ReplaceAll(withExtra(extra), "{PORT}", "18089"))
		client, closeClient, err := in.sharedClient()
		if err != nil {
			t.Fatal(err)
		}
		pin := pins.Pin{Upstream: "retail", Tool: "lookup", Status: pins.StatusTrusted, Fingerprint: "sha256:a"}
		err = pins.OpenRedis(client).Update(context.Background(), "retail", func(map[string]pins.Pin) ([]pins.Pin, error) {
			return []pins.Pin{pin}, nil
		})
		closeClient()
		if err != nil {
			t.Fatal(err)
		}
		list, inMemory, err := in.pinList(context.Background())
		if err != nil || inMemory || len(list) != 1 || list[0].Tool != "lookup" {
			t.Fatalf("stateless=%v: pins %+v, in memory %v, %v", stateless, list, inMemory, err)
		}
	}
}

package caddymodule

import (
	"strings"
	"testing"

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

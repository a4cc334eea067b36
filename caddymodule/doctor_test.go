package caddymodule

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// doctorConfig adapts a Caddyfile whose {DIR} is a fresh directory and
// {BUNDLE} the repository's base bundle, and decodes it for the checks.
func doctorConfig(t *testing.T, caddyfile string) *doctorInput {
	t.Helper()
	dir := t.TempDir()
	bundle, _ := filepath.Abs("../examples/policies/base.yaml")
	caddyfile = strings.NewReplacer("{DIR}", dir, "{BUNDLE}", bundle).Replace(caddyfile)
	cfgJSON, err := adapt(t, caddyfile)
	if err != nil {
		t.Fatalf("adapt: %v", err)
	}
	in, err := decodeDoctorInput(cfgJSON)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	in.ctx = ctx
	return in
}

// nomosBlock is a minimal sound app; tests replace pieces of it.
const nomosBlock = `{
	admin off
	nomos {
		policy default {
			bundle {BUNDLE}
		}
		identity {
			api_key 0123456789abcdef0123456789abcdef alice
		}
		audit {
			sink sqlite {DIR}/audit.db
		}
		%EXTRA%
	}
}
http://:{PORT} {
	bind 127.0.0.1
	nomos_api
}
`

func withExtra(extra string) string { return strings.Replace(nomosBlock, "%EXTRA%", extra, 1) }

func statuses(checks []doctorCheck) string {
	var out []string
	for _, c := range checks {
		out = append(out, c.ID+"="+c.Status)
	}
	return strings.Join(out, ",")
}

func TestDoctorChecks(t *testing.T) {
	cases := []struct {
		name      string
		caddyfile string
		check     func(*doctorInput) []doctorCheck
		want      string
	}{
		{"bundles pass", withExtra(""), (*doctorInput).checkBundles, "policy.bundles=pass"},
		{"bundles fail", strings.Replace(withExtra(""), "{BUNDLE}", "{DIR}/missing.yaml", 1), (*doctorInput).checkBundles, "policy.bundles=fail"},
		{"secret pass", withExtra(""), (*doctorInput).checkSecrets, "identity.secrets=pass"},
		{"secret short fails", strings.Replace(withExtra(""), "0123456789abcdef0123456789abcdef", "tooshort", 1), (*doctorInput).checkSecrets, "identity.secrets=fail"},
		{"demo secret warns", strings.Replace(withExtra(""), "0123456789abcdef0123456789abcdef", "dev-alice-key", 1), (*doctorInput).checkSecrets, "identity.secrets=warn"},
		{"placeholder secret fails", strings.Replace(withExtra(""), "0123456789abcdef0123456789abcdef", "changeme-changeme-changeme", 1), (*doctorInput).checkSecrets, "identity.secrets=fail"},
		{"anonymous pass", withExtra(""), one((*doctorInput).checkAnonymous), "identity.anonymous=pass"},
		{"anonymous warns", strings.Replace(withExtra(""), "\tnomos_api\n", "\tnomos_api {\n\t\tanonymous guest\n\t}\n", 1), one((*doctorInput).checkAnonymous), "identity.anonymous=warn"},
		{"sink pass", withExtra(""), (*doctorInput).checkAuditSinks, "audit.sinks=pass"},
		{"sink not writable fails", strings.Replace(withExtra(""), "{DIR}/audit.db", "/proc/nomos/audit.db", 1), (*doctorInput).checkAuditSinks, "audit.sinks=fail"},
		{"approvals pass", withExtra("approvals {\n\t\t\tstore sqlite {DIR}/approvals.db\n\t\t\tapprovers reviewer\n\t\t}"), ctxChecks((*doctorInput).checkApprovals), "approvals.store=pass,approvals.approvers=pass"},
		{"approvals store fails", withExtra("approvals {\n\t\t\tstore sqlite /proc/nomos/approvals.db\n\t\t\tapprovers reviewer\n\t\t}"), ctxChecks((*doctorInput).checkApprovals), "approvals.store=fail"},
		{"no approvers warns", withExtra("approvals {\n\t\t\tstore file {DIR}/approvals.json\n\t\t}"), ctxChecks((*doctorInput).checkApprovals), "approvals.store=pass,approvals.approvers=warn"},
		{"upstream fails", withExtra("upstream broken {\n\t\t\tcommand {DIR}/no-such-server\n\t\t}"), ctxChecks((*doctorInput).checkUpstreams), "mcp.upstream=fail"},
		{"tls loopback pass", withExtra(""), (*doctorInput).checkTLS, "tls.posture=pass"},
		{"tls https pass", strings.Replace(withExtra(""), "http://:{PORT} {\n\tbind 127.0.0.1", "https://nomos.example.com {\n\ttls internal", 1), (*doctorInput).checkTLS, "tls.posture=pass"},
		{"tls plaintext fails", strings.Replace(withExtra(""), "\tbind 127.0.0.1\n", "", 1), (*doctorInput).checkTLS, "tls.posture=fail"},
		{"mtls unused pass", withExtra(""), one((*doctorInput).checkMTLS), "tls.mtls=pass"},
		{"mtls without client auth fails", strings.Replace(withExtra(""), "\t\t}\n\t\taudit", "\t\t\tmtls {\n\t\t\t\tmode subject\n\t\t\t}\n\t\t}\n\t\taudit", 1), one((*doctorInput).checkMTLS), "tls.mtls=fail"},
		{"mtls verified pass", strings.Replace(strings.Replace(withExtra(""), "\t\t}\n\t\taudit", "\t\t\tmtls {\n\t\t\t\tmode subject\n\t\t\t}\n\t\t}\n\t\taudit", 1),
			"http://:{PORT} {\n\tbind 127.0.0.1", "https://nomos.example.com {\n\ttls internal {\n\t\tclient_auth {\n\t\t\tmode require_and_verify\n\t\t}\n\t}", 1), one((*doctorInput).checkMTLS), "tls.mtls=pass"},
		{"stateless pass", withExtra(""), one((*doctorInput).checkStateless), "runtime.stateless=pass"},
		{"stateless with approvals fails", strings.Replace(withExtra("approvals\n\t\truntime {\n\t\t\tstateless\n\t\t}"), "sink sqlite {DIR}/audit.db", "sink stdout", 1), one((*doctorInput).checkStateless), "runtime.stateless=fail"},
		{"assurance unmanaged warns", withExtra(""), one((*doctorInput).checkAssurance), "assurance.level=warn"},
		{"assurance guarded pass", withExtra("runtime {\n\t\t\tdeployment_mode k8s\n\t\t}"), one((*doctorInput).checkAssurance), "assurance.level=pass"},
		{"provision pass", withExtra(""), one((*doctorInput).checkProvision), "config.provision=pass"},
		{"provision fails", withExtra("redact \"(\""), one((*doctorInput).checkProvision), "config.provision=fail"},
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

func one(fn func(*doctorInput) doctorCheck) func(*doctorInput) []doctorCheck {
	return func(in *doctorInput) []doctorCheck { return []doctorCheck{fn(in)} }
}

func ctxChecks(fn func(*doctorInput, context.Context) []doctorCheck) func(*doctorInput) []doctorCheck {
	return func(in *doctorInput) []doctorCheck { return fn(in, context.Background()) }
}

// TestDoctorUpstreamStarts runs the retail demo server for real: doctor
// starts it, lists its tools and stops it.
func TestDoctorUpstreamStarts(t *testing.T) {
	bin := retailMCP(t)
	in := doctorConfig(t, strings.ReplaceAll(withExtra("upstream retail {\n\t\t\tcommand "+bin+"\n\t\t}"), "{PORT}", "18089"))
	checks := in.checkUpstreams(context.Background())
	if statuses(checks) != "mcp.upstream=pass" || !strings.Contains(strings.Join(checks[0].Evidence, " "), "tools ") {
		t.Fatalf("%+v", checks)
	}
}

func TestDoctorConfigLoad(t *testing.T) {
	if _, c := loadDoctorInput(filepath.Join(t.TempDir(), "missing.Caddyfile"), ""); c.Status != checkFail {
		t.Fatalf("missing config: %+v", c)
	}
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte("http://:18089 {\n\trespond ok\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, c := loadDoctorInput(path, ""); c.Status != checkFail || !strings.Contains(c.Message, "no nomos app") {
		t.Fatalf("config without nomos: %+v", c)
	}
	if _, c := loadDoctorInput("../Caddyfile.example", ""); c.Status != checkPass {
		t.Fatalf("Caddyfile.example: %+v", c)
	}
}

// TestDoctorReportStatus: the report is as bad as its worst check.
func TestDoctorReportStatus(t *testing.T) {
	pass, warn, fail := doctorCheck{Status: checkPass}, doctorCheck{Status: checkWarn}, doctorCheck{Status: checkFail}
	for _, c := range []struct {
		checks []doctorCheck
		want   string
	}{
		{[]doctorCheck{pass, pass}, checkPass},
		{[]doctorCheck{pass, warn}, checkWarn},
		{[]doctorCheck{fail, warn, pass}, checkFail},
	} {
		if got := finishReport(c.checks, "").Status; got != c.want {
			t.Fatalf("%v: got %s, want %s", c.checks, got, c.want)
		}
	}
}

var (
	retailOnce sync.Once
	retailBin  string
	retailErr  error
)

// retailMCP builds the retail demo MCP server once per test run.
func retailMCP(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a real upstream: skipped with -short")
	}
	retailOnce.Do(func() {
		dir, err := os.MkdirTemp("", "retail-mcp")
		if err != nil {
			retailErr = err
			return
		}
		retailBin = filepath.Join(dir, "retail-mcp")
		out, err := exec.Command("go", "build", "-o", retailBin, "../examples/retail/retail-mcp").CombinedOutput()
		if err != nil {
			retailErr = err
			t.Log(string(out))
		}
	})
	if retailErr != nil {
		t.Fatal(retailErr)
	}
	return retailBin
}

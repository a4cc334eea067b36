package main

import (
	"encoding/json"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// runDoctor runs `nomos doctor` from the repository root with a private
// data directory and the Makefile's demo keys, returning stdout and the
// exit code.
func runDoctor(t *testing.T, args ...string) (string, int) {
	t.Helper()
	bin := nomosBinary(t)
	cmd := exec.Command(bin, append([]string{"doctor"}, args...)...)
	cmd.Dir = "../.."
	cmd.Env = append(cmd.Environ(), "XDG_DATA_HOME="+t.TempDir(), "HOME="+t.TempDir(),
		"NOMOS_API_KEY=dev-alice-key", "NOMOS_REVIEWER_KEY=dev-reviewer-key", "NOMOS_AGENT_SECRET=dev-agent-secret")
	out, err := cmd.Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(out), 0
}

type doctorOutput struct {
	Status         string `json:"status"`
	AssuranceLevel string `json:"assurance_level"`
	Checks         []struct {
		ID, Subject, Status, Remediation string
	} `json:"checks"`
}

func (d doctorOutput) status(id, subject string) string {
	for _, c := range d.Checks {
		if c.ID == id && (subject == "" || c.Subject == subject) {
			return c.Status
		}
	}
	return "missing"
}

// TestDoctorCaddyfileExample: the demo config is sound but uses demo keys,
// so doctor exits 0 with warnings (needs bin/retail-mcp: make build).
func TestDoctorCaddyfileExample(t *testing.T) {
	if _, err := exec.LookPath(filepath.Join("../..", "bin", "retail-mcp")); err != nil {
		t.Fatalf("bin/retail-mcp is missing: run make build first (%v)", err)
	}
	out, code := runDoctor(t, "--config", "Caddyfile.example", "--format", "json")
	var rep doctorOutput
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("doctor json: %v\n%s", err, out)
	}
	if code != 0 || rep.Status != "warn" || rep.AssuranceLevel != "BEST_EFFORT" {
		t.Fatalf("exit %d, status %s, level %s\n%s", code, rep.Status, rep.AssuranceLevel, out)
	}
	for _, want := range [][3]string{
		{"identity.secrets", "api_key alice", "warn"}, {"identity.secrets", "agent_secret demo-agent", "warn"},
		{"policy.bundles", "default", "pass"}, {"mcp.upstream", "retail", "pass"}, {"approvals.store", "", "pass"},
		{"tls.posture", "", "pass"}, {"config.provision", "", "pass"},
	} {
		if got := rep.status(want[0], want[1]); got != want[2] {
			t.Errorf("%s [%s]: %s, want %s", want[0], want[1], got, want[2])
		}
	}
	if strings.Contains(out, "dev-alice-key") {
		t.Fatal("doctor printed a secret")
	}
}

// TestDoctorWeakConfig: the deliberately weak example fails, naming each
// problem, in text with a remediation.
func TestDoctorWeakConfig(t *testing.T) {
	out, code := runDoctor(t, "--config", "examples/doctor/weak.Caddyfile")
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, out)
	}
	for _, want := range []string{
		"FAIL  identity.secrets [api_key alice]", "WARN  identity.secrets [agent_secret demo-agent]",
		"WARN  identity.anonymous", "FAIL  tls.posture", "FAIL  tls.mtls", "FAIL  runtime.stateless", "fix: ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
	if strings.Contains(out, "short-key") {
		t.Fatal("doctor printed a secret")
	}
}

func TestDoctorUsage(t *testing.T) {
	for _, args := range [][]string{{}, {"--config", "Caddyfile.example", "--format", "xml"}, {"--bogus"}} {
		if _, code := runDoctor(t, args...); code != 2 {
			t.Errorf("doctor %v: exit %d, want 2", args, code)
		}
	}
	if out, code := runDoctor(t, "--help"); code != 0 || !strings.Contains(out, "--format") {
		t.Errorf("doctor --help: exit %d\n%s", code, out)
	}
}

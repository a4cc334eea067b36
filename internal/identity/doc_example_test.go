package identity

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestIdentityDocWorkedExample runs the worked example of docs/identity.md
// as printed (it needs openssl, as the README does) and checks its output,
// and the header it shows, against Sign: the documentation and the
// implementation cannot drift apart.
func TestIdentityDocWorkedExample(t *testing.T) {
	raw, err := os.ReadFile("../../docs/identity.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(raw), "\n### Worked example\n")
	if !ok {
		t.Fatal("docs/identity.md has no ### Worked example")
	}
	script := fenced(t, section, "```sh\n")
	printed := strings.Fields(fenced(t, section, "```text\n"))
	if len(printed) != 2 {
		t.Fatalf("the example prints %d values, want 2", len(printed))
	}
	out, err := exec.Command("bash", "-c", "set -eu\n"+script).CombinedOutput()
	if err != nil {
		t.Fatalf("example failed: %v\n%s", err, out)
	}
	if got := strings.Fields(string(out)); strings.Join(got, " ") != strings.Join(printed, " ") {
		t.Fatalf("example prints %q, the doc says %q", got, printed)
	}
	req := SignedRequest{Method: "POST", Target: "/action", Principal: "alice", Agent: "demo-agent",
		Timestamp: "1700000000", Nonce: "4f2d1c0b9a8e7d6c5b4a39281706f5e4", Body: []byte(`{"hello":"world"}`)}
	want := Sign("demo-secret", req)
	if want != SignatureV2Prefix+printed[1] {
		t.Fatalf("Sign = %s, the doc computes %s", want, printed[1])
	}
	if !strings.Contains(section, "X-Nomos-Agent-Signature: "+want+"\n") {
		t.Fatalf("the doc does not show the header X-Nomos-Agent-Signature: %s", want)
	}
}

// fenced returns the body of the first code block opened by fence.
func fenced(t *testing.T, text, fence string) string {
	t.Helper()
	_, rest, ok := strings.Cut(text, fence)
	if !ok {
		t.Fatalf("no %q block", strings.TrimSpace(fence))
	}
	body, _, _ := strings.Cut(rest, "```")
	return body
}

package policy

import (
	"crypto"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestOpenSSLSignatures runs the signing commands of
// docs/policy-language.md and loads the result, so the documentation and
// the verifier cannot drift apart. It needs the openssl command.
func TestOpenSSLSignatures(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	if testing.Short() {
		t.Skip("runs openssl")
	}
	dir := t.TempDir()
	bundle := filepath.Join(dir, "retail.yaml")
	data, err := os.ReadFile(filepath.Join(examplesDir, "retail.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bundle, data, 0o600); err != nil {
		t.Fatal(err)
	}
	scripts := map[string]string{
		"ed25519": `openssl genpkey -algorithm ed25519 -out key.pem && openssl pkey -in key.pem -pubout -out pub.pem &&
openssl dgst -sha256 -binary retail.yaml > retail.yaml.sha256 &&
openssl pkeyutl -sign -inkey key.pem -rawin -in retail.yaml.sha256 | base64 > retail.yaml.sig`,
		"rsa": `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072 -out key.pem && openssl pkey -in key.pem -pubout -out pub.pem &&
openssl dgst -sha256 -sign key.pem retail.yaml | base64 > retail.yaml.sig &&
base64 -d retail.yaml.sig > retail.yaml.sig.bin &&
openssl dgst -sha256 -verify pub.pem -signature retail.yaml.sig.bin retail.yaml`,
	}
	for name, script := range scripts {
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command("sh", "-c", script)
			cmd.Dir = dir
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			pub, _ := os.ReadFile(filepath.Join(dir, "pub.pem"))
			sig, _ := os.ReadFile(filepath.Join(dir, "retail.yaml.sig"))
			key, err := ParseSignatureKey(pub)
			if err != nil {
				t.Fatal(err)
			}
			e, err := Load([]BundleSource{{Path: bundle, Data: data, Signature: sig}}, LoadOptions{VerifyKeys: []crypto.PublicKey{key}})
			if err != nil || !e.Inputs()[0].SignatureVerified {
				t.Fatalf("openssl signature rejected: %v", err)
			}
		})
	}
}

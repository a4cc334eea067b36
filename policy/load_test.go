package policy

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-nomos/nomos/policy/action"
)

const (
	baseBundle = "version: v1\nrules:\n  - {id: base-read, action_type: fs.read, resource: 'file://workspace/**', decision: ALLOW}\n"
	orgBundle  = `{"version":"v1","rules":[{"id":"org-deny-env","action_type":"*","resource":"file://workspace/**/.env","decision":"DENY"}]}`
	dupBundle  = "version: v1\nrules:\n  - {id: base-read, action_type: fs.write, resource: 'file://workspace/**', decision: ALLOW}\n"
)

func TestLoadSeveralBundles(t *testing.T) {
	srcs := []BundleSource{
		{Path: "base.yaml", Role: RoleBaseline, Data: []byte(baseBundle)},
		{Path: "org.json", Role: RoleOrg, Data: []byte(orgBundle)},
	}
	e, err := Load(srcs, LoadOptions{Environment: "prod"})
	if err != nil {
		t.Fatal(err)
	}
	_, h1, _ := ParseBundle("base.yaml", []byte(baseBundle))
	_, h2, _ := ParseBundle("org.json", []byte(orgBundle))
	want, _ := action.CanonicalMarshal(map[string]any{"merge_algorithm_version": "nomos.policy.merge.v1", "bundle_hashes": []string{h1, h2}})
	if e.Hash() != action.SHA256Hex(want) {
		t.Errorf("merged hash %s, want %s", e.Hash(), action.SHA256Hex(want))
	}
	in := e.Inputs()
	if len(in) != 2 || in[0] != (BundleInput{Path: "base.yaml", Hash: h1, Role: "baseline"}) || in[1].Role != "org" {
		t.Errorf("inputs %+v", in)
	}
	rules := e.Rules()
	if rules[0].Source != "base.yaml#"+h1 || rules[1].Source != "org.json#"+h2 {
		t.Errorf("provenance %q %q", rules[0].Source, rules[1].Source)
	}
	checkDecision(t, e.Evaluate(act(t, "fs.read", "file://workspace/a/.env", "")), Deny, ReasonDenyByRule, "org-deny-env")

	// Order matters to the merged hash, not to decisions.
	rev, _ := Load([]BundleSource{srcs[1], srcs[0]}, LoadOptions{})
	if rev.Hash() == e.Hash() {
		t.Error("reordering bundles kept the merged hash")
	}
	single, _ := Load(srcs[:1], LoadOptions{})
	if single.Hash() != h1 {
		t.Errorf("single-bundle hash %s, want the bundle hash %s", single.Hash(), h1)
	}
}

func TestLoadErrors(t *testing.T) {
	base := BundleSource{Path: "base.yaml", Data: []byte(baseBundle)}
	tests := []struct {
		name string
		srcs []BundleSource
		opts LoadOptions
		want string
	}{
		{"no bundles", nil, LoadOptions{}, "no policy bundles"},
		{"duplicate across bundles", []BundleSource{base, {Path: "dup.yaml", Data: []byte(dupBundle)}}, LoadOptions{},
			`bundle dup.yaml: duplicate rule id "base-read" in bundles base.yaml and dup.yaml`},
		{"unknown role", []BundleSource{{Path: "base.yaml", Role: "team", Data: []byte(baseBundle)}}, LoadOptions{}, `unknown role "team"`},
		{"local override in prod", []BundleSource{{Path: "mine.yaml", Role: RoleLocalOverride, Data: []byte(baseBundle)}}, LoadOptions{Environment: "prod"},
			"bundle mine.yaml: role local_override is allowed only in the dev or local environment"},
		{"one bad bundle fails all", []BundleSource{base, {Path: "bad.yaml", Data: []byte("version: v1\nrules: []\n")}}, LoadOptions{}, "bundle bad.yaml: $.rules"},
		{"signature without key", []BundleSource{{Path: "base.yaml", Data: []byte(baseBundle), Signature: []byte("abc")}}, LoadOptions{}, "no verification key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(tt.srcs, tt.opts)
			if err == nil || !errors.Is(err, ErrBundle) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want ErrBundle containing %q", err, tt.want)
			}
		})
	}
}

func TestLocalOverrideAllowed(t *testing.T) {
	src := []BundleSource{{Path: "mine.yaml", Role: RoleLocalOverride, Data: []byte(baseBundle)}}
	for _, opts := range []LoadOptions{{Environment: "dev"}, {Environment: "local"}, {Environment: "prod", AllowLocalOverride: true}} {
		if _, err := Load(src, opts); err != nil {
			t.Errorf("%+v: %v", opts, err)
		}
	}
}

func TestLoadFiles(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "base.yaml")
	if err := os.WriteFile(p, []byte(baseBundle), 0o600); err != nil {
		t.Fatal(err)
	}
	e, err := LoadFiles([]string{p}, LoadOptions{})
	if err != nil || len(e.Rules()) != 1 {
		t.Fatalf("%v", err)
	}
	_, err = LoadFiles([]string{filepath.Join(dir, "missing.yaml")}, LoadOptions{})
	if !errors.Is(err, ErrBundle) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

// testKeys are generated once: RSA key generation is slow.
var testKeys = sync.OnceValue(func() struct {
	rsa *rsa.PrivateKey
	ed  ed25519.PrivateKey
} {
	r, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return struct {
		rsa *rsa.PrivateKey
		ed  ed25519.PrivateKey
	}{r, ed}
})

func signRSA(t *testing.T, data []byte) []byte {
	digest := sha256.Sum256(data)
	sig, err := rsa.SignPKCS1v15(rand.Reader, testKeys().rsa, crypto.SHA256, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

func signEd25519(data []byte) []byte {
	digest := sha256.Sum256(data)
	return ed25519.Sign(testKeys().ed, digest[:])
}

func TestSignatures(t *testing.T) {
	data := []byte(baseBundle)
	rsaPub, edPub := &testKeys().rsa.PublicKey, testKeys().ed.Public()
	b64 := func(b []byte) []byte { return []byte(" " + base64.StdEncoding.EncodeToString(b) + "\n") }
	tampered := append([]byte("# x\n"), data...)
	tests := []struct {
		name string
		sig  []byte
		data []byte
		keys []crypto.PublicKey
		ok   bool
	}{
		{"rsa base64", b64(signRSA(t, data)), data, []crypto.PublicKey{rsaPub}, true},
		{"rsa raw", signRSA(t, data), data, []crypto.PublicKey{rsaPub}, true},
		{"ed25519 base64", b64(signEd25519(data)), data, []crypto.PublicKey{edPub}, true},
		{"ed25519 raw", signEd25519(data), data, []crypto.PublicKey{edPub}, true},
		{"second key verifies", signEd25519(data), data, []crypto.PublicKey{rsaPub, edPub}, true},
		{"tampered bundle", b64(signRSA(t, data)), tampered, []crypto.PublicKey{rsaPub}, false},
		{"wrong key", b64(signRSA(t, data)), data, []crypto.PublicKey{edPub}, false},
		{"missing signature", nil, data, []crypto.PublicKey{rsaPub}, false},
		{"garbage signature", []byte("not a signature"), data, []crypto.PublicKey{rsaPub}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := Load([]BundleSource{{Path: "b.yaml", Data: tt.data, Signature: tt.sig}}, LoadOptions{VerifyKeys: tt.keys})
			if tt.ok {
				if err != nil || !e.Inputs()[0].SignatureVerified {
					t.Fatalf("got %v", err)
				}
				return
			}
			if !errors.Is(err, ErrSignature) || !errors.Is(err, ErrBundle) || !strings.Contains(err.Error(), "policy bundle signature verification failed") {
				t.Fatalf("got %v, want a signature failure", err)
			}
		})
	}
}

func TestParseSignatureKey(t *testing.T) {
	rsaPub, edPub := &testKeys().rsa.PublicKey, testKeys().ed.Public()
	pkix := func(k any) []byte {
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tests := []struct {
		name string
		pem  []byte
		ok   bool
	}{
		{"pkix rsa", pkix(rsaPub), true},
		{"pkix ed25519", pkix(edPub), true},
		{"pkcs1 rsa", pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(rsaPub)}), true},
		{"certificate", selfSignedCert(t), true},
		{"small rsa", pkix(&small.PublicKey), false},
		{"ecdsa", pkix(&ec.PublicKey), false},
		{"not pem", []byte("hello"), false},
		{"private key block", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}}), false},
	}
	for _, tt := range tests {
		if _, err := ParseSignatureKey(tt.pem); (err == nil) != tt.ok {
			t.Errorf("%s: err %v", tt.name, err)
		}
	}
}

func selfSignedCert(t *testing.T) []byte {
	k := testKeys().ed
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "policy signer"},
		NotBefore: time.Unix(0, 0), NotAfter: time.Unix(1<<33, 0)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// testCA issues certificates for the mTLS test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "nomos test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns PEM cert and key for a server (ip set) or client (uri set).
func (ca *testCA) issue(t *testing.T, serial int64, ip net.IP, uri string) ([]byte, []byte) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: fmt.Sprint("leaf-", serial)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	if ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
		tmpl.DNSNames = []string{"localhost"}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	} else {
		u, _ := url.Parse(uri)
		tmpl.URIs = []*url.URL{u}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

const mtlsCaddyfile = `{
	admin 127.0.0.1:{ADMIN}
	auto_https disable_redirects
	nomos {
		policy default {
			bundle policy.yaml
		}
		identity {
			mtls {
				mode spiffe
				trust_domain example.org
				require
			}
		}
		audit {
			sink sqlite
		}
	}
}

https://localhost:{PORT} {
	bind 127.0.0.1
	tls server.pem server.key {
		client_auth {
			mode require_and_verify
			trust_pool file ca.pem
		}
	}
	nomos_api {
		require_agent false
	}
}
`

const mtlsPolicy = `version: v1
rules:
  - id: ci-reads-orders
    action_type: orders.read
    resource: "shop://orders/**"
    decision: ALLOW
    principals: ["spiffe://example.org/agent/ci"]
`

// TestMTLSSpiffePrincipal: Caddy verifies the client certificate and
// Nomos maps its SPIFFE ID to the principal policy sees; an ID outside the
// trust domain is refused, and a client without a certificate never
// completes the handshake.
func TestMTLSSpiffePrincipal(t *testing.T) {
	ca := newTestCA(t)
	srvCert, srvKey := ca.issue(t, 2, net.ParseIP("127.0.0.1"), "")
	port, admin := freePort(t), freePort(t)
	cf := strings.NewReplacer("{PORT}", fmt.Sprint(port), "{ADMIN}", fmt.Sprint(admin)).Replace(mtlsCaddyfile)
	s := launch(t, "Caddyfile", map[string]string{"Caddyfile": cf, "policy.yaml": mtlsPolicy, "ca.pem": string(ca.pem),
		"server.pem": string(srvCert), "server.key": string(srvKey)}, nil)
	// A name, not an IP: Caddy enforces that SNI matches Host when client
	// auth is on, and clients send no SNI for an IP address.
	base := fmt.Sprintf("https://localhost:%d", port)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.pem)
	clientFor := func(uri string) *http.Client {
		cfg := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
		if uri != "" {
			c, k := ca.issue(t, time.Now().UnixNano(), nil, uri)
			pair, err := tls.X509KeyPair(c, k)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Certificates = []tls.Certificate{pair}
		}
		return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 5 * time.Second}
	}
	ci := clientFor("spiffe://example.org/agent/ci")
	waitHTTPS(t, s, ci, base)
	post := func(c *http.Client) (int, map[string]any) {
		body, _ := json.Marshal(envelope("mtls-1", "orders.read", "shop://orders/1", nil))
		resp, err := c.Post(base+"/action", "application/json", bytes.NewReader(body))
		if err != nil {
			return 0, map[string]any{"error": err.Error()}
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	if code, out := post(ci); code != 200 || out["decision"] != "ALLOW" {
		t.Fatalf("SPIFFE client in the trust domain: %d %v", code, out)
	}
	if code, out := post(clientFor("spiffe://evil.org/agent/ci")); code != 401 {
		t.Fatalf("SPIFFE ID outside the trust domain: %d %v", code, out)
	}
	if code, out := post(clientFor("")); code != 0 {
		t.Fatalf("a client without a certificate got an HTTP answer: %d %v", code, out)
	}
}

func waitHTTPS(t *testing.T, s *server, c *http.Client, base string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := c.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("nomos did not answer over TLS; logs:\n%s", s.logs.String())
}

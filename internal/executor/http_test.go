package executor

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-nomos/nomos/audit"
	"github.com/caddy-nomos/nomos/policy"
)

// fakeResolver maps host names to addresses and counts lookups.
type fakeResolver struct {
	hosts   map[string][]string
	lookups atomic.Int32
}

func (r *fakeResolver) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	r.lookups.Add(1)
	addrs, ok := r.hosts[host]
	if !ok {
		return nil, fmt.Errorf("no such host %s", host)
	}
	out := make([]net.IPAddr, len(addrs))
	for i, a := range addrs {
		out[i] = net.IPAddr{IP: net.ParseIP(a)}
	}
	return out, nil
}

// testServer is a loopback HTTP server that counts the requests it gets.
type testServer struct {
	*httptest.Server
	hits atomic.Int32
	host string // 127.0.0.1:port
}

func newTestServer(t *testing.T, h http.HandlerFunc) *testServer {
	t.Helper()
	s := &testServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		h(w, r)
	}))
	t.Cleanup(s.Close)
	s.host = strings.TrimPrefix(s.URL, "http://")
	return s
}

func loopbackConfig() Config {
	return Config{InsecureHTTP: true, AllowedPrivateCIDRs: []string{"127.0.0.0/8"}}
}

func netOb(hosts ...string) policy.Obligations {
	return policy.Obligations{NetAllowlist: hosts}
}

func TestHTTPRequest(t *testing.T) {
	s := newTestServer(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Set-Cookie", "sid=abc123")
		w.Header().Set("X-Echo", r.Header.Get("X-Custom"))
		fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.Path, body)
	})
	e := newTestExecutor(t, loopbackConfig())
	a := newAction(t, "net.http_request", "url://"+s.host+"/api/items?page=2", map[string]any{
		"method": "post", "body": "payload", "headers": map[string]string{"X-Custom": "hi"},
	})
	res := mustRun(t, e, a, netOb(s.host))
	if res.Output != "POST /api/items payload" || res.StatusCode != 200 || res.Classification != audit.ResultSuccess {
		t.Fatalf("got %+v", res)
	}
	h := res.Metadata["response_headers"].(http.Header)
	if h.Get("Set-Cookie") != "[REDACTED]" || h.Get("X-Echo") != "hi" {
		t.Errorf("response headers %v", h)
	}
	if res.Metadata["final_resource"] != "url://"+s.host+"/api/items" || res.Metadata["redirect_hops"] != 0 {
		t.Errorf("metadata %v", res.Metadata)
	}
}

func TestHTTPNetAllowlist(t *testing.T) {
	s := newTestServer(t, func(w http.ResponseWriter, r *http.Request) {})
	e := newTestExecutor(t, loopbackConfig())
	a := newAction(t, "net.http_request", "url://"+s.host+"/", map[string]any{})
	for _, ob := range []policy.Obligations{{}, netOb("127.0.0.1"), netOb("localhost:" + strings.Split(s.host, ":")[1])} {
		_, xerr := execute(t, e, a, ob)
		wantError(t, xerr, CodeNetNotAllowlisted)
	}
	if s.hits.Load() != 0 {
		t.Error("a refused request reached the server")
	}
	if got := allowlist([]string{"API.example.com:443", "[2001:DB8::1]:80", "h:8443"}); strings.Join(got, " ") != "api.example.com [2001:db8::1] h:8443" {
		t.Errorf("allowlist normalization: %v", got)
	}
}

func TestHTTPParamsAreStrict(t *testing.T) {
	e := newTestExecutor(t, loopbackConfig())
	for _, params := range []map[string]any{
		{"method": "CONNECT"}, {"method": "TRACE"}, {"headers": map[string]string{"Host": "internal"}},
		{"headers": map[string]string{"transfer-encoding": "chunked"}}, {"url": "http://x"}, {"headers": "x"},
		// a slice or an encoding of the response that redaction cannot read whole
		{"headers": map[string]string{"Range": "bytes=17-36"}}, {"headers": map[string]string{"If-Range": "x"}},
		{"headers": map[string]string{"accept-encoding": "br"}},
	} {
		_, xerr := execute(t, e, newAction(t, "net.http_request", "url://example.com/", params), netOb("example.com"))
		wantError(t, xerr, CodeInvalidParams)
	}
}

func TestHTTPRedirects(t *testing.T) {
	other := newTestServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "other") })
	var s *testServer
	s = newTestServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/final":
			io.WriteString(w, "final "+r.Method)
		case "/away":
			http.Redirect(w, r, other.URL+"/x?token=1", http.StatusFound)
		case "/userinfo":
			http.Redirect(w, r, "http://user:pw@"+s.host+"/final", http.StatusFound)
		default: // /hop/N redirects N more times, then to /final
			var n int
			fmt.Sscanf(r.URL.Path, "/hop/%d", &n)
			next := "/final?secret=q"
			if n > 1 {
				next = fmt.Sprintf("/hop/%d", n-1)
			}
			http.Redirect(w, r, next, http.StatusFound)
		}
	})
	e := newTestExecutor(t, loopbackConfig())
	follow := policy.Obligations{NetAllowlist: []string{s.host}, HTTPRedirects: ptr(true), HTTPRedirectHopLimit: ptr(2)}
	req := func(path string) string { return "url://" + s.host + path }

	res := mustRun(t, e, newAction(t, "net.http_request", req("/hop/2"), map[string]any{"method": "POST"}), follow)
	if res.Output != "final GET" || res.Metadata["redirect_hops"] != 2 || res.Metadata["final_resource"] != req("/final") {
		t.Errorf("followed: output %q metadata %v", res.Output, res.Metadata)
	}
	for _, tt := range []struct {
		name, path, msg string
		ob              policy.Obligations
	}{
		{"not obligated", "/hop/1", "not allowed", netOb(s.host)},
		{"obligated false", "/hop/1", "not allowed", policy.Obligations{NetAllowlist: []string{s.host}, HTTPRedirects: ptr(false)}},
		{"hop limit", "/hop/3", "hop limit", follow},
		{"other host", "/away", "not allowlisted", follow},
		{"userinfo", "/userinfo", "invalid", follow},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, xerr := execute(t, e, newAction(t, "net.http_request", req(tt.path), map[string]any{}), tt.ob)
			wantError(t, xerr, CodeRedirectBlocked)
			if !strings.Contains(xerr.Message, tt.msg) || strings.Contains(xerr.Message, other.host) {
				t.Errorf("message %q", xerr.Message)
			}
		})
	}
	if other.hits.Load() != 0 {
		t.Error("a refused redirect reached the other host")
	}
}

// A host policy allows may still resolve to a private or metadata address:
// the dialer checks the resolved address, so DNS names cannot reach them.
func TestHTTPBlocksNonPublicAddressesAtDial(t *testing.T) {
	s := newTestServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "internal") })
	_, port, _ := net.SplitHostPort(s.host)
	resolver := &fakeResolver{hosts: map[string][]string{
		"internal.test": {"127.0.0.1"},
		"metadata.test": {"169.254.169.254"},
		"mixed.test":    {"93.184.216.34", "10.0.0.5"},
		"mapped.test":   {"::ffff:127.0.0.1"},
		"nat64.test":    {"64:ff9b::a9fe:a9fe"},
	}}
	var dials atomic.Int32
	dial := func(ctx context.Context, network, address string) (net.Conn, error) {
		dials.Add(1)
		if _, err := netip.ParseAddrPort(address); err != nil {
			t.Errorf("dialer got a host name: %s", address)
		}
		return (&net.Dialer{}).DialContext(ctx, network, address)
	}
	strict := newTestExecutor(t, Config{InsecureHTTP: true, Resolver: resolver, DialContext: dial})
	for _, host := range []string{"internal.test", "metadata.test", "mixed.test", "mapped.test", "nat64.test", "127.0.0.1", "[::1]", "[::ffff:7f00:1]"} {
		hostPort := host + ":" + port
		_, xerr := execute(t, strict, newAction(t, "net.http_request", "url://"+hostPort+"/", map[string]any{}), netOb(hostPort))
		wantError(t, xerr, CodeNetNotAllowlisted)
		if strings.Contains(xerr.Message, "127.0.0.1") || strings.Contains(xerr.Message, "169.254") {
			t.Errorf("%s: message names the address: %q", host, xerr.Message)
		}
	}
	if dials.Load() != 0 || s.hits.Load() != 0 {
		t.Fatalf("blocked destinations were dialed %d times", dials.Load())
	}
	// Allowing the loopback range lets the name through, still dialed by
	// address; the metadata address stays blocked.
	loop := newTestExecutor(t, Config{InsecureHTTP: true, Resolver: resolver, DialContext: dial, AllowedPrivateCIDRs: []string{"127.0.0.0/8"}})
	res := mustRun(t, loop, newAction(t, "net.http_request", "url://internal.test:"+port+"/", map[string]any{}), netOb("internal.test:"+port))
	if res.Output != "internal" {
		t.Errorf("allowed private range: got %q", res.Output)
	}
	_, xerr := execute(t, loop, newAction(t, "net.http_request", "url://metadata.test:"+port+"/", map[string]any{}), netOb("metadata.test:"+port))
	wantError(t, xerr, CodeNetNotAllowlisted)
}

func TestCheckAddr(t *testing.T) {
	e := newTestExecutor(t, Config{AllowedPrivateCIDRs: []string{"10.1.0.0/16", "fd00:1::/32"}})
	blocked := []string{
		"127.0.0.1", "127.9.9.9", "::1", "0.0.0.0", "::", "10.0.0.1", "172.16.0.1", "192.168.1.1",
		"169.254.169.254", "fe80::1", "fc00::1", "fd12::1", "100.64.0.1", "224.0.0.1", "ff02::1",
		"255.255.255.255", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "64:ff9b::a00:1", "2002:7f00:1::",
		"2001:0:4136:e378::", "198.18.0.1", "0.1.2.3",
	}
	allowed := []string{"93.184.216.34", "2606:2800:220:1::", "10.1.2.3", "::ffff:10.1.2.3", "fd00:1::5", "64:ff9b::5db8:d822"}
	for _, s := range blocked {
		if e.checkAddr(netip.MustParseAddr(s)) == nil {
			t.Errorf("%s was allowed", s)
		}
	}
	for _, s := range allowed {
		if err := e.checkAddr(netip.MustParseAddr(s)); err != nil {
			t.Errorf("%s was blocked: %v", s, err)
		}
	}
}

func TestHTTPTimeoutAndBodyCap(t *testing.T) {
	s := newTestServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-r.Context().Done()
			return
		}
		io.WriteString(w, strings.Repeat("x", 200000))
	})
	cfg := loopbackConfig()
	cfg.HTTPTimeout, cfg.MaxOutputBytes, cfg.MaxOutputLines = 200*time.Millisecond, 1000, 10
	e := newTestExecutor(t, cfg)
	_, xerr := execute(t, e, newAction(t, "net.http_request", "url://"+s.host+"/slow", map[string]any{}), netOb(s.host))
	wantError(t, xerr, CodeExecutionError)
	if !strings.Contains(xerr.Message, "timed out") {
		t.Errorf("message %q", xerr.Message)
	}
	res := mustRun(t, e, newAction(t, "net.http_request", "url://"+s.host+"/big", map[string]any{}), netOb(s.host))
	if len(res.Output) != 1000 || !res.Truncated || res.Classification != audit.ResultOutputLimit {
		t.Errorf("body %d bytes truncated %v class %s", len(res.Output), res.Truncated, res.Classification)
	}
}

// Without InsecureHTTP, url:// is fetched over verified TLS.
func TestHTTPSByDefault(t *testing.T) {
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "tls "+r.TLS.ServerName)
	}))
	s.Config.ErrorLog = log.New(io.Discard, "", 0) // the untrusted client's handshake failure is expected
	s.StartTLS()
	t.Cleanup(s.Close)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(s.URL, "https://"))
	pool := x509.NewCertPool()
	pool.AddCert(s.Certificate())
	resolver := &fakeResolver{hosts: map[string][]string{"example.com": {"127.0.0.1"}}}
	cfg := Config{Resolver: resolver, AllowedPrivateCIDRs: []string{"127.0.0.0/8"}, TLSClientConfig: &tls.Config{RootCAs: pool}}
	e := newTestExecutor(t, cfg)
	host := "example.com:" + port
	res := mustRun(t, e, newAction(t, "net.http_request", "url://"+host+"/", map[string]any{}), netOb(host))
	if res.Output != "tls example.com" {
		t.Errorf("got %q", res.Output)
	}
	untrusted := newTestExecutor(t, Config{Resolver: resolver, AllowedPrivateCIDRs: []string{"127.0.0.0/8"}})
	_, xerr := execute(t, untrusted, newAction(t, "net.http_request", "url://"+host+"/", map[string]any{}), netOb(host))
	wantError(t, xerr, CodeExecutionError)
}

// TestHTTPRefusesBodiesRedactionCannotRead: a body the transport did not
// decode (a server answering gzip unasked) is refused, never returned as
// bytes in which no pattern can match.
func TestHTTPRefusesBodiesRedactionCannotRead(t *testing.T) {
	s := newTestServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Encoding", "br")
		_, _ = w.Write([]byte("\x1b\x02ghp_0123456789"))
	})
	e := newTestExecutor(t, loopbackConfig())
	_, xerr := execute(t, e, newAction(t, "net.http_request", "url://"+s.host+"/x", map[string]any{}), netOb(s.host))
	wantError(t, xerr, CodeExecutionError)
}

// TestHTTPRedirectHopsAskTheCheck: each hop's resource is put to the
// redirect check (the service decides it on policy) before it is
// followed; a refused hop never reaches the server.
func TestHTTPRedirectHopsAskTheCheck(t *testing.T) {
	var admin atomic.Int32
	s := newTestServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/public":
			http.Redirect(w, r, "/admin/users?x=1", http.StatusFound)
		case "/admin/users":
			admin.Add(1)
			io.WriteString(w, "admin")
		}
	})
	e := newTestExecutor(t, loopbackConfig())
	ob := policy.Obligations{NetAllowlist: []string{s.host}, HTTPRedirects: ptr(true)}
	a := newAction(t, "net.http_request", "url://"+s.host+"/public", map[string]any{})
	var asked []string
	ctx := WithRedirectCheck(context.Background(), func(res string) error {
		asked = append(asked, res)
		return errors.New("denied")
	})
	_, err := e.Execute(ctx, a, allow(ob), nil)
	var xerr *Error
	if !errors.As(err, &xerr) || xerr.Code != CodeRedirectBlocked || !strings.Contains(xerr.Message, "refused by policy") {
		t.Fatalf("got %v", err)
	}
	if len(asked) != 1 || asked[0] != "url://"+s.host+"/admin/users" || admin.Load() != 0 {
		t.Fatalf("asked %v, admin hits %d", asked, admin.Load())
	}
}

package executor

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// dnsResolver fails every lookup the way the system resolver does, naming
// the internal resolver.
type dnsResolver struct{}

func (dnsResolver) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	return nil, &net.DNSError{Err: "no such host", Name: host, Server: "10.96.0.10:53", IsNotFound: true}
}

// plainResolver fails with an error of no known type.
type plainResolver struct{}

func (plainResolver) LookupIPAddr(context.Context, string) ([]net.IPAddr, error) {
	return nil, errors.New("lookup internal.corp via 10.96.0.10:53: refused")
}

// Finding #12: a failed action tells the client a stable reason; what the
// resolver, the network, TLS or the file system said (internal addresses,
// resolvers, certificate names, absolute paths) goes to the server log.
func TestHostErrorsStayOutOfMessages(t *testing.T) {
	refused := func(ctx context.Context, network, address string) (net.Conn, error) {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: &net.TCPAddr{IP: net.ParseIP("10.20.30.40"), Port: 8443},
			Err: &os.SyscallError{Syscall: "connect", Err: errors.New("connection refused")}}
	}
	tlsSrv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	tlsSrv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is expected
	tlsSrv.StartTLS()
	defer tlsSrv.Close()
	tlsHost := strings.TrimPrefix(tlsSrv.URL, "https://")
	tests := []struct {
		name, resource, want string
		cfg                  Config
		secrets              []string
	}{
		{"dns", "url://nonexistent.invalid/", "http request failed: host lookup failed",
			Config{Resolver: dnsResolver{}}, []string{"10.96.0.10", ":53", "no such host", "lookup nonexistent"}},
		{"resolver error of any type", "url://internal.corp/", "http request failed: host lookup failed",
			Config{Resolver: plainResolver{}}, []string{"10.96.0.10", "internal.corp via"}},
		{"dial", "url://app.example/", "http request failed: network error",
			Config{Resolver: &fakeResolver{hosts: map[string][]string{"app.example": {"93.184.216.34"}}}, DialContext: refused},
			[]string{"10.20.30.40", "8443", "connect"}},
		{"tls", "url://" + tlsHost + "/", "http request failed: certificate verification failed",
			Config{AllowedPrivateCIDRs: []string{"127.0.0.0/8"}, TLSClientConfig: &tls.Config{ServerName: "vault.internal.corp"}},
			[]string{"vault.internal.corp", "example.com", "127.0.0.1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logBuf bytes.Buffer
			tt.cfg.Logger = slog.New(slog.NewTextHandler(&logBuf, nil))
			e := newTestExecutor(t, tt.cfg)
			host := strings.TrimPrefix(tt.resource, "url://")
			host = strings.TrimSuffix(host, "/")
			_, xerr := execute(t, e, newAction(t, "net.http_request", tt.resource, map[string]any{}), netOb(host))
			wantError(t, xerr, CodeExecutionError)
			if xerr.Message != tt.want {
				t.Errorf("message %q, want %q", xerr.Message, tt.want)
			}
			for _, s := range tt.secrets {
				if strings.Contains(xerr.Error(), s) {
					t.Errorf("the client sees %q: %s", s, xerr.Error())
				}
			}
			if !strings.Contains(logBuf.String(), "trace_id=trace-1") || !strings.Contains(logBuf.String(), "detail=") {
				t.Errorf("the server log lacks the detail: %s", logBuf.String())
			}
		})
	}
}

// File system and process errors do not reveal the host's absolute paths.
func TestExecStartErrorHidesPaths(t *testing.T) {
	var logBuf bytes.Buffer
	e := newTestExecutor(t, Config{Logger: slog.New(slog.NewTextHandler(&logBuf, nil))})
	writeFile(t, e.root, "bin/tool", "not a program")
	_ = os.Chmod(filepath.Join(e.root, "bin/tool"), 0o755)
	_, xerr := execute(t, e, execAction(t, map[string]any{"argv": []string{"./bin/tool"}}), noObligations)
	if xerr == nil {
		t.Fatal("a file that is no program ran")
	}
	if strings.Contains(xerr.Message, e.root) || strings.Contains(xerr.Message, "exec format") {
		t.Errorf("the client sees host detail: %s", xerr.Message)
	}
	if !strings.Contains(logBuf.String(), "exec format error") {
		t.Errorf("the server log lacks the detail: %s", logBuf.String())
	}
}

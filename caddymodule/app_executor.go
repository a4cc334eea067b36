package caddymodule

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/caddy-nomos/nomos/internal/credentials"
	"github.com/caddy-nomos/nomos/internal/executor"
	"github.com/caddy-nomos/nomos/internal/redact"
)

// provisionRedaction compiles the built-in and operator patterns once.
func (a *App) provisionRedaction() error {
	var patterns []string
	if a.Redaction != nil {
		patterns = a.Redaction.Patterns
	}
	r, err := redact.New(patterns)
	if err != nil {
		return fmt.Errorf("nomos: redaction: %w", err)
	}
	if a.brokerValues, err = a.provisionBroker(); err != nil {
		return err
	}
	if r, err = r.With(nil, append(slices.Clone(a.brokerValues), a.identitySecrets()...)); err != nil {
		return fmt.Errorf("nomos: redaction: %w", err)
	}
	a.red = r
	a.redactor = r
	return nil
}

// identitySecrets are the configured API keys and agent secrets. An
// agent that echoes one into params or output must not get it into the
// audit log, an approval preview or the operator UI. A config whose
// identity does not resolve is refused by provisionIdentity. Values too
// short to mask without mangling ordinary text are skipped; nomos doctor
// fails them as weak.
func (a *App) identitySecrets() []string {
	cfg, err := a.identityConfig()
	if err != nil {
		return nil
	}
	var all, out []string
	for _, k := range cfg.APIKeys {
		all = append(all, k.Key)
	}
	for _, s := range cfg.AgentSecrets {
		all = append(all, s.Secret)
	}
	for _, v := range all {
		if len(v) >= redact.MinExactSecretBytes {
			out = append(out, v)
		}
	}
	return out
}

// redactBytes is the audit redactor: every audit line passes through it.
func (a *App) redactBytes(b []byte) []byte { return a.red.JSON(b) }

// provisionBroker builds the credential broker; its values are always
// redacted, wherever they show up.
func (a *App) provisionBroker() ([]string, error) {
	secrets := make([]credentials.Secret, 0, len(a.Credentials))
	for _, s := range a.Credentials {
		v := resolve(s.Value)
		if v == "" {
			return nil, fmt.Errorf("nomos: credentials: secret %q is empty (unset environment variable?)", s.ID)
		}
		ttl := time.Duration(s.TTL)
		if ttl <= 0 {
			ttl = 5 * time.Minute
		}
		secrets = append(secrets, credentials.Secret{ID: s.ID, EnvKey: s.EnvKey, Value: v, TTL: ttl})
	}
	b, err := credentials.NewBroker(secrets, time.Now)
	if err != nil {
		return nil, fmt.Errorf("nomos: credentials: %w", err)
	}
	a.broker = b
	return b.Values(), nil
}

// provisionExecutor enables built-in executors when configured.
func (a *App) provisionExecutor() error {
	c := a.Executor
	if c == nil {
		return nil
	}
	if c.WorkspaceRoot == "" {
		return fmt.Errorf("nomos: executor: workspace_root is required")
	}
	tlsConfig, err := trustedCAConfig(c.TrustedCA)
	if err != nil {
		return fmt.Errorf("nomos: executor: %w", err)
	}
	// The launcher is this very binary (whatever replaced the file on
	// disk since), run as its sandbox-exec command.
	launcher := []string{"/proc/self/exe", executor.LauncherCommand}
	e, err := executor.New(executor.Config{
		WorkspaceRoot: c.WorkspaceRoot, SandboxProfile: c.SandboxProfile, SandboxReadPaths: c.SandboxReadPaths,
		MaxOutputBytes: c.MaxOutputBytes, MaxOutputLines: c.MaxOutputLines,
		ExecTimeout: time.Duration(c.ExecTimeout), HTTPTimeout: time.Duration(c.HTTPTimeout),
		EnvAllowlist: c.EnvAllowlist, AllowedPrivateCIDRs: c.AllowPrivateCIDRs,
		TLSClientConfig: tlsConfig, Launcher: launcher, Logger: a.slog.With("component", "executor"),
	}, a.broker, a.red)
	if err != nil {
		return fmt.Errorf("nomos: executor: %w", err)
	}
	a.exec = e
	return nil
}

// trustedCAConfig adds the CAs of a PEM file to the system roots.
func trustedCAConfig(path string) (*tls.Config, error) {
	if path == "" {
		return nil, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("trusted_ca: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("trusted_ca %s: no PEM certificate found", path)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

package caddymodule

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadCheckpointKey(t *testing.T) {
	dir := t.TempDir()
	_, sk, _ := ed25519.GenerateKey(nil)
	der, _ := x509.MarshalPKCS8PrivateKey(sk)
	edFile := filepath.Join(dir, "audit.pem")
	if err := os.WriteFile(edFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("T_CHECKPOINT_KEY", strings.Repeat("k", 32))
	t.Setenv("T_SHORT_KEY", "short")
	sqlite := []SinkConfig{{Type: "stdout"}, {Type: "sqlite", Path: filepath.Join(dir, "a.db")}}
	tests := []struct {
		name  string
		cfg   *CheckpointConfig
		sinks []SinkConfig
		alg   string
		err   string
	}{
		{name: "none", sinks: sqlite},
		{name: "hmac from env", cfg: &CheckpointConfig{Algorithm: "hmac-sha256", Key: "{env.T_CHECKPOINT_KEY}"}, sinks: sqlite, alg: "hmac-sha256"},
		{name: "ed25519 file", cfg: &CheckpointConfig{Algorithm: "ed25519", KeyFile: edFile}, sinks: sqlite, alg: "ed25519"},
		{name: "unset env", cfg: &CheckpointConfig{Algorithm: "hmac-sha256", Key: "{env.T_UNSET_KEY}"}, sinks: sqlite, err: "is empty"},
		{name: "short key", cfg: &CheckpointConfig{Algorithm: "hmac-sha256", Key: "{env.T_SHORT_KEY}"}, sinks: sqlite, err: "at least 32 bytes"},
		{name: "missing file", cfg: &CheckpointConfig{Algorithm: "ed25519", KeyFile: filepath.Join(dir, "nope.pem")}, sinks: sqlite, err: "read key_file"},
		{name: "hmac secret as ed25519", cfg: &CheckpointConfig{Algorithm: "ed25519", Key: "{env.T_CHECKPOINT_KEY}"}, sinks: sqlite, err: "no PEM block"},
		{name: "unknown algorithm", cfg: &CheckpointConfig{Algorithm: "rsa", KeyFile: edFile}, sinks: sqlite, err: "unknown algorithm"},
		{name: "both sources", cfg: &CheckpointConfig{Algorithm: "ed25519", Key: "x", KeyFile: edFile}, sinks: sqlite, err: "not both"},
		{name: "no source", cfg: &CheckpointConfig{Algorithm: "ed25519"}, sinks: sqlite, err: "set key or key_file"},
		{name: "no sqlite sink", cfg: &CheckpointConfig{Algorithm: "hmac-sha256", Key: "{env.T_CHECKPOINT_KEY}"}, sinks: sqlite[:1], err: "no sqlite sink"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := loadCheckpointKey(tt.cfg, tt.sinks)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.alg == "" && k != nil || tt.alg != "" && (k == nil || k.Algorithm() != tt.alg || !k.CanSign()) {
				t.Fatalf("key %+v, want %q", k, tt.alg)
			}
		})
	}
}

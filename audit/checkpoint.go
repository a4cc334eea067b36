package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strconv"
)

// Checkpoint algorithms.
const (
	CheckpointHMACSHA256 = "hmac-sha256"
	CheckpointEd25519    = "ed25519"
)

// MinHMACKeyBytes is the shortest HMAC checkpoint key accepted.
const MinHMACKeyBytes = 32

// CheckpointKey signs or verifies checkpoints. A checkpoint signs the seq
// and event_hash of the last row of one commit; since every event hash
// covers the one before it, a valid checkpoint vouches for every row up to
// it.
type CheckpointKey struct {
	alg  string
	id   string
	hmac []byte
	priv ed25519.PrivateKey
	pub  ed25519.PublicKey
}

// Algorithm is hmac-sha256 or ed25519.
func (k *CheckpointKey) Algorithm() string { return k.alg }

// ID names the key in each checkpoint row: the first 16 hex digits of the
// SHA-256 of the Ed25519 public key, or of the HMAC key under a fixed
// label. It tells a verifier which key to use; it reveals nothing usable.
func (k *CheckpointKey) ID() string { return k.id }

// CanSign reports whether the key can sign (an HMAC key or an Ed25519
// private key), not only verify.
func (k *CheckpointKey) CanSign() bool { return k.hmac != nil || k.priv != nil }

// ParseCheckpointKey reads a signing key: for hmac-sha256 the secret itself
// (at least 32 bytes; surrounding white space is trimmed), for ed25519 a PEM
// "PRIVATE KEY" (PKCS #8).
func ParseCheckpointKey(alg string, material []byte) (*CheckpointKey, error) {
	switch alg {
	case CheckpointHMACSHA256:
		return hmacKey(material)
	case CheckpointEd25519:
		k, err := parsePEMKey(material)
		if err != nil {
			return nil, err
		}
		if k.priv == nil {
			return nil, errors.New("audit: checkpoint key: ed25519 signing needs a PRIVATE KEY, not a public key")
		}
		return k, nil
	}
	return nil, fmt.Errorf("audit: checkpoint key: unknown algorithm %q (want %s or %s)",
		alg, CheckpointHMACSHA256, CheckpointEd25519)
}

// ParseVerifyKey reads a key for verification: a PEM Ed25519 public or
// private key, or else an HMAC secret.
func ParseVerifyKey(material []byte) (*CheckpointKey, error) {
	if bytes.Contains(material, []byte("-----BEGIN")) {
		return parsePEMKey(material)
	}
	return hmacKey(material)
}

func hmacKey(material []byte) (*CheckpointKey, error) {
	secret := bytes.TrimSpace(material)
	if len(secret) < MinHMACKeyBytes {
		return nil, fmt.Errorf("audit: checkpoint key: an hmac-sha256 key needs at least %d bytes, got %d",
			MinHMACKeyBytes, len(secret))
	}
	sum := sha256.Sum256(append([]byte("nomos-audit-key-id\n"), secret...))
	return &CheckpointKey{alg: CheckpointHMACSHA256, id: hex.EncodeToString(sum[:8]),
		hmac: bytes.Clone(secret)}, nil
}

func parsePEMKey(material []byte) (*CheckpointKey, error) {
	block, _ := pem.Decode(material)
	if block == nil {
		return nil, errors.New("audit: checkpoint key: no PEM block")
	}
	k := &CheckpointKey{alg: CheckpointEd25519}
	switch block.Type {
	case "PRIVATE KEY":
		key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("audit: checkpoint key: %w", err)
		}
		priv, ok := key.(ed25519.PrivateKey)
		if !ok {
			return nil, errors.New("audit: checkpoint key: not an Ed25519 key")
		}
		k.priv, k.pub = priv, priv.Public().(ed25519.PublicKey)
	case "PUBLIC KEY":
		key, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("audit: checkpoint key: %w", err)
		}
		pub, ok := key.(ed25519.PublicKey)
		if !ok {
			return nil, errors.New("audit: checkpoint key: not an Ed25519 key")
		}
		k.pub = pub
	default:
		return nil, fmt.Errorf("audit: checkpoint key: PEM block %q (want PRIVATE KEY or PUBLIC KEY)", block.Type)
	}
	sum := sha256.Sum256(k.pub)
	k.id = hex.EncodeToString(sum[:8])
	return k, nil
}

// checkpoint is one row of audit_checkpoints.
type checkpoint struct {
	id        int64
	seq       int64
	eventHash string
	signedAt  string
	alg       string
	keyID     string
	signature string
}

// message is what a checkpoint signs. Binding seq as well as the hash makes
// a renumbered file fail even where the hashes would still link.
func (c *checkpoint) message() []byte {
	return []byte("nomos-audit-checkpoint-v1\n" + c.alg + "\n" + c.keyID + "\n" +
		strconv.FormatInt(c.seq, 10) + "\n" + c.eventHash + "\n" + c.signedAt + "\n")
}

func (k *CheckpointKey) sign(c *checkpoint) {
	c.alg, c.keyID = k.alg, k.id
	msg := c.message()
	if k.hmac != nil {
		m := hmac.New(sha256.New, k.hmac)
		m.Write(msg)
		c.signature = base64.RawURLEncoding.EncodeToString(m.Sum(nil))
		return
	}
	c.signature = base64.RawURLEncoding.EncodeToString(ed25519.Sign(k.priv, msg))
}

// verify returns what is wrong with c's signature under k, or "".
func (k *CheckpointKey) verify(c *checkpoint) string {
	if c.alg != k.alg || c.keyID != k.id {
		return fmt.Sprintf("checkpoint %d is signed by %s key %s, not by the given %s key %s",
			c.id, c.alg, c.keyID, k.alg, k.id)
	}
	sig, err := base64.RawURLEncoding.DecodeString(c.signature)
	ok := err == nil
	if ok && k.hmac != nil {
		m := hmac.New(sha256.New, k.hmac)
		m.Write(c.message())
		ok = hmac.Equal(sig, m.Sum(nil))
	} else if ok {
		ok = ed25519.Verify(k.pub, c.message(), sig)
	}
	if !ok {
		return fmt.Sprintf("checkpoint %d (seq %d) has an invalid signature: the rows it covers, or the checkpoint, were rewritten", c.id, c.seq)
	}
	return ""
}

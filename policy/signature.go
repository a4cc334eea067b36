package policy

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
)

// Bundle signatures cover the SHA-256 digest of the raw bundle file:
// RSA keys verify a PKCS#1 v1.5 signature of that digest, Ed25519 keys a
// signature whose message is the 32 digest bytes (so `openssl pkeyutl
// -sign -rawin` over the digest file produces it).

const minRSABits = 2048

// ParseSignatureKey reads a PEM public key (PKIX "PUBLIC KEY" or PKCS#1
// "RSA PUBLIC KEY") or a certificate, and returns its RSA or Ed25519 key.
func ParseSignatureKey(pemData []byte) (crypto.PublicKey, error) {
	block, _ := pem.Decode(pemData)
	if block == nil {
		return nil, errors.New("signature key: no PEM block found")
	}
	key, err := parsePEMKey(block)
	if err != nil {
		return nil, fmt.Errorf("signature key: %w", err)
	}
	return checkKey(key)
}

func parsePEMKey(block *pem.Block) (crypto.PublicKey, error) {
	switch block.Type {
	case "PUBLIC KEY":
		return x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		return x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		return cert.PublicKey, nil
	}
	return nil, fmt.Errorf("unsupported PEM block %q", block.Type)
}

func checkKey(key crypto.PublicKey) (crypto.PublicKey, error) {
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return nil, fmt.Errorf("signature key: RSA key of %d bits is too small (minimum %d)", k.N.BitLen(), minRSABits)
		}
		return k, nil
	case ed25519.PublicKey:
		return k, nil
	}
	return nil, fmt.Errorf("signature key: unsupported key type %T (want RSA or Ed25519)", key)
}

// verifySource checks src's signature when keys are configured. A signature
// without keys is refused too: it means verification was intended but is
// not configured.
func verifySource(src BundleSource, keys []crypto.PublicKey) (bool, error) {
	if len(keys) == 0 {
		if len(src.Signature) > 0 {
			return false, sigError(src.Path, "a signature was given but no verification key is configured")
		}
		return false, nil
	}
	if len(bytes.TrimSpace(src.Signature)) == 0 {
		return false, sigError(src.Path, "signature missing")
	}
	digest := sha256.Sum256(src.Data)
	for _, sig := range signatureCandidates(src.Signature) {
		for _, key := range keys {
			if verifyDigest(key, digest[:], sig) {
				return true, nil
			}
		}
	}
	return false, sigError(src.Path, "no configured key verifies the signature")
}

func sigError(path, detail string) error {
	return &bundleError{file: path, msg: ErrSignature.Error() + ": " + detail, cause: ErrSignature}
}

// signatureCandidates accepts base64 text or raw bytes. Trying both cannot
// weaken verification: each candidate must still verify.
func signatureCandidates(sig []byte) [][]byte {
	trimmed := bytes.TrimSpace(sig)
	var out [][]byte
	if dec, err := base64.StdEncoding.DecodeString(string(trimmed)); err == nil {
		out = append(out, dec)
	}
	return append(out, sig)
}

func verifyDigest(key crypto.PublicKey, digest, sig []byte) bool {
	switch k := key.(type) {
	case *rsa.PublicKey:
		return rsa.VerifyPKCS1v15(k, crypto.SHA256, digest, sig) == nil
	case ed25519.PublicKey:
		return len(k) == ed25519.PublicKeySize && ed25519.Verify(k, digest, sig)
	}
	return false
}

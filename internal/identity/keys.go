package identity

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
)

// allowedAlgs lists the accepted JWT signature algorithms. HMAC and "none"
// are never accepted: a public key must never double as an HMAC secret.
func allowedAlgs() []jose.SignatureAlgorithm {
	return []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.EdDSA}
}

const minRSABits = 2048

// verifyKey is a public key a JWT may be verified with.
type verifyKey struct {
	kid string // from a JWKS; empty for static keys
	alg string // the JWK's alg member, empty when unspecified
	key any    // *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey
}

// fits reports whether k may verify a token signed with alg.
func (k verifyKey) fits(alg string) bool {
	if k.alg != "" && k.alg != alg {
		return false
	}
	switch key := k.key.(type) {
	case *rsa.PublicKey:
		return alg == string(jose.RS256)
	case *ecdsa.PublicKey:
		return alg == string(jose.ES256) && key.Curve == elliptic.P256()
	case ed25519.PublicKey:
		return alg == string(jose.EdDSA)
	}
	return false
}

// checkPublicKey accepts only the key types of the allowed algorithms.
func checkPublicKey(key any) error {
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return fmt.Errorf("rsa key shorter than %d bits", minRSABits)
		}
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return errors.New("ecdsa key not on P-256")
		}
	case ed25519.PublicKey:
	default:
		return fmt.Errorf("unsupported key type %T", key)
	}
	return nil
}

// parseStaticKeys parses PEM public keys and certificates. One entry may
// hold several PEM blocks.
func parseStaticKeys(entries [][]byte) ([]verifyKey, error) {
	var keys []verifyKey
	for i, entry := range entries {
		parsed, err := parsePEMKeys(entry)
		if err != nil {
			return nil, fmt.Errorf("static key %d: %w", i, err)
		}
		keys = append(keys, parsed...)
	}
	return keys, nil
}

func parsePEMKeys(data []byte) ([]verifyKey, error) {
	var keys []verifyKey
	for {
		block, rest := pem.Decode(data)
		if block == nil {
			break
		}
		key, err := parsePEMBlock(block)
		if err != nil {
			return nil, err
		}
		keys = append(keys, verifyKey{key: key})
		data = rest
	}
	if len(keys) == 0 {
		return nil, errors.New("no pem block found")
	}
	return keys, nil
}

func parsePEMBlock(block *pem.Block) (any, error) {
	var key any
	var err error
	switch block.Type {
	case "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		key, err = certificateKey(block.Bytes)
	default:
		if strings.Contains(block.Type, "PRIVATE") {
			return nil, errors.New("a private key was given where a public key is required")
		}
		return nil, fmt.Errorf("unsupported pem block %q", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", strings.ToLower(block.Type), err)
	}
	return key, checkPublicKey(key)
}

func certificateKey(der []byte) (any, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return cert.PublicKey, nil
}

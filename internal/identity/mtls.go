package identity

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// mTLS modes.
const (
	MTLSModeSPIFFE  = "spiffe"
	MTLSModeSubject = "subject"
)

// MTLSConfig maps a verified client certificate to a principal. Caddy's
// tls client_auth does the handshake and the chain verification.
type MTLSConfig struct {
	// Mode is "spiffe" (the certificate's SPIFFE ID URI SAN, which must lie
	// in TrustDomain, is the principal) or "subject" (the subject common
	// name is the principal). Default: spiffe.
	Mode string
	// TrustDomain is the SPIFFE trust domain, e.g. "example.org". Required
	// in spiffe mode.
	TrustDomain string
	// Require makes a request without a verified client certificate fail,
	// whatever other credential it presents.
	Require bool
	// TrustPeerCertificates accepts PeerCertificates without VerifiedChains.
	// Set it only when Caddy verified the certificate itself (trusted leaf
	// certificates or a verifier module), which leaves VerifiedChains empty.
	// Default: false, only chains verified by crypto/tls count.
	TrustPeerCertificates bool
}

func (a *Authenticator) setMTLS(cfg Config) error {
	if cfg.MTLS == nil {
		return nil
	}
	m := *cfg.MTLS
	if m.Mode == "" {
		m.Mode = MTLSModeSPIFFE
	}
	switch m.Mode {
	case MTLSModeSPIFFE:
		td, err := normalizeTrustDomain(m.TrustDomain)
		if err != nil {
			return fmt.Errorf("mtls: %w", err)
		}
		m.TrustDomain = td
	case MTLSModeSubject:
	default:
		return fmt.Errorf("mtls: unknown mode %q (want spiffe or subject)", m.Mode)
	}
	a.mtls = &m
	return nil
}

func normalizeTrustDomain(td string) (string, error) {
	td = strings.TrimPrefix(strings.TrimSpace(td), "spiffe://")
	if td == "" {
		return "", errors.New("spiffe mode needs a trust domain")
	}
	for _, r := range td {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
			return "", fmt.Errorf("invalid trust domain %q (lowercase letters, digits, '.', '-', '_')", td)
		}
	}
	return td, nil
}

// mtlsPrincipal returns the principal of the client certificate, or "" when
// none was presented and none is required. A presented certificate that is
// unverified or does not map to a principal is a failure.
func (a *Authenticator) mtlsPrincipal(cs *tls.ConnectionState) (string, error) {
	if a.mtls == nil {
		return "", nil
	}
	if cs == nil || len(cs.PeerCertificates) == 0 {
		if a.mtls.Require {
			return "", principalError("mtls client certificate required")
		}
		return "", nil
	}
	leaf := a.verifiedLeaf(cs)
	if leaf == nil {
		return "", principalError("mtls client certificate not verified")
	}
	if a.mtls.Mode == MTLSModeSubject {
		return subjectPrincipal(leaf)
	}
	return spiffePrincipal(leaf, a.mtls.TrustDomain)
}

func (a *Authenticator) verifiedLeaf(cs *tls.ConnectionState) *x509.Certificate {
	if len(cs.VerifiedChains) > 0 && len(cs.VerifiedChains[0]) > 0 {
		return cs.VerifiedChains[0][0]
	}
	if a.mtls.TrustPeerCertificates {
		return cs.PeerCertificates[0]
	}
	return nil
}

func subjectPrincipal(cert *x509.Certificate) (string, error) {
	cn := cert.Subject.CommonName
	if cn == "" || checkName(cn) != nil {
		return "", principalError("mtls certificate has no usable subject common name")
	}
	return cn, nil
}

// spiffePrincipal returns the certificate's one SPIFFE ID, which must lie in
// the trust domain. The full URI is the principal.
func spiffePrincipal(cert *x509.Certificate, trustDomain string) (string, error) {
	var ids []*url.URL
	for _, u := range cert.URIs {
		if strings.EqualFold(u.Scheme, "spiffe") {
			ids = append(ids, u)
		}
	}
	if len(ids) != 1 {
		return "", principalError("mtls certificate must carry exactly one spiffe id")
	}
	id, err := canonicalSPIFFEID(ids[0])
	if err != nil {
		return "", principalError("mtls certificate has an invalid spiffe id")
	}
	if !strings.HasPrefix(id, "spiffe://"+trustDomain+"/") {
		return "", principalError("mtls spiffe id outside the trust domain")
	}
	return id, nil
}

// canonicalSPIFFEID validates u against the SPIFFE ID rules: lowercase
// scheme and trust domain, no user, port, query or fragment, and a path of
// non-empty segments other than "." and "..".
func canonicalSPIFFEID(u *url.URL) (string, error) {
	if u.Scheme != "spiffe" || u.User != nil || u.Port() != "" || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return "", errors.New("malformed spiffe id")
	}
	if _, err := normalizeTrustDomain(u.Host); err != nil || u.Host == "" {
		return "", errors.New("malformed trust domain")
	}
	if u.Path == "" || u.RawPath != "" {
		return "", errors.New("malformed path")
	}
	for _, seg := range strings.Split(u.Path[1:], "/") {
		if !validPathSegment(seg) {
			return "", errors.New("malformed path segment")
		}
	}
	return "spiffe://" + u.Host + u.Path, nil
}

func validPathSegment(seg string) bool {
	if seg == "" || seg == "." || seg == ".." {
		return false
	}
	for _, r := range seg {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

package redact

import (
	"bytes"
	"net/http"
	"strings"
	"unicode/utf8"
)

// credentialNames are normalized names (lowercase, without "-" and "_") of
// headers and JSON keys whose whole value is a credential.
var credentialNames = map[string]bool{
	"authorization": true, "proxyauthorization": true, "cookie": true, "setcookie": true,
	"xapikey": true, "apikey": true, "xauthtoken": true, "authtoken": true, "token": true,
	"accesstoken": true, "refreshtoken": true, "idtoken": true, "sessiontoken": true,
	"clientsecret": true, "secret": true, "secretkey": true, "password": true, "passwd": true,
	"privatekey": true, "secretaccesskey": true, "awssecretaccesskey": true,
}

// credentialSuffixes catch vendor variants such as X-Vault-Token,
// X-Goog-Api-Key or db_password.
var credentialSuffixes = []string{"token", "apikey", "secret", "password", "authorization"}

// IsCredentialName reports whether a header name or JSON key names a
// credential, so that its whole value must be masked.
func IsCredentialName(name string) bool {
	// Normalized into a stack buffer: this runs for every key of every
	// audit event, so it must not allocate.
	var stack [64]byte
	n := normalizeName(stack[:0], name)
	if credentialNames[string(n)] {
		return true
	}
	for _, suffix := range credentialSuffixes {
		if bytes.HasSuffix(n, []byte(suffix)) {
			return true
		}
	}
	return false
}

// normalizeName appends name lowercased, without "-" and "_".
func normalizeName(dst []byte, name string) []byte {
	for i := 0; i < len(name); i++ {
		if name[i] >= utf8.RuneSelf {
			name = strings.ToLower(name)
			break
		}
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '-' || c == '_':
		case 'A' <= c && c <= 'Z':
			dst = append(dst, c+'a'-'A')
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// Header returns a redacted copy of h: every value of a credential header is
// Mask, and every other value is redacted as text. h is not modified.
func (r *Redactor) Header(h http.Header) http.Header {
	if h == nil {
		return nil
	}
	out := make(http.Header, len(h))
	for name, values := range h {
		redacted := make([]string, len(values))
		for i, v := range values {
			redacted[i] = r.headerValue(name, v)
		}
		out[name] = redacted
	}
	return out
}

func (r *Redactor) headerValue(name, value string) string {
	if IsCredentialName(name) {
		return Mask
	}
	return r.String(value)
}

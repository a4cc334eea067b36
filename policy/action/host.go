package action

import (
	"errors"
	"net/netip"
	"strconv"
	"strings"
)

// normalizeHost normalizes the authority of url:// and custom resources:
// lowercase host, bracketed IPv6 in its RFC 5952 form, ports 80 and 443
// dropped. kind names the scheme in error messages.
func normalizeHost(authority, kind string) (string, error) {
	if strings.Contains(authority, "@") {
		return "", errors.New(kind + " userinfo is not allowed")
	}
	host, port, hasPort, err := splitHostPort(authority, kind)
	if err != nil {
		return "", err
	}
	if host == "" {
		return "", errors.New(kind + " host is required")
	}
	if host, err = canonicalHost(host, kind); err != nil {
		return "", err
	}
	if !hasPort {
		return host, nil
	}
	p, err := normalizePort(port, kind)
	return host + p, err
}

// splitHostPort splits host and port. An unbracketed host with more than one
// colon is a bare IPv6 address, which is refused: its port is ambiguous.
func splitHostPort(a, kind string) (host, port string, hasPort bool, err error) {
	bad := errors.New("invalid " + kind + " host")
	if strings.HasPrefix(a, "[") {
		end := strings.IndexByte(a, ']')
		if end < 0 {
			return "", "", false, bad
		}
		host, rest := a[:end+1], a[end+1:]
		if rest == "" {
			return host, "", false, nil
		}
		if rest[0] != ':' {
			return "", "", false, bad
		}
		return host, rest[1:], true, nil
	}
	i := strings.LastIndexByte(a, ':')
	if i < 0 {
		return a, "", false, nil
	}
	if strings.IndexByte(a[:i], ':') >= 0 {
		return "", "", false, bad
	}
	return a[:i], a[i+1:], true, nil
}

// canonicalHost lowercases a host name or canonicalizes an IP literal. "%"
// is refused outright: it is how IPv6 zone ids and encoded hosts are written.
// Non-ASCII names must arrive as punycode, since lowercasing is not IDNA
// mapping and a fullwidth name would otherwise dodge a host rule.
func canonicalHost(h, kind string) (string, error) {
	bad := errors.New("invalid " + kind + " host")
	if strings.HasPrefix(h, "[") {
		return ipv6Host(h, bad)
	}
	h = strings.TrimSuffix(asciiLower(h), ".")
	labels := strings.Split(h, ".")
	for _, l := range labels {
		if !validLabel(l) {
			return "", bad
		}
	}
	if numericLabel(labels[len(labels)-1]) {
		return ipv4Host(h, bad)
	}
	return h, nil
}

func ipv6Host(h string, bad error) (string, error) {
	inner := h[1 : len(h)-1]
	if strings.ContainsAny(inner, "%") || !strings.Contains(inner, ":") {
		return "", bad
	}
	addr, err := netip.ParseAddr(inner)
	if err != nil || !addr.Is6() {
		return "", bad
	}
	return "[" + addr.String() + "]", nil
}

// ipv4Host accepts only dotted-quad IPv4 when the last label is numeric.
// Resolvers and browsers read 127.1, 0x7f.0.0.1, 0177.0.0.1 and 2130706433
// as 127.0.0.1; refusing those spellings keeps one name per address.
func ipv4Host(h string, bad error) (string, error) {
	addr, err := netip.ParseAddr(h)
	if err != nil || !addr.Is4() {
		return "", bad
	}
	return addr.String(), nil
}

// validLabel checks one lowercased DNS label; "_" is allowed because
// service names use it.
func validLabel(l string) bool {
	if l == "" {
		return false
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !isLower(c) && !isDigit(c) && c != '-' && c != '_' {
			return false
		}
	}
	return true
}

// numericLabel follows the WHATWG URL rule for a host that is an IPv4
// address: the last label is decimal digits or 0x-prefixed hex.
func numericLabel(l string) bool {
	if strings.HasPrefix(l, "0x") {
		l = l[2:]
		return strings.Trim(l, "0123456789abcdef") == ""
	}
	return strings.Trim(l, "0123456789") == ""
}

// normalizePort drops the default ports of http and https (url:// is
// executed over https) and writes others without leading zeros.
func normalizePort(p, kind string) (string, error) {
	n, err := strconv.Atoi(p)
	if err != nil || len(p) > 5 || strings.Trim(p, "0123456789") != "" || n < 1 || n > 65535 {
		return "", errors.New("invalid " + kind + " port")
	}
	if n == 80 || n == 443 {
		return "", nil
	}
	return ":" + strconv.Itoa(n), nil
}

// asciiLower lowercases ASCII letters only. strings.ToLower maps some
// non-ASCII letters to ASCII (the Kelvin sign to "k"), which would let a
// look-alike host or scheme pass as a plain one.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// nameHost checks the host of repo://, secret:// and mcp://, which is a name
// (an org, a vault, a server) rather than a network address: no port, no
// userinfo, lowercased.
func nameHost(authority, kind, label string) (string, error) {
	if strings.Contains(authority, "@") {
		return "", errors.New(kind + " userinfo is not allowed")
	}
	if authority == "" {
		return "", errors.New(label + " is required")
	}
	h := asciiLower(authority)
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !isLower(c) && !isDigit(c) && c != '-' && c != '_' && c != '.' {
			return "", errors.New("invalid " + label)
		}
	}
	if strings.Trim(h, ".") == "" {
		return "", errors.New("invalid " + label)
	}
	return h, nil
}

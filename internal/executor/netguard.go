package executor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"
)

// blockedPrefixes are the non-public ranges the net.IP predicates do not
// already cover. Addresses in them, or in the predicates' ranges, are refused
// unless Config.AllowedPrivateCIDRs holds them.
var blockedPrefixes = mustPrefixes(
	"0.0.0.0/8",       // "this network"
	"100.64.0.0/10",   // carrier-grade NAT
	"192.0.0.0/24",    // IETF protocol assignments
	"192.0.2.0/24",    // documentation
	"198.18.0.0/15",   // benchmarking
	"198.51.100.0/24", // documentation
	"203.0.113.0/24",  // documentation
	"240.0.0.0/4",     // reserved, and broadcast
	"::/96",           // IPv4-compatible (deprecated)
	"100::/64",        // discard
	"2001::/32",       // Teredo: hides an IPv4 address
	"2001:db8::/32",   // documentation
	"2002::/16",       // 6to4: hides an IPv4 address
	"fec0::/10",       // site-local (deprecated)
)

// nat64Prefixes embed an IPv4 address in their last 32 bits, which is
// checked as the address actually reached.
var nat64Prefixes = mustPrefixes("64:ff9b::/96", "64:ff9b:1::/48")

func mustPrefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

// errBlockedAddress refuses a destination that is not a public address.
// Its message does not name the address: that would map the internal
// network for whoever probes it.
var errBlockedAddress = errors.New("destination resolves to a non-public address")

// checkAddr refuses ip unless it is public or explicitly allowed.
func (e *Executor) checkAddr(ip netip.Addr) error {
	ip = ip.WithZone("").Unmap()
	if containsAddr(e.allowed, ip) {
		return nil
	}
	if embedded, ok := nat64Embedded(ip); ok && !containsAddr(e.allowed, embedded) && nonPublic(embedded) {
		return errBlockedAddress
	}
	if nonPublic(ip) {
		return errBlockedAddress
	}
	return nil
}

func nonPublic(ip netip.Addr) bool {
	return !ip.IsValid() || ip.IsLoopback() || ip.IsPrivate() || ip.IsUnspecified() ||
		ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast() ||
		ip.IsMulticast() || containsAddr(blockedPrefixes, ip)
}

func nat64Embedded(ip netip.Addr) (netip.Addr, bool) {
	if !ip.Is6() || !containsAddr(nat64Prefixes, ip) {
		return netip.Addr{}, false
	}
	b := ip.As16()
	return netip.AddrFrom4([4]byte(b[12:])), true
}

func containsAddr(prefixes []netip.Prefix, ip netip.Addr) bool {
	for _, p := range prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// dialGuarded resolves the host itself, refuses the connection if any of its
// addresses is non-public, and dials the vetted address, never the name: a
// second lookup (DNS rebinding) cannot change what is reached.
func (e *Executor) dialGuarded(ctx context.Context, network, address string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	ips, err := e.lookup(ctx, host)
	if err != nil {
		return nil, err
	}
	for _, ip := range ips {
		if err := e.checkAddr(ip); err != nil {
			return nil, err
		}
	}
	var lastErr error
	for _, ip := range ips {
		conn, err := e.dial(ctx, network, net.JoinHostPort(ip.String(), port))
		if err == nil {
			return conn, nil
		}
		lastErr = err
	}
	return nil, &hostError{err: lastErr}
}

func (e *Executor) lookup(ctx context.Context, host string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip}, nil
	}
	addrs, err := e.cfg.Resolver.LookupIPAddr(ctx, host)
	if err != nil {
		return nil, &hostError{reason: "host lookup failed", err: fmt.Errorf("resolve host: %w", err)}
	}
	ips := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			ips = append(ips, ip)
		}
	}
	if len(ips) == 0 {
		return nil, &hostError{reason: "host lookup failed", err: errors.New("resolve host: no addresses")}
	}
	return ips, nil
}

func (e *Executor) dial(ctx context.Context, network, address string) (net.Conn, error) {
	if e.cfg.DialContext != nil {
		return e.cfg.DialContext(ctx, network, address)
	}
	d := net.Dialer{Timeout: e.cfg.HTTPTimeout, Control: e.controlAddr}
	return d.DialContext(ctx, network, address)
}

// controlAddr checks the socket's address once more right before connect.
func (e *Executor) controlAddr(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return err
	}
	return e.checkAddr(ap.Addr())
}

// newTransport builds the one HTTP transport: no proxy from the
// environment (it would hide the destination from the address check), no
// connection reuse, the guarded dialer and bounded headers.
func (e *Executor) newTransport() *http.Transport {
	return &http.Transport{
		Proxy:                  nil,
		DialContext:            e.dialGuarded,
		TLSClientConfig:        e.cfg.TLSClientConfig.Clone(),
		TLSHandshakeTimeout:    e.cfg.HTTPTimeout,
		ResponseHeaderTimeout:  e.cfg.HTTPTimeout,
		DisableKeepAlives:      true,
		MaxResponseHeaderBytes: 64 << 10,
	}
}

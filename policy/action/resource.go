package action

import (
	"errors"
	"fmt"
	"strings"
)

// uri is a resource split into its parts, before any decoding.
type uri struct {
	scheme    string // lowercased
	authority string
	path      string // "" or starting with "/"
	extra     string // "" or the raw "?query#fragment" suffix
}

// NormalizeResource returns the one canonical form of resource for an action
// of type actionType, or an error wrapping ErrNormalization. It is pure: it
// never looks at the filesystem or the network. Rules per scheme:
//
//   - file://workspace/<path>: the only file host; the path is cleaned.
//   - url://<host>[:port]/<path>: host lowercased, ports 80 and 443 dropped,
//     query and fragment dropped, an empty path becomes "/".
//   - repo://<org>/<repo>, secret://<host>/<name>: one segment, lowercased.
//   - mcp://<server>/<path>: server lowercased, path case preserved.
//   - <scheme>://<host>/<path>: custom schemes, for custom action types only.
//
// Every path is split on "/" (a backslash counts as "/"), each segment is
// percent-decoded exactly once and refused if it decodes to a separator, is
// not UTF-8, holds a control character or is made of dots (see docs/actions.md).
func NormalizeResource(actionType, resource string) (string, error) {
	out, err := normalize(actionType, resource)
	if err != nil {
		return "", normalizationError("normalize resource", err)
	}
	return out, nil
}

func normalize(actionType, resource string) (string, error) {
	if resource == "" {
		return "", errors.New("resource is required")
	}
	u, err := splitURI(resource)
	if err != nil {
		return "", err
	}
	if IsMCP(actionType) && u.scheme != "mcp" {
		return "", errors.New("mcp action types require an mcp:// resource")
	}
	switch u.scheme {
	case "file":
		return normalizeFile(u)
	case "url":
		return normalizeURL(u)
	case "repo", "secret":
		return normalizeNamed(u)
	}
	// Schemes of their own are for custom action types only; a built-in
	// executor must never receive a target it does not understand.
	if !IsMCP(actionType) && !isCustom(actionType) {
		return "", fmt.Errorf("unsupported resource scheme %s", quoteKey(u.scheme))
	}
	if u.scheme == "mcp" {
		return normalizeMCP(actionType, u)
	}
	return normalizeCustom(u)
}

// splitURI cuts a resource into scheme, authority, path and the rest.
// Backslashes become "/" first, so "a\..\b" is seen as the traversal it is on
// Windows and by WHATWG URL parsers, and "host\@evil" cannot hide a host.
func splitURI(s string) (uri, error) {
	s = strings.ReplaceAll(s, `\`, "/")
	i := strings.Index(s, "://")
	if i < 0 {
		return uri{}, errors.New("resource must be an absolute uri like scheme://host/path")
	}
	scheme := asciiLower(s[:i])
	if !validScheme(scheme) {
		return uri{}, errors.New("invalid resource scheme")
	}
	rest := s[i+3:]
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	u := uri{scheme: scheme, authority: rest[:end]}
	rest = rest[end:]
	q := strings.IndexAny(rest, "?#")
	if q < 0 {
		q = len(rest)
	}
	u.path, u.extra = rest[:q], rest[q:]
	return u, nil
}

// validScheme checks RFC 3986's scheme syntax on a lowercased scheme.
func validScheme(s string) bool {
	if s == "" || !isLower(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !isLower(c) && !isDigit(c) && c != '+' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

func normalizeFile(u uri) (string, error) {
	if u.extra != "" {
		return "", errors.New("file resource must not have a query or fragment")
	}
	if strings.Contains(u.authority, "@") {
		return "", errors.New("file userinfo is not allowed")
	}
	if asciiLower(u.authority) != "workspace" {
		return "", errors.New(`file host must be "workspace"`)
	}
	segs, err := pathSegments(u.path, "file")
	if err != nil {
		return "", err
	}
	if len(segs) == 0 {
		return "", errors.New("file path is required")
	}
	return "file://workspace/" + joinSegments(segs), nil
}

// normalizeURL drops query and fragment: they are not part of the target a
// policy names, and keeping them would let every request look unique.
func normalizeURL(u uri) (string, error) {
	host, err := normalizeHost(u.authority, "url")
	if err != nil {
		return "", err
	}
	segs, err := pathSegments(u.path, "url")
	if err != nil {
		return "", err
	}
	return "url://" + host + "/" + joinSegments(segs), nil
}

// normalizeNamed handles repo:// and secret://, which name one thing on one
// host: exactly one segment, all lowercased.
func normalizeNamed(u uri) (string, error) {
	kind := u.scheme
	if u.extra != "" {
		return "", errors.New(kind + " resource must not have a query or fragment")
	}
	host, err := nameHost(u.authority, kind, kind+" host")
	if err != nil {
		return "", err
	}
	segs, err := pathSegments(u.path, kind)
	if err != nil {
		return "", err
	}
	if len(segs) != 1 {
		return "", errors.New(kind + " path must be a single segment")
	}
	return kind + "://" + host + "/" + escapeSegment(strings.ToLower(segs[0])), nil
}

// normalizeMCP keeps the path's case: tool, prompt and resource names are
// case-sensitive upstream. "?" and "#" are plain characters there, since an
// MCP resource URI may carry its own query.
func normalizeMCP(actionType string, u uri) (string, error) {
	server, err := nameHost(u.authority, "mcp", "mcp server")
	if err != nil {
		return "", err
	}
	if u.path == "" {
		return "", errors.New("mcp path is required")
	}
	segs, err := pathSegments(u.path+u.extra, "mcp")
	if err != nil {
		return "", err
	}
	if len(segs) == 0 {
		return "", errors.New("mcp path is required")
	}
	if err := checkMCPShape(actionType, segs); err != nil {
		return "", err
	}
	return "mcp://" + server + "/" + joinSegments(segs), nil
}

// checkMCPShape holds each MCP action type to its documented resource form,
// so policies written for one surface cannot be reached through another.
func checkMCPShape(actionType string, segs []string) error {
	var prefix, form string
	switch actionType {
	case TypeMCPResourceRead:
		prefix, form = "resource", "mcp://<server>/resource/<uri>"
	case TypeMCPPromptGet:
		prefix, form = "prompt", "mcp://<server>/prompt/<name>"
	case TypeMCPCompletion:
		prefix, form = "completion", "mcp://<server>/completion/<ref>"
	case TypeMCPSample:
		if len(segs) == 1 && segs[0] == "sample" {
			return nil
		}
		return errors.New("mcp.sample resource must be mcp://<server>/sample")
	case TypeMCPElicit:
		if len(segs) == 1 && segs[0] == "elicit" {
			return nil
		}
		return errors.New("mcp.elicit resource must be mcp://<server>/elicit")
	default:
		return nil
	}
	if len(segs) < 2 || segs[0] != prefix {
		return fmt.Errorf("%s resource must be %s", actionType, form)
	}
	return nil
}

func normalizeCustom(u uri) (string, error) {
	if u.extra != "" {
		return "", errors.New("resource query and fragment are not allowed")
	}
	host, err := normalizeHost(u.authority, "resource")
	if err != nil {
		return "", err
	}
	segs, err := pathSegments(u.path, "resource")
	if err != nil {
		return "", err
	}
	return u.scheme + "://" + host + "/" + joinSegments(segs), nil
}

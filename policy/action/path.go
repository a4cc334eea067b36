package action

import (
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"
)

// pathSegments splits a raw path on "/", drops empty segments (so "//"
// collapses, as path.Clean would) and decodes and checks each segment. Since
// no "." or ".." segment survives, joining the result equals path.Clean of
// the decoded path. kind names the scheme in error messages.
func pathSegments(raw, kind string) ([]string, error) {
	var segs []string
	for _, s := range strings.Split(raw, "/") {
		if s == "" {
			continue
		}
		d, err := decodeSegment(s, kind)
		if err != nil {
			return nil, err
		}
		segs = append(segs, d)
	}
	return segs, nil
}

// decodeSegment percent-decodes one segment exactly once. A decoded "%" is
// kept literally, so %252e%252e stays the name "%2e%2e" and is never read
// as "..". An encoded "/" or "\" would hide a separator from the split.
func decodeSegment(s, kind string) (string, error) {
	if strings.IndexByte(s, '%') < 0 {
		return s, checkSegment(s, kind)
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		c, ok := decodeEscape(s, i)
		if !ok {
			return "", errors.New("invalid percent escape in " + kind + " path")
		}
		if c == '/' || c == '\\' {
			return "", errors.New("encoded separators are not allowed")
		}
		b.WriteByte(c)
		i += 2
	}
	d := b.String()
	return d, checkSegment(d, kind)
}

// decodeEscape reads the %XX escape at s[i].
func decodeEscape(s string, i int) (byte, bool) {
	if i+2 >= len(s) {
		return 0, false
	}
	hi, ok1 := unhex(s[i+1])
	lo, ok2 := unhex(s[i+2])
	return hi<<4 | lo, ok1 && ok2
}

// checkSegment refuses what a decoded segment must never be. Invalid UTF-8
// covers overlong forms such as %c0%ae (an old spelling of "."). Control
// characters include NUL, which truncates paths in C APIs, and the bidi
// overrides that make a name display as something else to a human approver.
func checkSegment(d, kind string) error {
	if !utf8.ValidString(d) {
		return errors.New(kind + " path is not valid utf-8")
	}
	if strings.IndexFunc(d, Invisible) >= 0 {
		return errors.New(kind + " path contains a control character")
	}
	if isDotSegment(d) {
		return errors.New(kind + " path traversal detected")
	}
	return nil
}

// isDotSegment reports segments that some system reads as "." or "..":
// Windows drops trailing dots and spaces (".. " is ".."), and Java servlet
// containers drop ";params" ("..;x" is ".."). Such names have no honest use.
// Unicode look-alikes of "." (U+FF0E, U+2024, U+3002...) are not dots here:
// they stay ordinary characters, so they can never form a ".." segment.
func isDotSegment(d string) bool {
	if i := strings.IndexByte(d, ';'); i >= 0 {
		d = d[:i]
	}
	return strings.Contains(d, ".") && strings.Trim(d, ". ") == ""
}

// Invisible reports characters that display as nothing or change what a
// human reads around them: controls, every format character (Unicode
// category Cf: bidirectional marks, overrides and isolates, the Arabic
// letter mark, zero-width spaces and joiners, the soft hyphen, invisible
// tags...), and the line and paragraph separators. A path must not hold
// them; approval previews escape them; MCP names holding them are hidden.
func Invisible(r rune) bool {
	return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == 0x2028 || r == 0x2029
}

// joinSegments writes decoded segments back as a path.
func joinSegments(segs []string) string {
	out := make([]string, len(segs))
	for i, s := range segs {
		out[i] = escapeSegment(s)
	}
	return strings.Join(out, "/")
}

// escapeSegment re-encodes the only characters that would change meaning if
// the normalized form were normalized again: "%" (an escape), "?" and "#"
// (query and fragment). Everything else stays decoded and readable, so the
// output is a valid input that normalizes to itself.
func escapeSegment(s string) string {
	if !strings.ContainsAny(s, "%?#") {
		return s
	}
	r := strings.NewReplacer("%", "%25", "?", "%3F", "#", "%23")
	return r.Replace(s)
}

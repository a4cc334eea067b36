package redact

import (
	"strings"
	"unicode/utf8"
)

// Cap cuts s to at most maxLines lines and then to at most maxBytes bytes,
// never inside a UTF-8 sequence, and reports whether it cut anything. A limit
// of zero or less does not apply. Cap runs after redaction: cutting first
// could split a secret so that no pattern recognizes the part left behind.
func Cap(s string, maxBytes, maxLines int64) (string, bool) {
	cut := false
	if maxLines > 0 {
		if end := lineEnd(s, maxLines); end < len(s) {
			s, cut = s[:end], true
		}
	}
	if maxBytes > 0 && int64(len(s)) > maxBytes {
		s, cut = s[:runeBoundary(s, int(maxBytes))], true
	}
	return s, cut
}

// lineEnd returns the offset just past the n-th newline, or len(s).
func lineEnd(s string, n int64) int {
	off := 0
	for ; n > 0; n-- {
		i := strings.IndexByte(s[off:], '\n')
		if i < 0 {
			return len(s)
		}
		off += i + 1
	}
	return off
}

// runeBoundary moves n back to the start of the rune it falls inside, so
// s[:n] ends on a whole rune. It backs off at most utf8.UTFMax-1 bytes, which
// also bounds the work on invalid UTF-8.
func runeBoundary(s string, n int) int {
	for i := 0; i < utf8.UTFMax-1 && n > 0 && !utf8.RuneStart(s[n]); i++ {
		n--
	}
	return n
}

package redact

import "regexp"

// pemEndRE recognizes a match of the private key rule that ended at its
// end line rather than at the end of the text.
var pemEndRE = regexp.MustCompile(`-----END[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----\z`)

// OpenBlock returns the offset in s where a secret that spans lines starts
// without ending (a private key block whose end line has not arrived yet),
// or -1. Every other built-in rule matches within a line, so a redactor fed
// a stream in pieces masks exactly what it would mask in the whole text if
// each piece ends at a newline and no piece ends inside an open block.
func OpenBlock(s string) int {
	locs := builtinRE.pem.FindAllStringIndex(s, -1)
	if len(locs) == 0 {
		return -1
	}
	last := locs[len(locs)-1]
	if pemEndRE.MatchString(s[last[0]:last[1]]) {
		return -1
	}
	return last[0]
}

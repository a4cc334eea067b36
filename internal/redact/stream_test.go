package redact

import "testing"

func TestOpenBlock(t *testing.T) {
	begin, end := "-----BEGIN RSA PRIVATE KEY-----\n", "-----END RSA PRIVATE KEY-----\n"
	for in, want := range map[string]int{
		"plain text\n":                           -1,
		"a\n" + begin + "MIIE\n":                 2,
		"a\n" + begin + "MIIE\n" + end:           -1,
		begin + "x\n" + end + "b\n" + begin:      len(begin + "x\n" + end + "b\n"),
		begin + "x\n-----END00000\n":             0, // not an end line, so still open
		"-----BEGIN CERTIFICATE-----\nMIIE\n":    -1,
		"-----BEGIN PRIVATE KEY BLOCK-----\nx\n": 0,
	} {
		if got := OpenBlock(in); got != want {
			t.Errorf("OpenBlock(%q) = %d, want %d", in, got, want)
		}
	}
}

package action

import (
	"errors"
	"strings"
	"testing"
)

// TestNormalizeResourceErrors has one case per distinct error message, by
// scheme, with the exact reason each must give.
func TestNormalizeResourceErrors(t *testing.T) {
	cases := []struct{ typ, res, want string }{
		{"fs.read", "", "resource is required"},
		{"fs.read", "workspace/a", "resource must be an absolute uri like scheme://host/path"},
		{"x.y", "://a/b", "invalid resource scheme"},
		{"x.y", "a_b://h/p", "invalid resource scheme"},
		{"mcp.call", "url://h/p", "mcp action types require an mcp:// resource"},
		{"fs.read", "gopher://h/p", `unsupported resource scheme "gopher"`},
		{"not-a-type", "gopher://h/p", `unsupported resource scheme "gopher"`},
		{"fs.read", "file://workspace/a?b", "file resource must not have a query or fragment"},
		{"fs.read", "file://a@workspace/b", "file userinfo is not allowed"},
		{"fs.read", "file://Workspace2/b", `file host must be "workspace"`},
		{"fs.read", "file://workspace", "file path is required"},
		{"fs.read", "file://workspace/%", "invalid percent escape in file path"},
		{"fs.read", "file://workspace/%2F", "encoded separators are not allowed"},
		{"fs.read", "file://workspace/%ff", "file path is not valid utf-8"},
		{"fs.read", "file://workspace/a%7F", "file path contains a control character"},
		{"fs.read", "file://workspace/a\u0085", "file path contains a control character"},
		{"fs.read", "file://workspace/a\u2066b", "file path contains a control character"},
		// every format character: invisible, or reordering what an approver reads
		{"fs.read", "file://workspace/a\u200bb", "file path contains a control character"},
		{"fs.read", "file://workspace/a%E2%80%8Db", "file path contains a control character"},
		{"fs.read", "file://workspace/a\u00adb", "file path contains a control character"},
		{"fs.read", "file://workspace/a\U000E0041b", "file path contains a control character"},
		{"fs.read", "file://workspace/a\u2028b", "file path contains a control character"},
		{"payments.refund", "payments://shop/re\u061cdnuf", "resource path contains a control character"},
		{"fs.read", "file://workspace/..", "file path traversal detected"},
		{"net.http_request", "url://u@h/", "url userinfo is not allowed"},
		{"net.http_request", "url:///p", "url host is required"},
		{"net.http_request", "url://h!/p", "invalid url host"},
		{"net.http_request", "url://h:0/p", "invalid url port"},
		{"net.http_request", "url://h:65536/p", "invalid url port"},
		{"net.http_request", "url://h/%zz", "invalid percent escape in url path"},
		{"net.http_request", "url://h/%c0%ae", "url path is not valid utf-8"},
		{"net.http_request", "url://h/%09", "url path contains a control character"},
		{"net.http_request", "url://h/a/%2E", "url path traversal detected"},
		{"repo.apply_patch", "repo://org/r?x", "repo resource must not have a query or fragment"},
		{"repo.apply_patch", "repo://u@org/r", "repo userinfo is not allowed"},
		{"repo.apply_patch", "repo:///r", "repo host is required"},
		{"repo.apply_patch", "repo://[::1]/r", "invalid repo host"},
		{"repo.apply_patch", "repo://../r", "invalid repo host"},
		{"repo.apply_patch", "repo://org/a/b", "repo path must be a single segment"},
		{"repo.apply_patch", "repo://org/.", "repo path traversal detected"},
		{"secrets.checkout", "secret://v/a#b", "secret resource must not have a query or fragment"},
		{"secrets.checkout", "secret://u@v/a", "secret userinfo is not allowed"},
		{"secrets.checkout", "secret:///a", "secret host is required"},
		{"secrets.checkout", "secret://v:1/a", "invalid secret host"},
		{"secrets.checkout", "secret://v", "secret path must be a single segment"},
		{"secrets.checkout", "secret://v/%00", "secret path contains a control character"},
		{"mcp.call", "mcp://u@srv/t", "mcp userinfo is not allowed"},
		{"mcp.call", "mcp:///t", "mcp server is required"},
		{"mcp.call", "mcp://srv:80/t", "invalid mcp server"},
		{"mcp.call", "mcp://srv", "mcp path is required"},
		{"mcp.call", "mcp://srv?x", "mcp path is required"},
		{"mcp.call", "mcp://srv/%5C", "encoded separators are not allowed"},
		{"mcp.call", "mcp://srv/a?/../b", "mcp path traversal detected"},
		{"mcp.resource_read", "mcp://srv/resource", "mcp.resource_read resource must be mcp://<server>/resource/<uri>"},
		{"mcp.prompt_get", "mcp://srv/prompts/x", "mcp.prompt_get resource must be mcp://<server>/prompt/<name>"},
		{"mcp.completion", "mcp://srv/x/completion", "mcp.completion resource must be mcp://<server>/completion/<ref>"},
		{"mcp.sample", "mcp://srv/Sample", "mcp.sample resource must be mcp://<server>/sample"},
		{"pay.refund", "pay://u@shop/x", "resource userinfo is not allowed"},
		{"pay.refund", "pay://:80/x", "resource host is required"},
		{"pay.refund", "pay://sh op/x", "invalid resource host"},
		{"pay.refund", "pay://shop:x/y", "invalid resource port"},
		{"pay.refund", "pay://shop/x#y", "resource query and fragment are not allowed"},
		{"pay.refund", "pay://shop/%", "invalid percent escape in resource path"},
		{"pay.refund", "pay://shop/%80", "resource path is not valid utf-8"},
		{"pay.refund", "pay://shop/a%0d", "resource path contains a control character"},
		{"pay.refund", "pay://shop/.%2E/x", "resource path traversal detected"},
	}
	for _, tc := range cases {
		got, err := NormalizeResource(tc.typ, tc.res)
		want := "normalize resource: " + tc.want + ": normalization error"
		if err == nil || err.Error() != want || !errors.Is(err, ErrNormalization) || got != "" {
			t.Errorf("NormalizeResource(%q, %q) = %q, %v; want error %q", tc.typ, tc.res, got, err, want)
		}
	}
}

// TestLookalikesNeverSeparate: Unicode look-alikes of "/", "\" and "." stay
// ordinary characters of one segment, in any position and in any scheme.
func TestLookalikesNeverSeparate(t *testing.T) {
	lookalikes := []string{"\u2215", "\u2044", "\uff0f", "\u29f5", "\uff3c", "\u2216", "\ufe68", "\uff0e", "\u2024", "\u3002", "\ufe52", "\u2025", "\u2026"}
	for _, l := range lookalikes {
		for _, seg := range []string{l, l + l, "a" + l + l + "b", ".." + l, l + ".."} {
			for _, res := range []string{"file://workspace/x/" + seg, "url://h/x/" + seg, "mcp://srv/x/" + seg} {
				typ := "mcp.call"
				if !strings.HasPrefix(res, "mcp") {
					typ = "fs.read"
				}
				got, err := NormalizeResource(typ, res)
				if err != nil {
					t.Errorf("NormalizeResource(%q) refused a look-alike: %v", res, err)
					continue
				}
				if !strings.HasSuffix(got, "/x/"+seg) {
					t.Errorf("NormalizeResource(%q) = %q: the look-alike changed the path", res, got)
				}
			}
		}
	}
}

// TestNormalizeDecodesOnce: the same input always gives the same output, and a
// percent escape is decoded exactly once however deep it is nested.
func TestNormalizeDecodesOnce(t *testing.T) {
	cases := map[string]string{
		"file://workspace/%2e%2e%2fx":   "",
		"file://workspace/%252e%252e":   "file://workspace/%252e%252e",
		"file://workspace/%25252e":      "file://workspace/%25252e",
		"file://workspace/%25%32%65":    "file://workspace/%252e",
		"file://workspace/%%32%65%%32e": "",
	}
	for in, want := range cases {
		for range 3 {
			got, err := NormalizeResource("fs.read", in)
			if got != want || (want == "") != (err != nil) {
				t.Errorf("NormalizeResource(%q) = %q, %v; want %q", in, got, err, want)
			}
		}
	}
}

func TestIsBuiltinAndIsMCP(t *testing.T) {
	for _, typ := range []string{"fs.read", "fs.write", "repo.apply_patch", "process.exec", "net.http_request", "secrets.checkout"} {
		if !IsBuiltin(typ) || IsMCP(typ) || isCustom(typ) {
			t.Errorf("%s: want built-in only", typ)
		}
	}
	for _, typ := range []string{"mcp.call", "mcp.resource_read", "mcp.prompt_get", "mcp.completion", "mcp.sample"} {
		if IsBuiltin(typ) || !IsMCP(typ) || isCustom(typ) {
			t.Errorf("%s: want MCP only", typ)
		}
	}
	for _, typ := range []string{"payments.refund", "mcp.tools_list", "fs.read_all"} {
		if IsBuiltin(typ) || IsMCP(typ) || !isCustom(typ) {
			t.Errorf("%s: want custom", typ)
		}
	}
	for _, typ := range []string{"", "FS.READ", "fs", "fs.read "} {
		if IsBuiltin(typ) || IsMCP(typ) || isCustom(typ) {
			t.Errorf("%q: want no kind at all", typ)
		}
	}
}

func TestMCPFileShorthand(t *testing.T) {
	ok := []struct{ in, want string }{
		{"README.md", "file://workspace/README.md"},
		{"./README.md", "file://workspace/README.md"},
		{"././docs//a.md", "file://workspace/docs/a.md"},
		{`src\main.go`, "file://workspace/src/main.go"},
		{`.\src\Main.go`, "file://workspace/src/Main.go"},
		{"100%.txt", "file://workspace/100%25.txt"},
		{"%2e%2e/etc/passwd", "file://workspace/%252e%252e/etc/passwd"},
		{"why?.md#x", "file://workspace/why%3F.md%23x"},
		{"a b/文件.txt", "file://workspace/a b/文件.txt"},
		{"file://workspace/docs/a%20b.md", "file://workspace/docs/a b.md"},
		{"FILE://workspace/x", "file://workspace/x"},
	}
	for _, tc := range ok {
		got, err := MCPFileShorthand(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("MCPFileShorthand(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	bad := []struct{ in, want string }{
		{"/etc/passwd", "mcp file shorthand: absolute host paths are not allowed"},
		{`\etc\passwd`, "mcp file shorthand: absolute host paths are not allowed"},
		{`\\server\share\x`, "mcp file shorthand: absolute host paths are not allowed"},
		{`C:\Windows\win.ini`, "mcp file shorthand: absolute host paths are not allowed"},
		{"C:/Windows/win.ini", "mcp file shorthand: absolute host paths are not allowed"},
		{"c:x", "mcp file shorthand: absolute host paths are not allowed"},
		{"https://example.com/x", "mcp file shorthand: only file:// uris are allowed"},
		{"mcp://srv/x", "mcp file shorthand: only file:// uris are allowed"},
		{"", "mcp file shorthand: file path is required"},
		{"./", "mcp file shorthand: file path is required"},
		{"../secret", "mcp file shorthand: file path traversal detected"},
		{"a/../../b", "mcp file shorthand: file path traversal detected"},
		{`a\..\..\b`, "mcp file shorthand: file path traversal detected"},
		{"a\x00b", "mcp file shorthand: file path contains a control character"},
		{"file:///etc/passwd", `mcp file shorthand: file host must be "workspace"`},
		{"file://workspace/%2e%2e/x", "mcp file shorthand: file path traversal detected"},
	}
	for _, tc := range bad {
		got, err := MCPFileShorthand(tc.in)
		want := tc.want + ": normalization error"
		if err == nil || err.Error() != want || !errors.Is(err, ErrNormalization) {
			t.Errorf("MCPFileShorthand(%q) = %q, %v; want error %q", tc.in, got, err, want)
		}
	}
}

// TestNonASCIINeverFoldsToASCII: Unicode case mapping turns the Kelvin sign
// into "k" and folds the long s with "s"; hosts and schemes must not.
func TestNonASCIINeverFoldsToASCII(t *testing.T) {
	cases := []struct{ typ, res, want string }{
		{"net.http_request", "url://\u212Aexample.com/", "invalid url host"},
		{"x.y", "\u212Aa://x/y", "invalid resource scheme"},
		{"fs.read", "file://work\u017Fpace/x", `file host must be "workspace"`},
		{"mcp.call", "mcp://\u212A/x", "invalid mcp server"},
		{"secrets.checkout", "secret://\u212A/x", "invalid secret host"},
	}
	for _, tc := range cases {
		_, err := NormalizeResource(tc.typ, tc.res)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NormalizeResource(%q) error %v, want %q", tc.res, err, tc.want)
		}
	}
}

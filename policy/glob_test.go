package policy

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestGlobMatch(t *testing.T) {
	tests := []struct {
		pattern, value string
		want           bool
	}{
		{"file://workspace/**", "file://workspace/a/b/c.go", true},
		{"file://workspace/**", "file://workspace", true},
		{"file://workspace/**", "file://workspaces/a", false},
		{"file://workspace/*", "file://workspace/a", true},
		{"file://workspace/*", "file://workspace/a/b", false},
		{"file://workspace/**/*.pem", "file://workspace/k.pem", true},
		{"file://workspace/**/*.pem", "file://workspace/a/b/k.pem", true},
		{"file://workspace/**/*.pem", "file://workspace/a/b/k.pem.bak", false},
		{"file://workspace/**/.env", "file://workspace/.env", true},
		{"file://workspace/**/.env.*", "file://workspace/x/.env.local", true},
		{"file://workspace/**/.env.*", "file://workspace/x/.env", false},
		{"file://workspace/src/**", "file://workspace/src", true},
		{"file://workspace/src/**", "file://workspace/srcx/a", false},
		{"file://workspace/a?c", "file://workspace/abc", true},
		{"file://workspace/a?c", "file://workspace/a/c", false},
		{"file://workspace/a?c", "file://workspace/aéc", true},
		{"file://workspace/**/secrets/*", "file://workspace/x/y/secrets/k", true},
		{"file://workspace/**/secrets/*", "file://workspace/secrets", false},
		{"**", "anything/at/all", true},
		{"*://workspace/x", "file://workspace/x", true},
		{"mcp://retail/refund_order", "mcp://retail/refund_order", true},
		{"mcp://retail/refund_order", "mcp://retail/refund_orders", false},
		{"file://workspace/a/**/b/**/c", "file://workspace/a/x/b/y/z/c", true},
		{"file://workspace/a/**/b/**/c", "file://workspace/a/x/c", false},
		{"file://workspace/*.go", `file://workspace/a\b.go`, false},
		{"url://api.example.com/**", "url://api.example.com/", true},
		{"file://workspace/*/**", "file://workspace", false},
	}
	for _, tt := range tests {
		g, err := compileGlob(tt.pattern)
		if err != nil {
			t.Fatalf("%s: %v", tt.pattern, err)
		}
		if got := g.match(tt.value); got != tt.want {
			t.Errorf("%q ~ %q = %v, want %v", tt.pattern, tt.value, got, tt.want)
		}
		if got := refGlob(tt.pattern, tt.value); got != tt.want {
			t.Errorf("reference %q ~ %q = %v, want %v", tt.pattern, tt.value, got, tt.want)
		}
	}
}

func TestGlobAnchor(t *testing.T) {
	tests := []struct {
		pattern, anchor string
		depth           int
	}{
		{"file://workspace/**", "file://workspace", 3},
		{"file://workspace/src/*.go", "file://workspace/src", 4},
		{"mcp://retail/lookup", "mcp://retail/lookup", 4},
		{"**", "", 0},
		{"*://x", "", 0},
	}
	for _, tt := range tests {
		g, _ := compileGlob(tt.pattern)
		if g.anchor != tt.anchor || g.depth != tt.depth {
			t.Errorf("%s: anchor %q/%d, want %q/%d", tt.pattern, g.anchor, g.depth, tt.anchor, tt.depth)
		}
	}
}

// refGlob is the obvious recursive definition, kept independent of the
// compiled matcher: split both on "/" and try every split for "**".
func refGlob(pattern, value string) bool {
	if strings.Contains(value, `\`) {
		return false
	}
	return refSegs(strings.Split(pattern, "/"), strings.Split(value, "/"))
}

func refSegs(p, v []string) bool {
	if len(p) == 0 {
		return len(v) == 0
	}
	if p[0] == "**" {
		for k := 0; k <= len(v); k++ {
			if refSegs(p[1:], v[k:]) {
				return true
			}
		}
		return false
	}
	return len(v) > 0 && (p[0] == "*" || refSegment([]rune(p[0]), []rune(v[0]))) && refSegs(p[1:], v[1:])
}

func refSegment(p, s []rune) bool {
	if len(p) == 0 {
		return len(s) == 0
	}
	switch p[0] {
	case '*':
		for k := 0; k <= len(s); k++ {
			if refSegment(p[1:], s[k:]) {
				return true
			}
		}
		return false
	case '?':
		return len(s) > 0 && refSegment(p[1:], s[1:])
	}
	return len(s) > 0 && s[0] == p[0] && refSegment(p[1:], s[1:])
}

func FuzzGlob(f *testing.F) {
	seeds := [][2]string{
		{"file://workspace/**", "file://workspace/a/b"},
		{"file://workspace/**/*.pem", "file://workspace/x/k.pem"},
		{"a/**/b/*/c", "a/b/x/c"},
		{"*.e?v.*", ".env.local"},
		{"**/**", ""},
		{"a*b*c", "aXbYbZc"},
		{"?é", "xé"},
		{"x/**", "x"},
	}
	for _, s := range seeds {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, value string) {
		// The reference is exponential in stars; keep it fast.
		if !utf8.ValidString(pattern) || !utf8.ValidString(value) || len(pattern) > 32 || len(value) > 32 || strings.Count(pattern, "*") > 4 {
			return
		}
		g, err := compileGlob(pattern)
		if err != nil {
			return
		}
		if got, want := g.match(value), refGlob(pattern, value); got != want {
			t.Fatalf("%q ~ %q: matcher %v, reference %v", pattern, value, got, want)
		}
		if got, want := wildcardMatch(pattern, []byte(value)), refSegment([]rune(pattern), []rune(value)); got != want {
			t.Fatalf("wildcard %q ~ %q: %v, reference %v", pattern, value, got, want)
		}
	})
}

func TestArgvPatternMatch(t *testing.T) {
	tests := []struct {
		pattern []string
		deny    bool
		argv    string
		want    bool
	}{
		{[]string{"git", "status"}, false, `["git","status"]`, true},
		{[]string{"git", "status"}, false, `["git","status","-s"]`, false},
		{[]string{"git", "status", "**"}, false, `["git","status","-s"]`, false},
		{[]string{"git", "status", "**"}, false, `["git","status"]`, true},
		{[]string{"git", "status", "**"}, false, `["git","status","src","docs"]`, true},
		{[]string{"git", "status", "--short"}, false, `["git","status","--short"]`, true},
		{[]string{"git", "status", "-*"}, false, `["git","status","-s"]`, true},
		{[]string{"git", "status", "-**"}, false, `["git","status","-s","--","src"]`, true},
		{[]string{"git", "*"}, false, `["git","push"]`, true},
		{[]string{"git", "*"}, false, `["git","-C"]`, false},
		{[]string{"git", "*"}, false, `["git"]`, false},
		{[]string{"**", "--force"}, false, `["git","push","--force"]`, true},
		{[]string{"git", "**", "main"}, false, `["git","push","origin","main"]`, true},
		{[]string{"echo", "a\"b"}, false, `["echo","a\"b"]`, true},
		{[]string{"echo", "<x>"}, false, `["echo","\u003cx\u003e"]`, true},
		// Finding #1: options smuggled anywhere, spelled in any way.
		{[]string{"git", "diff", "**"}, false, `["git","diff","--no-index",".env","/dev/null"]`, false},
		{[]string{"git", "log", "**"}, false, `["git","log","-1","--output=/tmp/x"]`, false},
		{[]string{"git", "log", "**"}, false, `["git","log","HEAD","--output=.git/config"]`, false},
		{[]string{"git", "log", "**"}, false, `["git","log","\u002d-output=x"]`, false},
		{[]string{"git", "log", "**"}, false, `["git","log","\u002d"]`, false},
		{[]string{"git", "**"}, false, `["git","-c","core.pager=sh","log"]`, false},
		{[]string{"-**", "x", "**"}, false, `["x","-o","x"]`, true},
		{[]string{"**", "x", "-**"}, false, `["-o","x"]`, false},
		// A deny pattern's wildcards take options too: deny is never narrowed.
		{[]string{"git", "push", "**"}, true, `["git","push","--force","origin"]`, true},
		{[]string{"git", "*", "main"}, true, `["git","--no-pager","main"]`, true},
	}
	for _, tt := range tests {
		params := []byte(`{"argv":` + tt.argv + `}`)
		var argv spanList
		found, err := extractArgv(params, &argv, &foldCache{})
		if err != nil || !found {
			t.Fatalf("%s: %v %v", tt.argv, found, err)
		}
		p := compileArgvPattern(tt.pattern, tt.deny)
		items := argv.items()
		if got, err := p.match(&argvSource{b: params, spans: items}, len(items)); got != tt.want || err != nil {
			t.Errorf("%v (deny %v) ~ %s = %v (%v), want %v", tt.pattern, tt.deny, tt.argv, got, err, tt.want)
		}
	}
}

func TestExtractArgvErrors(t *testing.T) {
	for _, params := range []string{`{"argv":"ls"}`, `{"argv":["ls",1]}`, `{"argv":["ls"`, `{"argv":`} {
		if _, err := extractArgv([]byte(params), &spanList{}, &foldCache{}); err == nil {
			t.Errorf("%s: accepted", params)
		}
	}
	if found, err := extractArgv([]byte(`{"cwd":"x"}`), &spanList{}, &foldCache{}); found || err != nil {
		t.Errorf("absent argv: found=%v err=%v", found, err)
	}
}

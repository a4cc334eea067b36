package redact

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

func TestBuiltinRules(t *testing.T) {
	r := mustNew(t)
	tests := []struct{ name, in, want string }{
		{"header keeps name", "Authorization: Bearer abc.def-123456789", "Authorization: [REDACTED]"},
		{"header case", "PROXY-AUTHORIZATION:Basic dXNlcjpwYXNz", "PROXY-AUTHORIZATION:[REDACTED]"},
		{"header only to end of line", "Cookie: a=1; b=2\nnext line", "Cookie: [REDACTED]\nnext line"},
		{"quoted key", `"x-api-key": "k1"`, `"x-api-key": [REDACTED]`},
		{"bearer inline", "use bearer 0123456789abcdef now", "use bearer [REDACTED] now"},
		{"bearer prose kept", "Bearer authentication", "Bearer authentication"},
		{"basic decodes", "Basic dXNlcjpwYXNz", "Basic [REDACTED]"},
		{"basic realm kept", `Basic realm="x"`, `Basic realm="x"`},
		{"url password", "postgres://app:s3cr3t-pw@db/app", "postgres://app:[REDACTED]@db/app"},
		{"url port kept", "http://db:5432/app", "http://db:5432/app"},
		{"jwt", "t=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.sig_nature-x", "t=[REDACTED]"},
		{"aws key id", "AKIAABCDEFGHIJKLMNOP!", "[REDACTED]!"},
		{"aws secret", "aws_secret_access_key=" + strings.Repeat("a", 40), "aws_secret_access_key=[REDACTED]"},
		{"github", "ghp_" + strings.Repeat("x", 36), "[REDACTED]"},
		{"slack", "xoxb-1234567890-abcdef", "[REDACTED]"},
		{"stripe", "sk_live_" + strings.Repeat("Z", 24), "[REDACTED]"},
		{"stripe publishable kept", "pk_live_" + strings.Repeat("Z", 24), "pk_live_" + strings.Repeat("Z", 24)},
		{"pem", "a\n-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----\nb", "a\n[REDACTED]\nb"},
		{"pem cut off", "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg", "[REDACTED]"},
		{"certificate kept", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := r.String(tt.in); got != tt.want {
				t.Errorf("String(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestOperatorPatterns(t *testing.T) {
	r := mustNew(t, `acct-[0-9]{6}`, `ssn=(?P<secret>[0-9-]{11})`)
	got := r.String("acct-123456 ssn=123-45-6789 acct-12")
	if want := "[REDACTED] ssn=[REDACTED] acct-12"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if _, err := New([]string{`(unclosed`}); err == nil {
		t.Error("New accepted an invalid pattern")
	}
}

func TestWithAddsRulesAndExactSecrets(t *testing.T) {
	base := mustNew(t)
	derived, err := base.With([]string{`order-[0-9]+`}, []string{"hunter2hunter2", `pa"ss/wo rd`})
	if err != nil {
		t.Fatal(err)
	}
	in := `order-77 hunter2hunter2 "pa\"ss/wo rd" pa%22ss%2Fwo+rd`
	if got, want := derived.String(in), `[REDACTED] [REDACTED] "[REDACTED]" [REDACTED]`; got != want {
		t.Errorf("derived: got %q, want %q", got, want)
	}
	if got := base.String(in); got != in {
		t.Errorf("base changed by With: %q", got)
	}
	if same, _ := base.With(nil, nil); same != base {
		t.Error("With(nil, nil) should return the receiver")
	}
	if _, err := base.With(nil, []string{"short"}); err == nil {
		t.Error("With accepted an exact secret shorter than the minimum")
	}
	if _, err := base.With([]string{`[`}, nil); err == nil {
		t.Error("With accepted an invalid per-rule pattern")
	}
}

func TestExactSecretsLongestFirst(t *testing.T) {
	r, err := mustNew(t).With(nil, []string{"abcdefgh", "abcdefgh-ijkl"})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.String("x abcdefgh-ijkl y"); got != "x [REDACTED] y" {
		t.Errorf("got %q", got)
	}
}

func TestHeader(t *testing.T) {
	r := mustNew(t)
	in := http.Header{
		"Authorization":   {"Bearer abc"},
		"Set-Cookie":      {"a=1", "b=2"},
		"X-Vault-Token":   {"hvs.x"},
		"X-Debug":         {"key AKIAABCDEFGHIJKLMNOP"},
		"Content-Type":    {"text/plain"},
		"X-Forwarded-For": {"10.0.0.1"},
	}
	got := r.Header(in)
	want := http.Header{
		"Authorization":   {Mask},
		"Set-Cookie":      {Mask, Mask},
		"X-Vault-Token":   {Mask},
		"X-Debug":         {"key " + Mask},
		"Content-Type":    {"text/plain"},
		"X-Forwarded-For": {"10.0.0.1"},
	}
	gotJSON, _ := json.Marshal(got)
	wantJSON, _ := json.Marshal(want)
	if string(gotJSON) != string(wantJSON) {
		t.Errorf("got %s, want %s", gotJSON, wantJSON)
	}
	if in.Get("Authorization") != "Bearer abc" {
		t.Error("Header modified its input")
	}
	if r.Header(nil) != nil {
		t.Error("Header(nil) should be nil")
	}
}

func TestJSON(t *testing.T) {
	r, err := mustNew(t).With(nil, []string{"12345678901"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, in, want string }{
		{"order kept, compact", `{ "z": 1, "a": [true, null, 2.50] }`, `{"z":1,"a":[true,null,2.50]}`},
		{"credential keys", `{"password":"p","Api-Key":7,"token":null,"is_secret":false}`,
			`{"password":"[REDACTED]","Api-Key":"[REDACTED]","token":null,"is_secret":false}`},
		{"nested credential value", `{"headers":{"Authorization":["Bearer x",{"a":1}]},"n":0}`,
			`{"headers":{"Authorization":"[REDACTED]"},"n":0}`},
		{"string values", `["ghp_` + strings.Repeat("a", 36) + `"]`, `["[REDACTED]"]`},
		{"keys", `{"AKIAABCDEFGHIJKLMNOP":1}`, `{"[REDACTED]":1}`},
		{"exact number", `{"pin":12345678901}`, `{"pin":"[REDACTED]"}`},
		{"no html escaping", `{"m":"<a&b>"}`, `{"m":"<a&b>"}`},
		{"not non-credential hashes", `{"params_hash":"ab","secret_id":"db","credential_lease_ids":["lease_1"]}`,
			`{"params_hash":"ab","secret_id":"db","credential_lease_ids":["lease_1"]}`},
		{"invalid json falls back to text", `{"a": "Bearer 0123456789abcdef"`, `{"a": "Bearer [REDACTED]"`},
		{"trailing data falls back to text", `{} Bearer 0123456789abcdef`, `{} Bearer [REDACTED]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(r.JSON([]byte(tt.in))); got != tt.want {
				t.Errorf("JSON(%s) = %s, want %s", tt.in, got, tt.want)
			}
		})
	}
}

func TestJSONDeepNestingFallsBack(t *testing.T) {
	r := mustNew(t)
	deep := strings.Repeat("[", maxJSONDepth+5) + `"Bearer 0123456789abcdef"` + strings.Repeat("]", maxJSONDepth+5)
	got := string(r.JSON([]byte(deep)))
	if strings.Contains(got, "0123456789abcdef") {
		t.Error("deeply nested JSON leaked a token")
	}
}

func TestCap(t *testing.T) {
	tests := []struct {
		name            string
		in              string
		maxBytes, lines int64
		want            string
		cut             bool
	}{
		{"no limits", "abc", 0, 0, "abc", false},
		{"fits", "abc", 3, 1, "abc", false},
		{"bytes", "abcdef", 4, 0, "abcd", true},
		{"lines", "a\nb\nc\n", 0, 2, "a\nb\n", true},
		{"last line without newline counts", "a\nb", 0, 2, "a\nb", false},
		{"lines then bytes", "aaaa\nb\nc", 3, 2, "aaa", true},
		{"utf8 boundary", "héllo", 2, 0, "h", true},
		{"utf8 4-byte", "a😀b", 4, 0, "a", true},
		{"utf8 exact", "a😀b", 5, 0, "a😀", true},
		{"invalid utf8 backs off at most 3", "ab\x80\x80\x80\x80\x80", 6, 0, "ab\x80", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, cut := Cap(tt.in, tt.maxBytes, tt.lines)
			if got != tt.want || cut != tt.cut {
				t.Errorf("Cap(%q, %d, %d) = %q, %v; want %q, %v", tt.in, tt.maxBytes, tt.lines, got, cut, tt.want, tt.cut)
			}
		})
	}
}

func TestConcurrentUse(t *testing.T) {
	r := mustNew(t, `x-[0-9]+`)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := r.With([]string{`y-[0-9]+`}, []string{"abcdefghij"})
			if err != nil {
				t.Error(err)
				return
			}
			if got := d.String("x-1 y-2 abcdefghij"); got != "[REDACTED] [REDACTED] [REDACTED]" {
				t.Errorf("goroutine %d: %q", i, got)
			}
		}()
	}
	wg.Wait()
}

func FuzzJSON(f *testing.F) {
	f.Add([]byte(`{"a":"Bearer 0123456789abcdef","password":[1,2],"b":{"c":null}}`))
	f.Add([]byte(`["\u2028", 1e3, "\ud800"]`))
	r := mustNew(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		out := r.JSON(b)
		if json.Valid(b) && !json.Valid(out) {
			t.Fatalf("valid input %q gave invalid output %q", b, out)
		}
	})
}

func FuzzCap(f *testing.F) {
	f.Add("héllo\nwörld\n", int64(3), int64(1))
	f.Fuzz(func(t *testing.T, s string, maxBytes, maxLines int64) {
		got, cut := Cap(s, maxBytes, maxLines)
		if !strings.HasPrefix(s, got) || cut != (got != s) {
			t.Fatalf("Cap(%q) = %q, %v", s, got, cut)
		}
		if maxBytes > 0 && int64(len(got)) > maxBytes {
			t.Fatalf("Cap kept %d bytes, limit %d", len(got), maxBytes)
		}
		if utf8.ValidString(s) && !utf8.ValidString(got) {
			t.Fatalf("Cap split a rune: %q", got)
		}
	})
}

// The built-in order is part of the contract (docs/redaction.md).
func TestBuiltinOrder(t *testing.T) {
	var names []string
	for _, ru := range mustNew(t, `x`).rules {
		names = append(names, ru.name)
	}
	want := "pem_private_key credential_header bearer_token basic_auth url_userinfo jwt aws_access_key_id " +
		"aws_secret_access_key github_token slack_token stripe_key operator_0"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("rule order:\n got %s\nwant %s", got, want)
	}
}

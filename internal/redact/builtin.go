package redact

import (
	"encoding/base64"
	"regexp"
	"strings"
)

// credentialHeaders are the header names whose whole value is a credential.
var credentialHeaders = []string{
	"proxy-authorization", "authorization", "set-cookie", "cookie", "x-api-key", "x-auth-token",
}

// builtinRules returns the built-in rules in their fixed order. Each call
// returns a fresh slice; the compiled expressions are shared. Every rule but
// the PEM one matches within a single line.
func builtinRules() []rule {
	rules := []rule{
		// "Authorization: ..." style lines, also as a (JSON-escaped) quoted key.
		{name: "credential_header", re: builtinRE.header, group: 3, hints: credentialHeaders, foldHints: true},
		{name: "bearer_token", re: builtinRE.bearer, group: 1, hints: []string{"bearer"}, foldHints: true, keep: looksLikeToken},
		{name: "basic_auth", re: builtinRE.basic, group: 1, hints: []string{"basic"}, foldHints: true, keep: looksLikeBasic},
		{name: "url_userinfo", re: builtinRE.userinfo, group: 1, hints: []string{"@"}},
		{name: "jwt", re: builtinRE.jwt, hints: []string{"eyJ"}},
		{name: "aws_access_key_id", re: builtinRE.awsKeyID, hints: awsKeyPrefixes},
		{name: "aws_secret_access_key", re: builtinRE.awsSecret, group: 1, hints: []string{"secret"}, foldHints: true},
		{name: "github_token", re: builtinRE.github, hints: []string{"ghp_", "gho_", "ghs_", "ghu_", "ghr_", "github_pat_"}},
		{name: "slack_token", re: builtinRE.slack, hints: []string{"xox", "xapp-", "hooks.slack.com"}},
		{name: "stripe_key", re: builtinRE.stripe, hints: []string{"_live_", "_test_"}},
	}
	for i := range rules {
		rules[i].lineLocal = true
	}
	// A private key block spans lines; an unterminated block (a cut file)
	// is masked to the end of the text.
	pem := rule{name: "pem_private_key", re: builtinRE.pem, hints: []string{"PRIVATE KEY"}}
	return append([]rule{pem}, rules...)
}

var awsKeyPrefixes = []string{
	"AKIA", "ASIA", "ABIA", "ACCA", "AGPA", "AIDA", "AIPA", "ANPA", "ANVA", "APKA", "AROA", "ASCA",
}

// builtinRE holds the compiled built-in expressions. They are constant, so
// compiling them once per process is not mutable package state.
var builtinRE = struct {
	pem, header, bearer, basic, userinfo, jwt, awsKeyID, awsSecret, github, slack, stripe *regexp.Regexp
}{
	pem: regexp.MustCompile(`-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----(?s:.*?)` +
		`(?:-----END[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\z)`),
	header: regexp.MustCompile(`(?i)\b(` + strings.Join(credentialHeaders, "|") +
		`)((?:\\?["'])?[ \t]*:[ \t]*)([^\r\n]+)`),
	bearer:   regexp.MustCompile(`(?i)\bbearer[ \t]+([A-Za-z0-9\-._~+/]+=*)`),
	basic:    regexp.MustCompile(`(?i)\bbasic[ \t]+([A-Za-z0-9+/]+={0,2})`),
	userinfo: regexp.MustCompile(`(?i)(?:[a-z][a-z0-9+.\-]*:)?//[^/\s:@]+:([^/\s@]+)@`),
	jwt:      regexp.MustCompile(`eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*`),
	awsKeyID: regexp.MustCompile(`(?:` + strings.Join(awsKeyPrefixes, "|") + `)[A-Z0-9]{16}`),
	awsSecret: regexp.MustCompile(`(?i)(?:aws_?secret_?access_?key|aws_?secret_?key|secret_?access_?key)` +
		`(?:\\?["'])?[ \t]*[:=][ \t]*(?:\\?["'])?([A-Za-z0-9/+]{40})`),
	github: regexp.MustCompile(`(?:ghp|gho|ghs|ghu|ghr)_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255}`),
	slack: regexp.MustCompile(`xox[abposre]-[A-Za-z0-9\-]{10,}|xapp-[0-9]+-[A-Za-z0-9\-]{10,}` +
		`|https://hooks\.slack\.com/(?:services|workflows)/[A-Za-z0-9/_\-]+`),
	stripe: regexp.MustCompile(`(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}`),
}

// looksLikeToken tells a bearer token from prose such as "bearer
// authentication": tokens are long and carry digits or punctuation.
func looksLikeToken(s string) bool {
	if len(s) < 12 {
		return false
	}
	return len(s) >= 24 || strings.ContainsAny(s, "0123456789-._~+/=")
}

// looksLikeBasic accepts base64 "user:password" credentials, and other
// token-shaped values, but not a plain word after "basic".
func looksLikeBasic(s string) bool {
	if raw, err := base64.StdEncoding.DecodeString(s); err == nil && strings.Contains(string(raw), ":") {
		return true
	}
	return looksLikeToken(s) && strings.ContainsAny(s, "0123456789+/=")
}

package redact

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
)

// Mask replaces every redacted value.
const Mask = "[REDACTED]"

// MinExactSecretBytes is the shortest exact secret value accepted. Masking
// every occurrence of a shorter value would shred ordinary output while
// protecting little, so such secrets are refused instead.
const MinExactSecretBytes = 8

// SecretGroup names the submatch of an operator or per-rule pattern that is
// masked; a pattern without it masks its whole match.
const SecretGroup = "secret"

// rule is one compiled redaction pattern.
type rule struct {
	name string
	re   *regexp.Regexp
	// group is the submatch to mask; 0 masks the whole match.
	group int
	// hints are literals of which one must occur in the input for the rule
	// to possibly match; nil means always run. With foldHints they are
	// lowercase and matched against the ASCII-lowercased input.
	hints     []string
	foldHints bool
	// keep, when set, vetoes masking a candidate it does not recognize as a
	// secret (it returns false to leave the text as it is).
	keep func(candidate string) bool
	// lineLocal rules have hints and never match across a newline, so they
	// run only on the lines that carry one of their hints.
	lineLocal bool
}

// Redactor masks secrets in text, headers and JSON. It is immutable and
// safe for concurrent use.
type Redactor struct {
	rules []rule
	// exact are the exact secret values, sorted and deduplicated; replacer
	// masks them and their common encodings.
	exact    []string
	needles  []string // exact and their encodings (exactNeedles)
	replacer *strings.Replacer
	cache    *patternCache
	// scanners are reused by JSON's single-pass check; hints is built on
	// first use.
	scanners  sync.Pool
	hintsOnce sync.Once
	hints     *hintIndex
}

func (r *Redactor) hintIndex() *hintIndex {
	r.hintsOnce.Do(func() { r.hints = buildHintIndex(r.rules) })
	return r.hints
}

// New compiles the built-in rules followed by the operator's extra patterns
// (RE2 syntax), in the order given. An invalid pattern is an error.
func New(extraPatterns []string) (*Redactor, error) {
	cache := newPatternCache()
	extra, err := compileAll(cache, "operator", extraPatterns)
	if err != nil {
		return nil, err
	}
	rules := append(builtinRules(), extra...)
	return &Redactor{rules: rules, cache: cache}, nil
}

// With returns a Redactor that also applies the per-rule patterns, after all
// of r's rules, and masks the exact secret values. r itself is unchanged.
func (r *Redactor) With(patterns []string, exactSecrets []string) (*Redactor, error) {
	if len(patterns) == 0 && len(exactSecrets) == 0 {
		return r, nil
	}
	extra, err := compileAll(r.cache, "rule", patterns)
	if err != nil {
		return nil, err
	}
	exact, err := mergeExact(r.exact, exactSecrets)
	if err != nil {
		return nil, err
	}
	needles := exactNeedles(exact)
	return &Redactor{
		rules:    append(slices.Clip(r.rules), extra...),
		exact:    exact,
		needles:  needles,
		replacer: exactReplacer(needles),
		cache:    r.cache,
	}, nil
}

// String returns s with every secret masked.
func (r *Redactor) String(s string) string {
	return applyRules(s, r.rules, r.replacer)
}

// applyRules masks s with the given rules, in order, after the exact
// secrets of replacer (if any).
func applyRules(s string, rules []rule, replacer *strings.Replacer) string {
	if s == "" {
		return s
	}
	if replacer != nil {
		s = replacer.Replace(s)
	}
	for i := 0; i < len(rules); {
		n := lineLocalRun(rules[i:])
		if n == 0 {
			s = rules[i].applyIfHinted(s)
			i++
			continue
		}
		s = applyByLine(s, rules[i:i+n])
		i += n
	}
	return s
}

// lineLocalRun counts the line-local rules at the start of rules.
func lineLocalRun(rules []rule) int {
	n := 0
	for n < len(rules) && rules[n].lineLocal {
		n++
	}
	return n
}

// applyIfHinted applies a whole-text rule when s carries one of its hints.
func (ru *rule) applyIfHinted(s string) string {
	if len(ru.hints) > 0 && !containsAny(ru.haystack(s, nil), ru.hints) {
		return s
	}
	return ru.apply(s)
}

// haystack is the text the rule's hints are searched in; lowered caches the
// ASCII-lowercased s across rules.
func (ru *rule) haystack(s string, lowered *string) string {
	if !ru.foldHints {
		return s
	}
	if lowered == nil {
		return asciiLower(s)
	}
	if *lowered == "" {
		*lowered = asciiLower(s)
	}
	return *lowered
}

// lineHit says that rule may match in the line starting at start.
type lineHit struct{ start, rule int }

// applyByLine applies line-local rules only to the lines that carry one of
// their hints, which keeps the expensive matching off clean lines.
func applyByLine(s string, rules []rule) string {
	hits := hintedLines(s, rules)
	var b strings.Builder
	last := 0
	for i := 0; i < len(hits); {
		start, end := hits[i].start, lineEndAt(s, hits[i].start)
		line := s[start:end]
		for ; i < len(hits) && hits[i].start == start; i++ {
			line = rules[hits[i].rule].apply(line)
		}
		if line != s[start:end] {
			b.WriteString(s[last:start])
			b.WriteString(line)
			last = end
		}
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

// hintedLines finds, for each rule, the lines that carry one of its hints,
// sorted by line and then by rule so rules keep their order on each line.
func hintedLines(s string, rules []rule) []lineHit {
	var hits []lineHit
	lowered := ""
	for ri := range rules {
		text := rules[ri].haystack(s, &lowered)
		for _, h := range rules[ri].hints {
			for off := 0; off < len(text); {
				i := strings.Index(text[off:], h)
				if i < 0 {
					break
				}
				start := strings.LastIndexByte(text[:off+i], '\n') + 1
				hits = append(hits, lineHit{start: start, rule: ri})
				off = lineEndAt(text, off+i)
			}
		}
	}
	slices.SortFunc(hits, func(a, b lineHit) int {
		return cmp.Or(cmp.Compare(a.start, b.start), cmp.Compare(a.rule, b.rule))
	})
	return slices.Compact(hits)
}

// lineEndAt returns the offset just past the newline ending the line that
// contains offset i, or len(s).
func lineEndAt(s string, i int) int {
	if j := strings.IndexByte(s[i:], '\n'); j >= 0 {
		return i + j + 1
	}
	return len(s)
}

// asciiLower lowercases ASCII letters only, so offsets into the result are
// offsets into s.
func asciiLower(s string) string {
	i := strings.IndexFunc(s, func(c rune) bool { return 'A' <= c && c <= 'Z' })
	if i < 0 {
		return s
	}
	b := []byte(s)
	for j := i; j < len(b); j++ {
		if 'A' <= b[j] && b[j] <= 'Z' {
			b[j] += 'a' - 'A'
		}
	}
	return string(b)
}

// Bytes is String for byte slices.
func (r *Redactor) Bytes(b []byte) []byte {
	if len(b) == 0 {
		return b
	}
	return []byte(r.String(string(b)))
}

// apply masks every match of the rule in s.
func (ru *rule) apply(s string) string {
	matches := ru.re.FindAllStringSubmatchIndex(s, -1)
	if matches == nil {
		return s
	}
	var b strings.Builder
	last := 0
	for _, m := range matches {
		start, end := m[2*ru.group], m[2*ru.group+1]
		if start < 0 || start < last || !ru.shouldMask(s[start:end]) {
			continue
		}
		b.WriteString(s[last:start])
		b.WriteString(Mask)
		last = end
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

func (ru *rule) shouldMask(candidate string) bool {
	if candidate == "" || candidate == Mask {
		return false
	}
	return ru.keep == nil || ru.keep(candidate)
}

func containsAny(s string, needles []string) bool {
	for _, n := range needles {
		if strings.Contains(s, n) {
			return true
		}
	}
	return false
}

// compileAll compiles patterns in order; kind names their origin in errors.
func compileAll(cache *patternCache, kind string, patterns []string) ([]rule, error) {
	rules := make([]rule, 0, len(patterns))
	for i, p := range patterns {
		re, err := cache.compile(p)
		if err != nil {
			return nil, fmt.Errorf("redact: %s pattern %d: %w", kind, i, err)
		}
		rules = append(rules, rule{
			name:  fmt.Sprintf("%s_%d", kind, i),
			re:    re,
			group: max(re.SubexpIndex(SecretGroup), 0),
		})
	}
	return rules, nil
}

// mergeExact returns the sorted union of both sets of exact secret values.
func mergeExact(have, add []string) ([]string, error) {
	out := slices.Clone(have)
	for i, s := range add {
		if len(s) < MinExactSecretBytes {
			return nil, fmt.Errorf("redact: exact secret %d is shorter than %d bytes", i, MinExactSecretBytes)
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// exactNeedles lists each value and its JSON- and URL-escaped forms, longer
// needles first so that a secret containing another is masked whole.
func exactNeedles(values []string) []string {
	var needles []string
	for _, v := range values {
		needles = append(needles, encodings(v)...)
	}
	slices.SortFunc(needles, func(a, b string) int {
		if len(a) != len(b) {
			return len(b) - len(a)
		}
		return strings.Compare(a, b)
	})
	return slices.Compact(needles)
}

// maxContainsNeedles is how many needles hasExact checks one by one; past
// it the replacer's single pass is cheaper.
const maxContainsNeedles = 32

// hasExact reports whether an exact secret (in any of its encodings)
// occurs in text, without building the masked copy.
func (r *Redactor) hasExact(text string) bool {
	if r.replacer == nil {
		return false
	}
	if len(r.needles) > maxContainsNeedles {
		return r.replacer.Replace(text) != text
	}
	for _, n := range r.needles {
		if strings.Contains(text, n) {
			return true
		}
	}
	return false
}

// exactReplacer masks every needle (see exactNeedles).
func exactReplacer(needles []string) *strings.Replacer {
	if len(needles) == 0 {
		return nil
	}
	pairs := make([]string, 0, 2*len(needles))
	for _, n := range needles {
		pairs = append(pairs, n, Mask)
	}
	return strings.NewReplacer(pairs...)
}

// encodings lists v as it may appear in output: raw, inside a JSON string,
// and URL-encoded.
func encodings(v string) []string {
	out := []string{v}
	if j, err := json.Marshal(v); err == nil {
		out = append(out, string(j[1:len(j)-1]))
	}
	return append(out, url.QueryEscape(v), url.PathEscape(v))
}

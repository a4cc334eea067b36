package policy

// Obligation merge across the matching rules of the winning class. Every key
// takes the most restrictive combination, so adding a rule can only tighten
// what an allowed action may do:
//
//	sandbox_mode             strongest (none < local < landlock < container)
//	net_allowlist            intersection of the lists that are set
//	exec_allowlist           intersection of the argv-prefix languages that are set
//	exec_write_paths         intersection of the lists that are set
//	http_redirects           true only when every rule sets it true
//	http_redirect_hop_limit  smallest
//	output_max_bytes/lines   smallest
//	approval_scope_class     kept only when every rule sets it
//	redact                   union
//	exec_constraints         union of the exec_match patterns
//
// A rule that does not set a list or a cap does not widen it. Slices of a
// single rule are returned as they are; merging allocates only when the
// result differs from every input.

func (e *Engine) mergeClass(matched []int32, class decisionClass) Obligations {
	var out Obligations
	first := true
	for _, idx := range matched {
		c := &e.compiled[idx]
		if c.class != class {
			continue
		}
		if first {
			out, first = c.ob, false
			continue
		}
		e.mergeInto(&out, &c.ob)
	}
	return out
}

func (e *Engine) mergeInto(dst, src *Obligations) {
	if sandboxRank(src.SandboxMode) > sandboxRank(dst.SandboxMode) {
		dst.SandboxMode = src.SandboxMode
	}
	dst.NetAllowlist = intersectSorted(dst.NetAllowlist, src.NetAllowlist)
	dst.ExecAllowlist = intersectPrefixes(dst.ExecAllowlist, src.ExecAllowlist)
	dst.ExecWritePaths = intersectSorted(dst.ExecWritePaths, src.ExecWritePaths)
	dst.HTTPRedirects = e.bothTrue(dst.HTTPRedirects, src.HTTPRedirects)
	dst.HTTPRedirectHopLimit = minPtr(dst.HTTPRedirectHopLimit, src.HTTPRedirectHopLimit)
	dst.OutputMaxBytes = minPtr(dst.OutputMaxBytes, src.OutputMaxBytes)
	dst.OutputMaxLines = minPtr(dst.OutputMaxLines, src.OutputMaxLines)
	if dst.ApprovalScopeClass != src.ApprovalScopeClass {
		dst.ApprovalScopeClass = ""
	}
	dst.Redact = unionSorted(dst.Redact, src.Redact)
	dst.ExecConstraints = unionPatterns(dst.ExecConstraints, src.ExecConstraints)
}

// bothTrue is unanimity: unset counts as "not allowed", but the result stays
// unset when no rule spoke.
func (e *Engine) bothTrue(a, b *bool) *bool {
	switch {
	case a == nil && b == nil:
		return nil
	case a != nil && b != nil && *a && *b:
		return a
	}
	return &e.falseVal
}

func minPtr[T int | int64](a, b *T) *T {
	if a == nil || (b != nil && *b < *a) {
		return b
	}
	return a
}

// intersectSorted intersects two sorted sets; nil means "not set".
func intersectSorted(a, b []string) []string {
	switch {
	case b == nil:
		return a
	case a == nil:
		return b
	case subsetSorted(a, b):
		return a
	case subsetSorted(b, a):
		return b
	}
	out := []string{}
	for i, j := 0, 0; i < len(a) && j < len(b); {
		switch {
		case a[i] < b[j]:
			i++
		case a[i] > b[j]:
			j++
		default:
			out = append(out, a[i])
			i, j = i+1, j+1
		}
	}
	return out
}

func unionSorted(a, b []string) []string {
	switch {
	case subsetSorted(b, a):
		return a
	case subsetSorted(a, b):
		return b
	}
	out := make([]string, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j >= len(b) || (i < len(a) && a[i] < b[j]):
			out, i = append(out, a[i]), i+1
		case i >= len(a) || b[j] < a[i]:
			out, j = append(out, b[j]), j+1
		default:
			out, i, j = append(out, a[i]), i+1, j+1
		}
	}
	return out
}

// subsetSorted reports whether every element of sorted a is in sorted b.
func subsetSorted(a, b []string) bool {
	j := 0
	for _, s := range a {
		for j < len(b) && b[j] < s {
			j++
		}
		if j >= len(b) || b[j] != s {
			return false
		}
	}
	return true
}

// intersectPrefixes intersects argv-prefix allowlists as languages: argv
// passing both "git" and "git status" must start with "git status", so the
// longer of two nested prefixes survives and unrelated prefixes drop.
func intersectPrefixes(a, b [][]string) [][]string {
	switch {
	case b == nil:
		return a
	case a == nil:
		return b
	}
	out := [][]string{}
	for _, p := range a {
		for _, q := range b {
			if hasTokenPrefix(q, p) {
				out = append(out, q)
			} else if hasTokenPrefix(p, q) {
				out = append(out, p)
			}
		}
	}
	return sortedUniqueLists(out)
}

func hasTokenPrefix(s, prefix []string) bool {
	if len(prefix) > len(s) {
		return false
	}
	for i := range prefix {
		if s[i] != prefix[i] {
			return false
		}
	}
	return true
}

func unionPatterns(a, b *ExecMatch) *ExecMatch {
	switch {
	case b == nil:
		return a
	case a == nil:
		return b
	}
	all := append(append([][]string{}, a.ArgvPatterns...), b.ArgvPatterns...)
	return &ExecMatch{ArgvPatterns: sortedUniqueLists(all)}
}

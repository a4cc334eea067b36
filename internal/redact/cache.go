package redact

import (
	"regexp"
	"sync"
)

// maxCachedPatterns bounds the compiled-pattern cache. Patterns come from
// operator config and policy bundles, so the bound is never reached in
// practice; past it patterns are compiled per call rather than remembered.
const maxCachedPatterns = 1024

// patternCache remembers compiled per-rule patterns so a redact obligation is
// compiled once, not on every request. A Redactor and every Redactor derived
// from it with With share one cache.
type patternCache struct {
	mu sync.Mutex
	re map[string]*regexp.Regexp
}

func newPatternCache() *patternCache {
	return &patternCache{re: make(map[string]*regexp.Regexp)}
}

func (c *patternCache) compile(pattern string) (*regexp.Regexp, error) {
	c.mu.Lock()
	re, ok := c.re[pattern]
	c.mu.Unlock()
	if ok {
		return re, nil
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if len(c.re) < maxCachedPatterns {
		c.re[pattern] = re
	}
	c.mu.Unlock()
	return re, nil
}

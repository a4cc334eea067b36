package policy

// Glob is a compiled resource glob with the policy language's semantics
// (`/` separates segments, `**` spans segments, `*` and `?` stay inside
// one), for other packages that match normalized resources the same way
// rules do (rate limits, loop breakers).
type Glob struct{ g resourceGlob }

// CompileGlob compiles a resource glob.
func CompileGlob(pattern string) (*Glob, error) {
	g, err := compileGlob(pattern)
	if err != nil {
		return nil, err
	}
	return &Glob{g: g}, nil
}

// Match reports whether the normalized resource matches.
func (g *Glob) Match(resource string) bool { return g.g.match(resource) }

// String is the pattern the glob was compiled from.
func (g *Glob) String() string { return g.g.source }

package policy

import (
	"crypto"
	"fmt"
	"os"
)

// BundleSource is one bundle to load, in order.
type BundleSource struct {
	// Path names the bundle in errors and provenance; its extension picks
	// YAML (.yaml, .yml) or JSON.
	Path string
	// Role is optional: baseline, org, repo, env or local_override.
	Role string
	// Data is the raw bundle file.
	Data []byte
	// Signature is the optional signature of Data, as raw bytes or base64
	// text (surrounding white space is ignored).
	Signature []byte
}

// LoadOptions configure Load.
type LoadOptions struct {
	// Environment is the deployment environment; local_override bundles
	// load only in "dev" or "local".
	Environment string
	// VerifyKeys, when non-empty, requires every bundle to carry a signature
	// that verifies under one of these keys.
	VerifyKeys []crypto.PublicKey
	// AllowLocalOverride admits local_override bundles in any environment.
	AllowLocalOverride bool
}

// Bundle roles.
const (
	RoleBaseline      = "baseline"
	RoleOrg           = "org"
	RoleRepo          = "repo"
	RoleEnv           = "env"
	RoleLocalOverride = "local_override"
)

// MergeAlgorithmVersion names how several bundle hashes combine into one.
const MergeAlgorithmVersion = "nomos.policy.merge.v1"

type loadedBundle struct {
	src      BundleSource
	bundle   *Bundle
	hash     string
	verified bool
}

// LoadFiles reads and loads bundle files in order, without roles or
// signatures. Use Load to pass either.
func LoadFiles(paths []string, opts LoadOptions) (*Engine, error) {
	sources := make([]BundleSource, len(paths))
	for i, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, &bundleError{file: p, msg: "read: " + err.Error(), cause: err}
		}
		sources[i] = BundleSource{Path: p, Data: data}
	}
	return Load(sources, opts)
}

// Load parses, verifies and merges the bundles in order and compiles them.
// Any failure refuses the whole set: a partial policy is never returned.
func Load(sources []BundleSource, opts LoadOptions) (*Engine, error) {
	loaded, err := loadAll(sources, opts, true)
	if err != nil {
		return nil, err
	}
	if err := checkCrossBundleIDs(loaded); err != nil {
		return nil, err
	}
	return newEngine(loaded, opts)
}

func loadAll(sources []BundleSource, opts LoadOptions, uniqueIDs bool) ([]loadedBundle, error) {
	if len(sources) == 0 {
		return nil, &bundleError{file: "(none)", msg: "no policy bundles given"}
	}
	loaded := make([]loadedBundle, len(sources))
	for i, src := range sources {
		lb, err := loadOne(src, opts, uniqueIDs)
		if err != nil {
			return nil, err
		}
		loaded[i] = lb
	}
	return loaded, nil
}

func loadOne(src BundleSource, opts LoadOptions, uniqueIDs bool) (loadedBundle, error) {
	lb := loadedBundle{src: src}
	if err := checkRole(src, opts); err != nil {
		return lb, err
	}
	var err error
	if lb.verified, err = verifySource(src, opts.VerifyKeys); err != nil {
		return lb, err
	}
	parse := parseBundle
	if uniqueIDs {
		parse = ParseBundle
	}
	lb.bundle, lb.hash, err = parse(src.Path, src.Data)
	return lb, err
}

func checkRole(src BundleSource, opts LoadOptions) error {
	switch src.Role {
	case "", RoleBaseline, RoleOrg, RoleRepo, RoleEnv:
		return nil
	case RoleLocalOverride:
		if opts.AllowLocalOverride || opts.Environment == "dev" || opts.Environment == "local" {
			return nil
		}
		return &bundleError{file: src.Path, msg: fmt.Sprintf("role local_override is allowed only in the dev or local environment, not %q", opts.Environment)}
	}
	return &bundleError{file: src.Path, msg: fmt.Sprintf("unknown role %q (want baseline, org, repo, env or local_override)", src.Role)}
}

// checkCrossBundleIDs names both files, so the operator knows which two
// layers collide.
func checkCrossBundleIDs(loaded []loadedBundle) error {
	owner := make(map[string]string)
	for _, lb := range loaded {
		for _, r := range lb.bundle.Rules {
			if first, dup := owner[r.ID]; dup {
				return &bundleError{file: lb.src.Path, msg: describeDup(r.ID, first, lb.src.Path)}
			}
			owner[r.ID] = lb.src.Path
		}
	}
	return nil
}

func newEngine(loaded []loadedBundle, opts LoadOptions) (*Engine, error) {
	e := &Engine{environment: opts.Environment, noIDs: []string{}}
	for _, lb := range loaded {
		src := lb.src.Path + "#" + lb.hash
		e.sources = append(e.sources, src)
		e.inputs = append(e.inputs, BundleInput{Path: lb.src.Path, Hash: lb.hash, Role: lb.src.Role, SignatureVerified: lb.verified})
		for _, r := range lb.bundle.Rules {
			r.Source = src
			e.rules = append(e.rules, r)
		}
	}
	var err error
	if e.hash, err = mergedHash(loaded); err != nil {
		return nil, &bundleError{file: loaded[0].src.Path, msg: "hash: " + err.Error(), cause: err}
	}
	if err := e.compileRules(); err != nil {
		return nil, &bundleError{file: loaded[0].src.Path, msg: "compile: " + err.Error(), cause: err}
	}
	return e, nil
}

// mergedHash is the bundle's own hash for one bundle; for several it hashes
// the ordered list of bundle hashes, so reordering layers changes the hash.
func mergedHash(loaded []loadedBundle) (string, error) {
	if len(loaded) == 1 {
		return loaded[0].hash, nil
	}
	hashes := make([]string, len(loaded))
	for i, lb := range loaded {
		hashes[i] = lb.hash
	}
	return hashCanonical(struct {
		MergeAlgorithmVersion string   `json:"merge_algorithm_version"`
		BundleHashes          []string `json:"bundle_hashes"`
	}{MergeAlgorithmVersion, hashes})
}

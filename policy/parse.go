package policy

import (
	"path/filepath"
	"strings"
)

// ParseBundle strictly decodes one bundle: YAML when path ends in .yaml or
// .yml, JSON otherwise. It returns the typed bundle and its hash, the sha256
// hex of the bundle's canonical JSON. Every error wraps ErrBundle and names
// the file and the JSON path of the offender.
func ParseBundle(path string, data []byte) (*Bundle, string, error) {
	b, hash, err := parseBundle(path, data)
	if err != nil {
		return nil, "", err
	}
	if err := checkUniqueIDs(b); err != nil {
		return nil, "", inFile(path, err)
	}
	return b, hash, nil
}

// parseBundle is ParseBundle without the duplicate-id check, which lint
// reports as a finding instead.
func parseBundle(path string, data []byte) (*Bundle, string, error) {
	b, err := decodeFile(path, data)
	if err == nil {
		err = validateBundle(b)
	}
	if err != nil {
		return nil, "", inFile(path, err)
	}
	hash, err := hashCanonical(b)
	if err != nil {
		return nil, "", inFile(path, err)
	}
	return b, hash, nil
}

func decodeFile(path string, data []byte) (*Bundle, error) {
	if len(data) > maxBundleBytes {
		return nil, errAt("$", "bundle larger than %d bytes", maxBundleBytes)
	}
	var tree *value
	var err error
	if isYAMLPath(path) {
		tree, err = parseYAMLTree(data)
	} else {
		tree, err = parseJSONTree(data)
	}
	if err != nil {
		return nil, err
	}
	return decodeBundle(tree)
}

func isYAMLPath(path string) bool {
	ext := strings.ToLower(filepath.Ext(path))
	return ext == ".yaml" || ext == ".yml"
}

package action

import (
	"errors"
	"strings"
)

// MCPFileShorthand turns the path a file tool receives ("README.md",
// "./docs/a.md", "src\main.go") into a file://workspace resource. The path is
// taken literally, as the tool will open it: "%", "?" and "#" are names, not
// escapes. Absolute host paths ("/x", "\x", "C:\x", "C:/x") and URIs other
// than file:// are refused; a file:// URI is normalized as is. Errors wrap
// ErrNormalization.
func MCPFileShorthand(p string) (string, error) {
	out, err := shorthand(p)
	if err != nil {
		return "", normalizationError("mcp file shorthand", err)
	}
	return out, nil
}

func shorthand(p string) (string, error) {
	p = strings.ReplaceAll(p, `\`, "/")
	if i := strings.Index(p, "://"); i >= 0 {
		if asciiLower(p[:i]) != "file" {
			return "", errors.New("only file:// uris are allowed")
		}
		return normalize(TypeFSRead, p)
	}
	if strings.HasPrefix(p, "/") || hasDrivePrefix(p) {
		return "", errors.New("absolute host paths are not allowed")
	}
	for strings.HasPrefix(p, "./") {
		p = p[2:]
	}
	if strings.Trim(p, "/") == "" {
		return "", errors.New("file path is required")
	}
	return normalize(TypeFSRead, "file://workspace/"+escapeLiteralPath(p))
}

// hasDrivePrefix reports a Windows drive ("C:", "C:x", "C:/x").
func hasDrivePrefix(p string) bool {
	return len(p) >= 2 && p[1] == ':' && (isLower(p[0]) || ('A' <= p[0] && p[0] <= 'Z'))
}

// escapeLiteralPath escapes a literal path so that normalization decodes it
// back to the same names.
func escapeLiteralPath(p string) string {
	return strings.NewReplacer("%", "%25", "?", "%3F", "#", "%23").Replace(p)
}

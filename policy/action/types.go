package action

// Built-in action types: Nomos executes these itself.
const (
	TypeFSRead          = "fs.read"
	TypeFSWrite         = "fs.write"
	TypeRepoApplyPatch  = "repo.apply_patch"
	TypeProcessExec     = "process.exec"
	TypeNetHTTPRequest  = "net.http_request"
	TypeSecretsCheckout = "secrets.checkout"
)

// MCP action types: the MCP gateway maps each governed request to one of
// these, always on an mcp:// resource.
const (
	TypeMCPCall         = "mcp.call"
	TypeMCPResourceRead = "mcp.resource_read"
	TypeMCPPromptGet    = "mcp.prompt_get"
	TypeMCPCompletion   = "mcp.completion"
	TypeMCPSample       = "mcp.sample"
	TypeMCPElicit       = "mcp.elicit"
)

// IsBuiltin reports whether actionType is executed by Nomos itself. Built-in
// types only accept the file, url, repo and secret resource schemes.
func IsBuiltin(actionType string) bool {
	switch actionType {
	case TypeFSRead, TypeFSWrite, TypeRepoApplyPatch, TypeProcessExec, TypeNetHTTPRequest, TypeSecretsCheckout:
		return true
	}
	return false
}

// IsMCP reports whether actionType is one of the MCP gateway types, which
// require an mcp:// resource.
func IsMCP(actionType string) bool {
	switch actionType {
	case TypeMCPCall, TypeMCPResourceRead, TypeMCPPromptGet, TypeMCPCompletion, TypeMCPSample, TypeMCPElicit:
		return true
	}
	return false
}

// isCustom reports whether actionType is a well-formed type that is neither
// built-in nor MCP. Only custom types may use resource schemes of their own.
func isCustom(actionType string) bool {
	return validActionType(actionType) && !IsBuiltin(actionType) && !IsMCP(actionType)
}

// IDPattern is the rule for action, trace and approval ids, quoted in errors.
const IDPattern = "^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"

// ValidID checks an action, trace or approval id against
// ^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$ (IDPattern) by hand: no regexp on the
// request path.
func ValidID(s string) bool {
	if len(s) == 0 || len(s) > 128 || !isAlnum(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !isAlnum(c) && c != '.' && c != '_' && c != ':' && c != '-' {
			return false
		}
	}
	return true
}

// validActionType checks ^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$ by hand.
func validActionType(s string) bool {
	segments, start := 0, true
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case start && 'a' <= c && c <= 'z':
			start = false
		case !start && c == '.':
			segments++
			start = true
		case !start && (isLower(c) || isDigit(c) || c == '_'):
		default:
			return false
		}
	}
	return segments >= 1 && !start
}

func isAlnum(c byte) bool { return isLower(c) || isDigit(c) || ('A' <= c && c <= 'Z') }
func isLower(c byte) bool { return 'a' <= c && c <= 'z' }
func isDigit(c byte) bool { return '0' <= c && c <= '9' }

package mcpbuiltins

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"path"
	"slices"
	"strings"

	mcpgo "github.com/mark3labs/mcp-go/mcp"

	"github.com/caddy-nomos/nomos/policy/action"
)

// Built-in tool names.
const (
	ToolFSRead       = "nomos_fs_read"
	ToolFSWrite      = "nomos_fs_write"
	ToolApplyPatch   = "nomos_apply_patch"
	ToolExec         = "nomos_exec"
	ToolHTTPRequest  = "nomos_http_request"
	ToolCapabilities = "nomos_capabilities"
	approvalArgument = "approval_id"
	workspaceRepo    = "repo://local/workspace"
)

// builtin is one governed built-in tool: its definition and how its
// arguments become an action.
type builtin struct {
	tool       mcpgo.Tool
	actionType string
	// toAction maps the strictly decoded arguments (approval_id removed)
	// to the action's resource and params.
	toAction func(args map[string]json.RawMessage) (string, any, error)
}

// builtins are the built-in tools, in the order tools/list shows them.
func builtins() []builtin {
	return []builtin{
		{tool: newTool(ToolFSRead, "Read a file of the workspace through Nomos. path is relative to the workspace root (README.md, ./src/main.go).",
			schema(props{"path": pathProp}, "path"), true, false), actionType: action.TypeFSRead, toAction: fsRead},
		{tool: newTool(ToolFSWrite, "Create or replace a whole file of the workspace through Nomos.",
			schema(props{"path": pathProp, "content": `{"type":"string","description":"The complete new content of the file."}`}, "path", "content"), false, true),
			actionType: action.TypeFSWrite, toAction: fsWrite},
		{tool: newTool(ToolApplyPatch, "Apply a unified diff to the workspace through Nomos (all or nothing), or replace one file with {path, content}.",
			schema(props{"patch": `{"type":"string","description":"A unified diff (git diff format) relative to the workspace root."}`,
				"path": pathProp, "content": `{"type":"string","description":"The complete new content of path (instead of patch)."}`}), false, true),
			actionType: action.TypeRepoApplyPatch, toAction: applyPatch},
		{tool: newTool(ToolExec, "Run a command (argv, no shell) in the workspace through Nomos. Policy decides which argv patterns are allowed.",
			schema(props{"argv": `{"type":"array","items":{"type":"string"},"minItems":1,"description":"The program and its arguments; no shell parses them."}`,
				"cwd": `{"type":"string","description":"Working directory relative to the workspace root. Default: the root."}`}, "argv"), false, true),
			actionType: action.TypeProcessExec, toAction: processExec},
		{tool: newTool(ToolHTTPRequest, "Send an HTTPS request through Nomos to a host the policy allows. The URL has no query string.",
			schema(props{"url": `{"type":"string","description":"https://host/path"}`,
				"method":  `{"type":"string","enum":["GET","HEAD","POST","PUT","PATCH","DELETE","OPTIONS"],"description":"Default: GET."}`,
				"headers": `{"type":"object","additionalProperties":{"type":"string"}}`,
				"body":    `{"type":"string"}`}, "url"), false, false),
			actionType: action.TypeNetHTTPRequest, toAction: httpRequest},
		{tool: newTool(ToolCapabilities, "Describe what Nomos allows here: identity, environment, assurance level, policy hash, usable tools and executor limits.",
			json.RawMessage(`{"type":"object","properties":{},"additionalProperties":false}`), true, false)},
	}
}

type props map[string]string

const pathProp = `{"type":"string","description":"A path relative to the workspace root, such as README.md or ./src/main.go."}`

const approvalProp = `{"type":"string","description":"The approval_id of an approved REQUIRE_APPROVAL decision, when retrying the same call."}`

// schema builds a closed object schema; every tool but
// nomos_capabilities also takes approval_id.
func schema(p props, required ...string) json.RawMessage {
	p[approvalArgument] = approvalProp
	obj := map[string]any{"type": "object", "additionalProperties": false}
	properties := map[string]json.RawMessage{}
	for k, v := range p {
		properties[k] = json.RawMessage(v)
	}
	obj["properties"] = properties
	if len(required) > 0 {
		obj["required"] = required
	}
	b, _ := json.Marshal(obj)
	return b
}

func newTool(name, description string, in json.RawMessage, readOnly, destructive bool) mcpgo.Tool {
	t := mcpgo.Tool{Name: name, Description: description, RawInputSchema: in}
	t.Annotations.ReadOnlyHint = &readOnly
	if !readOnly {
		t.Annotations.DestructiveHint = &destructive
	}
	return t
}

// builtin finds a built-in tool by name.
func (s *Set) builtin(name string) *builtin {
	for i := range s.tools {
		if s.tools[i].tool.Name == name {
			return &s.tools[i]
		}
	}
	return nil
}

// usable reports whether the executor runs b's action type (otherwise
// every call is denied as unsupported_action).
func (s *Set) usable(b *builtin) bool {
	return b.actionType == "" || slices.Contains(s.cfg.ActionTypes, b.actionType)
}

// Tools are the listed built-in tools: the usable ones.
func (s *Set) Tools() []mcpgo.Tool {
	var out []mcpgo.Tool
	for i := range s.tools {
		if s.usable(&s.tools[i]) {
			out = append(out, s.tools[i].tool)
		}
	}
	return out
}

// Has reports whether name is a built-in tool, listed or not: a call to
// an unlisted one is still governed (and denied as unsupported_action).
func (s *Set) Has(name string) bool { return s.builtin(name) != nil }

// decodeArgs strictly decodes tool arguments: an object without duplicate
// or case-variant keys (action.CheckStrictJSON), only the allowed keys, and
// approval_id split off.
func decodeArgs(raw json.RawMessage, allowed ...string) (map[string]json.RawMessage, string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		raw = json.RawMessage("{}")
	}
	if err := action.CheckStrictJSON(raw); err != nil {
		return nil, "", fmt.Errorf("arguments: %w", err)
	}
	var args map[string]json.RawMessage
	if err := json.Unmarshal(raw, &args); err != nil || args == nil {
		return nil, "", errors.New("arguments must be a JSON object")
	}
	var approvalID string
	if v, ok := args[approvalArgument]; ok {
		if json.Unmarshal(v, &approvalID) != nil {
			return nil, "", errors.New("approval_id must be a string")
		}
		delete(args, approvalArgument)
	}
	for k := range args {
		if !slices.Contains(allowed, k) {
			return nil, "", fmt.Errorf("unknown argument %q (allowed: %s)", k, strings.Join(allowed, ", "))
		}
	}
	return args, approvalID, nil
}

// str reads a string argument; a required one must be present and
// non-empty.
func str(args map[string]json.RawMessage, key string, required bool) (string, error) {
	raw, ok := args[key]
	if !ok {
		if required {
			return "", fmt.Errorf("argument %q is required", key)
		}
		return "", nil
	}
	var v string
	if json.Unmarshal(raw, &v) != nil {
		return "", fmt.Errorf("argument %q must be a string", key)
	}
	if required && v == "" {
		return "", fmt.Errorf("argument %q must not be empty", key)
	}
	return v, nil
}

func fileResource(p string) (string, error) {
	res, err := action.MCPFileShorthand(p)
	if err != nil {
		return "", fmt.Errorf("path %q: %w", p, err)
	}
	return res, nil
}

func fsRead(args map[string]json.RawMessage) (string, any, error) {
	p, err := str(args, "path", true)
	if err != nil {
		return "", nil, err
	}
	res, err := fileResource(p)
	return res, map[string]any{}, err
}

func fsWrite(args map[string]json.RawMessage) (string, any, error) {
	p, err := str(args, "path", true)
	if err != nil {
		return "", nil, err
	}
	content, err := str(args, "content", true)
	if err != nil {
		return "", nil, err
	}
	res, err := fileResource(p)
	return res, map[string]any{"content": content}, err
}

// applyPatch takes either {patch} or {path, content}; every touched path
// is decided as its own write by the pipeline.
func applyPatch(args map[string]json.RawMessage) (string, any, error) {
	patch, err := str(args, "patch", false)
	if err != nil {
		return "", nil, err
	}
	_, hasPath := args["path"]
	_, hasContent := args["content"]
	switch {
	case patch != "" && !hasPath && !hasContent:
		return workspaceRepo, map[string]any{"patch": patch}, nil
	case patch == "" && hasPath && hasContent && len(args) == 2:
		p, err := str(args, "path", true)
		if err != nil {
			return "", nil, err
		}
		content, err := str(args, "content", true)
		return workspaceRepo, map[string]any{"path": p, "content": content}, err
	}
	return "", nil, errors.New("pass either patch, or path and content")
}

// processExec names the command as a file of its working directory:
// file://workspace/<cwd>/<program>, so rules over file://workspace/** and
// over a directory's subtree both apply.
func processExec(args map[string]json.RawMessage) (string, any, error) {
	var argv []string
	if raw, ok := args["argv"]; !ok || json.Unmarshal(raw, &argv) != nil || len(argv) == 0 || argv[0] == "" {
		return "", nil, errors.New(`argument "argv" must be a non-empty array of strings`)
	}
	cwd, err := str(args, "cwd", false)
	if err != nil {
		return "", nil, err
	}
	params := map[string]any{"argv": argv}
	if cwd != "" && cwd != "." {
		params["cwd"] = cwd
	}
	// cwd is not cleaned: a ".." in it must fail normalization, not vanish.
	where := path.Base(strings.ReplaceAll(argv[0], `\`, "/"))
	if cwd != "" && cwd != "." {
		where = strings.TrimSuffix(cwd, "/") + "/" + where
	}
	res, err := fileResource(where)
	return res, params, err
}

// httpRequest maps https://host/path to url://host/path. Plain http and
// query strings are refused: the executor always speaks HTTPS and policy
// never sees a query, so either would not be what the model asked for.
func httpRequest(args map[string]json.RawMessage) (string, any, error) {
	raw, err := str(args, "url", true)
	if err != nil {
		return "", nil, err
	}
	u, err := url.Parse(raw)
	if err != nil || !strings.EqualFold(u.Scheme, "https") || u.Host == "" {
		return "", nil, errors.New(`argument "url" must be an absolute https:// URL`)
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.User != nil {
		return "", nil, errors.New(`argument "url" must not have a query string, fragment or user info`)
	}
	params := map[string]any{}
	if m, err := str(args, "method", false); err != nil {
		return "", nil, err
	} else if m != "" {
		params["method"] = strings.ToUpper(m)
	}
	if h, ok := args["headers"]; ok {
		var headers map[string]string
		if json.Unmarshal(h, &headers) != nil {
			return "", nil, errors.New(`argument "headers" must be an object of strings`)
		}
		params["headers"] = headers
	}
	if b, err := str(args, "body", false); err != nil {
		return "", nil, err
	} else if _, ok := args["body"]; ok {
		params["body"] = b
	}
	return "url://" + u.Host + u.EscapedPath(), params, nil
}

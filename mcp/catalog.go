package mcp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/caddy-nomos/nomos/internal/pins"
	"github.com/caddy-nomos/nomos/policy/action"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// maxListPages bounds the pages read from one upstream list call.
const maxListPages = 50

// toolDef is one upstream tool as the upstream advertised it.
type toolDef struct {
	name   string
	raw    map[string]json.RawMessage
	schema json.RawMessage
	// pinDef and fingerprint are the pinned parts of the definition and
	// their fingerprint; fingerprint is empty when it cannot be pinned.
	pinDef      pins.Definition
	fingerprint string

	once     sync.Once
	compiled *jsonschema.Schema
	err      error
}

// catalog is the tool list of one upstream session.
type catalog struct {
	mu    sync.Mutex
	valid bool
	tools []*toolDef
}

func (c *catalog) invalidate() {
	c.mu.Lock()
	c.valid = false
	c.mu.Unlock()
}

func (c *catalog) get() ([]*toolDef, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tools, c.valid
}

func (c *catalog) set(tools []*toolDef) {
	c.mu.Lock()
	c.tools, c.valid = tools, true
	c.mu.Unlock()
}

func (c *catalog) names() []string {
	tools, _ := c.get()
	out := make([]string, len(tools))
	for i, t := range tools {
		out[i] = t.name
	}
	return out
}

// tools returns the catalog of c, enumerating it when stale.
func (u *Upstream) tools(ctx context.Context, c *conn) ([]*toolDef, error) {
	if tools, ok := c.catalog.get(); ok {
		return tools, nil
	}
	items, err := u.listAll(ctx, c, "tools/list", "tools")
	if err != nil {
		return nil, err
	}
	tools := make([]*toolDef, 0, len(items))
	for _, raw := range items {
		def, err := parseTool(raw)
		if errors.Is(err, errUnprintableName) {
			u.log.Warn("mcp upstream tool left out: its name has control or invisible characters", "error", err)
			continue
		}
		if err != nil {
			return nil, newUpstreamError(ErrUpstreamProtocol, err, "upstream %q: tools/list", u.cfg.Name)
		}
		tools = append(tools, def)
	}
	if err := u.observePins(ctx, tools); err != nil {
		return nil, newUpstreamError(ErrUpstreamUnavailable, err, "upstream %q: tool pins", u.cfg.Name)
	}
	c.catalog.set(tools)
	return tools, nil
}

// errUnprintableName: a tool whose name a reviewer could not read as it
// is (see PrintableName); it is left out of the catalog.
var errUnprintableName = errors.New("tool name has control or invisible characters")

func parseTool(raw json.RawMessage) (*toolDef, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	var name string
	if json.Unmarshal(m["name"], &name) != nil || name == "" {
		return nil, errors.New("tool without a name")
	}
	if !PrintableName(name) {
		return nil, fmt.Errorf("%w: %q", errUnprintableName, name)
	}
	d := &toolDef{name: name, raw: m, schema: m["inputSchema"]}
	if def, ok := pinDefinition(name, m); ok {
		d.pinDef = def
		d.fingerprint, _ = pins.Fingerprint(def) // "" when not canonicalizable: never accepted
	}
	return d, nil
}

// listAll reads every page of a list method and returns the items under
// key. A JSON-RPC error is returned as an *rpcError.
func (u *Upstream) listAll(ctx context.Context, c *conn, method, key string) ([]json.RawMessage, error) {
	var out []json.RawMessage
	cursor := json.RawMessage(nil)
	for range maxListPages {
		params := json.RawMessage("{}")
		if cursor != nil {
			params, _ = json.Marshal(map[string]json.RawMessage{"cursor": cursor})
		}
		res, rerr, err := u.send(ctx, c, c.newID(), method, params, u.cfg.Timeouts.List)
		if err != nil {
			return nil, err
		}
		if rerr != nil {
			return nil, rerr
		}
		items, next, err := pageItems(res, key)
		if err != nil {
			return nil, newUpstreamError(ErrUpstreamProtocol, err, "upstream %q: %s", u.cfg.Name, method)
		}
		out = append(out, items...)
		if next == nil {
			return out, nil
		}
		cursor = next
	}
	return out, nil
}

func pageItems(res json.RawMessage, key string) ([]json.RawMessage, json.RawMessage, error) {
	var page map[string]json.RawMessage
	if err := json.Unmarshal(res, &page); err != nil {
		return nil, nil, err
	}
	var items []json.RawMessage
	if raw, ok := page[key]; ok && json.Unmarshal(raw, &items) != nil {
		return nil, nil, fmt.Errorf("%s is not an array", key)
	}
	next := page["nextCursor"]
	if len(next) == 0 || bytes.Equal(next, []byte("null")) || bytes.Equal(next, []byte(`""`)) {
		next = nil
	}
	return items, next, nil
}

// maxSchemaBytes bounds a tool inputSchema the gateway compiles.
const maxSchemaBytes = 256 << 10

// validator compiles the tool's inputSchema once (draft 2020-12 by default,
// no remote or file references).
func (d *toolDef) validator() (*jsonschema.Schema, error) {
	d.once.Do(func() { d.compiled, d.err = compileSchema(d.schema) })
	return d.compiled, d.err
}

func hasSchema(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) > 0 && !bytes.Equal(t, []byte("null")) && !bytes.Equal(t, []byte("{}"))
}

func compileSchema(raw json.RawMessage) (*jsonschema.Schema, error) {
	if len(raw) > maxSchemaBytes {
		return nil, errors.New("inputSchema too large")
	}
	if err := action.CheckStrictJSON(raw); err != nil {
		return nil, fmt.Errorf("inputSchema: %w", err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("inputSchema: %w", err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.UseLoader(jsonschema.SchemeURLLoader{}) // no file or network refs
	if err := c.AddResource("nomos:///tool-input.json", doc); err != nil {
		return nil, fmt.Errorf("inputSchema: %w", err)
	}
	return c.Compile("nomos:///tool-input.json")
}

// validateArguments checks args against the tool's schema. The error names
// the failing locations only, never argument values.
func validateArguments(d *toolDef, args json.RawMessage, allowMissing bool) error {
	if !hasSchema(d.schema) {
		if allowMissing {
			return nil
		}
		return errors.New("the tool has no inputSchema and its upstream does not allow that")
	}
	sch, err := d.validator()
	if err != nil {
		return fmt.Errorf("the tool's inputSchema does not compile: %w", err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(args))
	if err != nil {
		return errors.New("arguments are not valid JSON")
	}
	if err := sch.Validate(inst); err != nil {
		return fmt.Errorf("arguments do not match the tool's inputSchema at %s", failingLocations(err))
	}
	return nil
}

func failingLocations(err error) string {
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return "/"
	}
	locs := map[string]bool{}
	collectLeaves(ve, locs)
	out := make([]string, 0, len(locs))
	for loc := range locs {
		out = append(out, loc)
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

func collectLeaves(ve *jsonschema.ValidationError, into map[string]bool) {
	if len(ve.Causes) == 0 {
		loc := "/"
		for _, p := range ve.InstanceLocation {
			loc += p + "/"
		}
		loc = loc[:max(1, len(loc)-1)]
		if ve.ErrorKind != nil {
			if kp := ve.ErrorKind.KeywordPath(); len(kp) > 0 {
				loc += " (" + kp[len(kp)-1] + ")"
			}
		}
		into[loc] = true
		return
	}
	for _, c := range ve.Causes {
		collectLeaves(c, into)
	}
}

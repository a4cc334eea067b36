// Command opsmcp is a minimal stdio MCP server for the operations
// end-to-end tests. Its tools: lookup and update answer at once; hold
// creates gate/<name>.held and answers only once gate/<name>.release
// exists, so a test can keep a call in flight for as long as it needs.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

type request struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id,omitempty"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params,omitempty"`
}

var (
	outMu sync.Mutex
	out   = bufio.NewWriter(os.Stdout)
)

func reply(id json.RawMessage, result any) {
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "result": result})
	outMu.Lock()
	defer outMu.Unlock()
	out.Write(append(b, '\n'))
	out.Flush()
}

func text(s string) map[string]any {
	return map[string]any{"content": []map[string]string{{"type": "text", "text": s}}}
}

func schema(prop string) map[string]any {
	return map[string]any{"type": "object", "properties": map[string]any{prop: map[string]string{"type": "string"}}, "required": []string{prop}}
}

var tools = []map[string]any{
	{"name": "lookup", "description": "Looks an order up.", "inputSchema": schema("id")},
	{"name": "update", "description": "Updates an order.", "inputSchema": schema("id")},
	{"name": "hold", "description": "Answers once the test releases it.", "inputSchema": schema("name")},
}

func call(id json.RawMessage, params json.RawMessage) {
	var p struct {
		Name      string            `json:"name"`
		Arguments map[string]string `json:"arguments"`
	}
	_ = json.Unmarshal(params, &p)
	switch p.Name {
	case "lookup":
		reply(id, text("looked up "+p.Arguments["id"]))
	case "update":
		reply(id, text("updated "+p.Arguments["id"]))
	case "hold":
		name := filepath.Base(p.Arguments["name"])
		_ = os.MkdirAll("gate", 0o755)
		_ = os.WriteFile(filepath.Join("gate", name+".held"), nil, 0o644)
		for {
			if _, err := os.Stat(filepath.Join("gate", name+".release")); err == nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		reply(id, text("released "+name))
	default:
		reply(id, map[string]any{"content": []map[string]string{{"type": "text", "text": "unknown tool"}}, "isError": true})
	}
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	for in.Scan() {
		var r request
		if json.Unmarshal(in.Bytes(), &r) != nil || len(r.ID) == 0 {
			continue
		}
		switch r.Method {
		case "initialize":
			reply(r.ID, map[string]any{"protocolVersion": "2025-06-18", "capabilities": map[string]any{"tools": map[string]any{}},
				"serverInfo": map[string]string{"name": "opsmcp", "version": "1"}})
		case "tools/list":
			reply(r.ID, map[string]any{"tools": tools})
		case "tools/call":
			go call(r.ID, r.Params)
		default:
			reply(r.ID, map[string]any{})
		}
	}
	fmt.Fprintln(os.Stderr, "opsmcp: stdin closed")
}

//go:build nomosdeps

// Package deps pins the project's dependencies in go.mod while the packages
// that use them are being written. It is never built (see the build tag).
package deps

import (
	_ "github.com/go-jose/go-jose/v4"
	_ "github.com/hashicorp/golang-lru/v2"
	_ "github.com/mark3labs/mcp-go/client"
	_ "github.com/mark3labs/mcp-go/server"
	_ "github.com/modelcontextprotocol/go-sdk/mcp"
	_ "github.com/santhosh-tekuri/jsonschema/v6"
	_ "github.com/sony/gobreaker/v2"
	_ "golang.org/x/time/rate"
	_ "gopkg.in/yaml.v3"
	_ "modernc.org/sqlite"
)

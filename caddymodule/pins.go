package caddymodule

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/caddy-nomos/nomos/audit"
	"github.com/caddy-nomos/nomos/internal/pins"
	"github.com/caddy-nomos/nomos/internal/service"
	"github.com/caddy-nomos/nomos/mcp"
	"github.com/caddy-nomos/nomos/policy/action"
)

// PinsConfig says where the reviewed tool-definition pins of the upstream
// MCP servers are kept (docs/mcp-gateway.md#tool-pinning). Each upstream
// chooses what a changed definition does with its own pin option.
type PinsConfig struct {
	// Path of the sqlite pin store, shared with `nomos mcp pins`. Not
	// allowed in stateless mode, where pins are kept in memory and reset
	// when the process restarts. Default: <data dir>/nomos/pins.db.
	Path string `json:"path,omitempty"`
}

// pinStorePath is the sqlite pin store's path, "" in stateless mode.
func (a *App) pinStorePath() (string, error) {
	if a.Runtime.Stateless {
		if a.Pins != nil && a.Pins.Path != "" {
			return "", fmt.Errorf("nomos: runtime: a pins path is not allowed in stateless mode (pins are kept in memory)")
		}
		return "", nil
	}
	if a.Pins != nil && a.Pins.Path != "" {
		return a.Pins.Path, nil
	}
	return dataPath("pins.db"), nil
}

// pinStoreChoice is the one place the pin store is chosen: the shared
// Redis when state { redis } is configured, else a sqlite file, or memory
// in stateless mode.
func (a *App) pinStoreChoice() (key string, open func() (pins.Store, error), err error) {
	if a.shared != nil { // replicas share one review: a pin accepted on one holds on all
		if a.Pins != nil && a.Pins.Path != "" {
			return "", nil, fmt.Errorf("nomos: pins: a path is not used with state { redis } (pins are kept in the shared Redis)")
		}
		return configKey("pins", "redis", a.stateKey), func() (pins.Store, error) { return pins.OpenRedis(a.shared), nil }, nil
	}
	path, err := a.pinStorePath()
	if err != nil {
		return "", nil, err
	}
	if path == "" {
		return configKey("pins", "memory"), func() (pins.Store, error) { return pins.NewMemory(), nil }, nil
	}
	return configKey("pins", "sqlite", path), func() (pins.Store, error) {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		return pins.OpenSQLite(path)
	}, nil
}

// provisionPins opens the pin store when the app has upstreams (or names
// a pins path), pooled so that a reload keeps one store per file.
func (a *App) provisionPins() error {
	if len(a.Upstreams) == 0 && a.Pins == nil {
		return nil
	}
	return a.openPins()
}

func (a *App) openPins() error {
	key, open, err := a.pinStoreChoice()
	if err != nil {
		return err
	}
	a.track(key)
	st, err := loadPooled(key, func() (pins.Store, func() error, error) {
		st, err := open()
		if err != nil {
			return nil, nil, err
		}
		return st, st.Close, nil
	})
	if err != nil {
		return fmt.Errorf("nomos: pins: %w", err)
	}
	a.pins = st
	a.pinBinding = &mcp.Pins{Store: st, Record: a.recordPinChange}
	return nil
}

// bindPins gives u this config's pin store until Cleanup.
func (a *App) bindPins(u *mcp.Upstream) error {
	if a.pinBinding == nil {
		return nil
	}
	release, err := u.BindPins(context.Background(), a.pinBinding)
	if err != nil {
		return fmt.Errorf("tool pins: %w", err)
	}
	a.pinReleases = append(a.pinReleases, release)
	return nil
}

// recordPinChange audits one change an upstream listing showed.
func (a *App) recordPinChange(ctx context.Context, c pins.Change) error {
	ev := pinEvent(c.Upstream, c.Tool, c.Kind, "", a.Environment, map[string]any{
		"status": string(c.Status), "old_fingerprint": c.OldFingerprint, "new_fingerprint": c.NewFingerprint,
		"changed_fields": nonNil(c.ChangedFields),
	})
	return a.recorder.Record(ctx, ev)
}

// Pin decisions, as audited (kind) beside pins.KindFirstUse, KindNewTool
// and KindChanged.
const (
	pinKindAccepted = "accepted"
	pinKindRejected = "rejected"
	// pinKindNotApplied follows an accepted or rejected event whose
	// decision the store then refused (the tool changed in between).
	pinKindNotApplied = "not_applied"
)

// pinEvent is the mcp.tool_pin audit event: what happened to the pin of
// one upstream tool (kind), who decided (principal, for an accept or a
// reject), and the fingerprints as evidence.
func pinEvent(upstream, tool, kind, principal, env string, meta map[string]any) *audit.Event {
	m := map[string]any{"upstream_server": upstream, "upstream_tool": tool, "kind": kind}
	for k, v := range meta {
		if s, ok := v.(string); !ok || s != "" {
			m[k] = v
		}
	}
	return &audit.Event{
		EventType:          audit.EventMCPToolPin,
		TraceID:            action.NewActionID(),
		Principal:          principal,
		Environment:        env,
		ActionType:         action.TypeMCPCall,
		ResourceNormalized: action.MCPResource(upstream, tool),
		Reason:             kind,
		EngineVersion:      service.EngineVersion,
		ExecutorMetadata:   m,
	}
}

func nonNil(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}

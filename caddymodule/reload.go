package caddymodule

import (
	"context"
	"fmt"
	"sync"

	"go.uber.org/zap"

	"github.com/caddy-nomos/nomos/audit"
	"github.com/caddy-nomos/nomos/internal/service"
)

// reloadPoolKey holds the bundle hashes of the config being served, so the
// next config can record what it replaced.
const reloadPoolKey = "nomos_reload"

// EventRuntimeReload records a configuration change: the policy bundle
// hashes before and after, or why a new configuration was refused.
const EventRuntimeReload = "runtime.reload"

// servedHashes is the policy of the config in service.
type servedHashes struct {
	mu     sync.Mutex
	hashes map[string]string // policy set -> bundle hash; nil before the first load
}

func (a *App) bundleHashes() map[string]string {
	out := make(map[string]string, len(a.engines))
	for name, e := range a.engines {
		out[name] = e.Hash()
	}
	return out
}

// recordReload writes runtime.reload for a config that starts serving. A
// reload that cannot be audited is refused, and the old config keeps
// serving.
func (a *App) recordReload() error {
	a.track(reloadPoolKey)
	st, err := loadPooled(reloadPoolKey, func() (*servedHashes, func() error, error) {
		return new(servedHashes), nil, nil
	})
	if err != nil {
		return err
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	now := a.bundleHashes()
	trigger := "reload"
	if st.hashes == nil {
		trigger = "startup"
	}
	ev := a.reloadEvent("SUCCESS", "")
	ev.ExecutorMetadata = map[string]any{"trigger": trigger, "outcome": "success",
		"old_policy_bundle_hashes": st.hashes, "new_policy_bundle_hashes": now,
		"policy_changed": fmt.Sprint(st.hashes) != fmt.Sprint(now)}
	if err := a.recorder.Record(context.Background(), ev); err != nil {
		return fmt.Errorf("nomos: audit: recording runtime.reload: %w", err)
	}
	st.hashes = now
	return nil
}

// recordRefusedReload writes runtime.reload FAILURE when provisioning
// failed after the audit recorder opened; without a recorder the error is
// only Caddy's.
func (a *App) recordRefusedReload(cause error) {
	if a.recorder == nil {
		return
	}
	ev := a.reloadEvent("FAILURE", cause.Error())
	ev.ExecutorMetadata = map[string]any{"trigger": "load", "outcome": "failure", "new_policy_bundle_hashes": a.bundleHashes()}
	if err := a.recorder.Record(context.Background(), ev); err != nil {
		a.logger.Error("audit: runtime.reload failure not recorded", zap.Error(err))
	}
}

func (a *App) reloadEvent(decision, reason string) *audit.Event {
	ev := &audit.Event{
		EventType: EventRuntimeReload, TraceID: EventRuntimeReload, Environment: a.Environment,
		Decision: decision, EngineVersion: service.EngineVersion, AssuranceLevel: a.assurance,
	}
	if reason != "" {
		ev.Reason = a.redactor.String(reason)
	}
	if e, ok := a.engines["default"]; ok {
		ev.PolicyBundleHash = e.Hash()
	}
	return ev
}

package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/caddy-nomos/nomos/internal/pins"
)

// pinRecheckEvery bounds how often a call to a quarantined tool makes an
// upstream read its pins again, so an accept made by another process
// (nomos mcp pins accept) takes effect within this time without a new
// listing, while a client hammering a quarantined name costs one store
// read per interval.
const pinRecheckEvery = 2 * time.Second

// Pins connects upstreams to the pin store and the audit log (see package
// internal/pins). The nomos app binds one to every upstream it provisions.
type Pins struct {
	// Store keeps the pins. Required.
	Store pins.Store
	// Record audits one change an observation found (the mcp.tool_pin
	// event). A failure is logged with the change; the pin is stored.
	Record func(ctx context.Context, c pins.Change) error
	// Now is the clock. Default: time.Now.
	Now func() time.Time
}

func (p *Pins) now() time.Time {
	if p.Now == nil {
		return time.Now()
	}
	return p.Now()
}

// pinState is an upstream's view of its pins: the bound stores (the newest
// configuration's last) and, per tool, the accepted fingerprint as of the
// last observation. The call path reads only this memory.
type pinState struct {
	mu       sync.Mutex
	bindings []*Pins
	accepted map[string]string
	// settled is the listing (store, mode, names and fingerprints) whose
	// last observation found every tool trusted and changed nothing: the
	// same listing again needs no store transaction (tools/list is hot).
	settled   string
	recheckAt time.Time
	// refreshing and again coalesce background re-enumerations.
	refreshing, again bool
}

// BindPins makes p the pin store of u, until release is called. Bindings
// stack: a configuration that fails to load releases its binding and the
// previous configuration's is used again. When u already lists tools, they
// are observed against p at once, so a reload that changes the store
// applies its pins before any call.
func (u *Upstream) BindPins(ctx context.Context, p *Pins) (release func(), err error) {
	if p == nil || p.Store == nil {
		return nil, errors.New("mcp upstream: BindPins needs a store")
	}
	u.pins.mu.Lock()
	u.pins.bindings = append(u.pins.bindings, p)
	u.pins.mu.Unlock()
	release = func() { u.unbindPins(p) }
	if defs := u.sharedTools(); defs != nil {
		if err := u.observePins(ctx, defs); err != nil {
			release()
			return nil, err
		}
	}
	return release, nil
}

func (u *Upstream) unbindPins(p *Pins) {
	u.pins.mu.Lock()
	defer u.pins.mu.Unlock()
	for i, b := range u.pins.bindings {
		if b == p {
			u.pins.bindings = append(u.pins.bindings[:i:i], u.pins.bindings[i+1:]...)
			return
		}
	}
}

// PinMode is the upstream's pin mode (off, warn or enforce).
func (u *Upstream) PinMode() pins.Mode { return u.cfg.Pin }

// binding is the newest bound store, or nil when pinning is off or
// nothing is bound (an upstream outside a nomos app, as in doctor).
func (u *Upstream) binding() *Pins {
	if u.cfg.Pin == pins.ModeOff {
		return nil
	}
	u.pins.mu.Lock()
	defer u.pins.mu.Unlock()
	if n := len(u.pins.bindings); n > 0 {
		return u.pins.bindings[n-1]
	}
	return nil
}

// sharedTools is the catalog of the control session, nil before Start.
func (u *Upstream) sharedTools() []*toolDef {
	c := u.control()
	if c == nil {
		return nil
	}
	tools, ok := c.catalog.get()
	if !ok {
		return nil
	}
	return tools
}

// observePins compares a listing with the pins, audits what changed and
// refreshes the accepted fingerprints the call path reads. Definitions
// that cannot be fingerprinted are left out: they are never accepted.
func (u *Upstream) observePins(ctx context.Context, defs []*toolDef) error {
	b := u.binding()
	if b == nil {
		return nil
	}
	list := make([]pins.Definition, 0, len(defs))
	for _, d := range defs {
		if d.fingerprint == "" {
			u.log.Warn("mcp tool definition cannot be pinned (a title or description that is not a string, or JSON that does not canonicalize); it is never accepted", "tool", d.name)
			continue
		}
		list = append(list, d.pinDef)
	}
	sig := listingSignature(b, u.cfg.Pin, defs)
	u.pins.mu.Lock()
	settled := u.pins.settled == sig
	u.pins.mu.Unlock()
	if settled {
		return nil
	}
	obs, err := pins.Observe(ctx, b.Store, u.cfg.Pin, u.cfg.Name, list, b.now())
	if err != nil {
		return err
	}
	u.pins.mu.Lock()
	if u.pins.accepted == nil {
		u.pins.accepted = map[string]string{}
	}
	allTrusted := len(obs.Changes) == 0 && len(list) == len(defs)
	for _, d := range defs {
		allTrusted = allTrusted && obs.Accepted[d.name] != "" && obs.Accepted[d.name] == d.fingerprint
	}
	for name, fp := range obs.Accepted {
		u.pins.accepted[name] = fp
	}
	u.pins.settled = ""
	if allTrusted {
		u.pins.settled = sig
	}
	u.pins.mu.Unlock()
	u.recordPinChanges(ctx, b, obs.Changes)
	return nil
}

// listingSignature names one listing as observed against one store in one
// mode, for the settled shortcut.
func listingSignature(b *Pins, mode pins.Mode, defs []*toolDef) string {
	parts := make([]string, 0, len(defs)+1)
	parts = append(parts, fmt.Sprintf("%p|%s", b, mode))
	for _, d := range defs {
		parts = append(parts, d.name+"|"+d.fingerprint)
	}
	sort.Strings(parts[1:])
	return strings.Join(parts, "\n")
}

func (u *Upstream) recordPinChanges(ctx context.Context, b *Pins, changes []pins.Change) {
	for _, c := range changes {
		level := u.log.Info
		if c.Status != pins.StatusTrusted {
			level = u.log.Warn
		}
		level("mcp tool definition pin", "tool", c.Tool, "kind", c.Kind, "status", string(c.Status),
			"old_fingerprint", c.OldFingerprint, "new_fingerprint", c.NewFingerprint, "changed_fields", c.ChangedFields)
		if b.Record == nil {
			continue
		}
		if err := b.Record(context.WithoutCancel(ctx), c); err != nil {
			u.log.Error("audit: mcp.tool_pin not recorded", "tool", c.Tool, "kind", c.Kind,
				"new_fingerprint", c.NewFingerprint, "error", err)
		}
	}
}

// pinAllows reports whether a definition may be listed and called: with
// pinning off or in warn mode always; in enforce mode only the accepted
// definition.
func (u *Upstream) pinAllows(d *toolDef) bool {
	if u.cfg.Pin != pins.ModeEnforce {
		return true
	}
	u.pins.mu.Lock()
	defer u.pins.mu.Unlock()
	if len(u.pins.bindings) == 0 {
		return true
	}
	return d.fingerprint != "" && u.pins.accepted[d.name] == d.fingerprint
}

// pinned reports whether d may be listed or called; for a call
// (recheck), a quarantined definition gets its pins read again first.
func (u *Upstream) pinned(ctx context.Context, d *toolDef, defs []*toolDef, recheck bool) bool {
	return u.pinAllows(d) || recheck && u.pinRecheck(ctx, d, defs)
}

// pinRecheck reads the pins again for a call to a quarantined tool, at
// most once per pinRecheckEvery, and reports whether d is now allowed.
func (u *Upstream) pinRecheck(ctx context.Context, d *toolDef, defs []*toolDef) bool {
	b := u.binding()
	if b == nil {
		return u.pinAllows(d)
	}
	now := b.now()
	u.pins.mu.Lock()
	due := !now.Before(u.pins.recheckAt)
	if due {
		u.pins.recheckAt = now.Add(pinRecheckEvery)
	}
	u.pins.mu.Unlock()
	if due {
		if err := u.observePins(ctx, defs); err != nil {
			u.log.Warn("mcp pins could not be read again; the tool stays hidden", "tool", d.name, "error", err)
		}
	}
	return u.pinAllows(d)
}

// refreshToolsSoon re-enumerates the shared session's tools in the
// background after notifications/tools/list_changed, so a changed
// definition is quarantined and audited at once rather than at the next
// client listing. Notifications arriving meanwhile coalesce into one more
// round.
func (u *Upstream) refreshToolsSoon() {
	if u.binding() == nil {
		return
	}
	u.pins.mu.Lock()
	if u.pins.refreshing {
		u.pins.again = true
		u.pins.mu.Unlock()
		return
	}
	u.pins.refreshing = true
	u.pins.mu.Unlock()
	go u.refreshLoop()
}

func (u *Upstream) refreshLoop() {
	defer u.recoverPanic("tools refresh")
	for {
		u.refreshOnce()
		u.pins.mu.Lock()
		if !u.pins.again || u.ctx.Err() != nil {
			u.pins.refreshing, u.pins.again = false, false
			u.pins.mu.Unlock()
			return
		}
		u.pins.again = false
		u.pins.mu.Unlock()
	}
}

func (u *Upstream) refreshOnce() {
	c := u.control()
	if c == nil || c.dead.Load() {
		return
	}
	if _, err := u.tools(u.ctx, c); err != nil {
		u.log.Warn("mcp tools/list after list_changed failed", "error", err)
	}
}

// ToolFingerprint is the fingerprint of a tools/list item as pinning
// computes it ("sha256:<hex>"), "" when a part of it cannot be pinned. A
// door that sees the listings itself (nomos_guard) binds calls with it.
func ToolFingerprint(name string, item map[string]json.RawMessage) string {
	def, ok := pinDefinition(name, item)
	if !ok {
		return ""
	}
	fp, _ := pins.Fingerprint(def)
	return fp
}

// pinDefinition extracts the pinned parts of a tool object, read by exact
// member name. ok is false when a part has the wrong JSON type: such a
// definition cannot be pinned and is never accepted.
func pinDefinition(name string, raw map[string]json.RawMessage) (pins.Definition, bool) {
	d := pins.Definition{Name: name, InputSchema: raw["inputSchema"], OutputSchema: raw["outputSchema"], Annotations: raw["annotations"]}
	for key, dst := range map[string]*string{"title": &d.Title, "description": &d.Description} {
		if v, ok := raw[key]; ok && string(v) != "null" && json.Unmarshal(v, dst) != nil {
			return d, false
		}
	}
	return d, true
}

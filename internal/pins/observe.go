package pins

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// Observation is what one listing of an upstream's tools comes to.
type Observation struct {
	// Visible are the tools the gateway may list and call.
	Visible map[string]bool
	// Accepted maps each listed tool to its accepted fingerprint ("" for a
	// tool nobody accepted), so a gateway can tell whether a definition it
	// holds is the reviewed one without asking the store again.
	Accepted map[string]string
	// Changes are the differences to audit, in listing order.
	Changes []Change
}

// Observe compares the upstream's current listing with its pins, records
// what changed, and says which tools stay visible. Tools the upstream no
// longer lists keep their pins, so a tool that comes back unchanged is
// trusted again.
func Observe(ctx context.Context, s Store, mode Mode, upstream string, defs []Definition, now time.Time) (Observation, error) {
	obs := Observation{Visible: make(map[string]bool, len(defs)), Accepted: make(map[string]string, len(defs))}
	if mode == ModeOff {
		for _, d := range defs {
			obs.Visible[d.Name] = true
		}
		return obs, nil
	}
	offers, err := offersOf(defs)
	if err != nil {
		return obs, err
	}
	err = s.Update(ctx, upstream, func(pins map[string]Pin) ([]Pin, error) {
		obs.Changes = nil // Update may retry fn
		firstUse := len(pins) == 0
		var writes []Pin
		for _, o := range offers {
			pin, change, write := judge(upstream, pins[o.def.Name], o, firstUse, now)
			obs.Visible[o.def.Name] = pin.Status == StatusTrusted || mode == ModeWarn
			obs.Accepted[o.def.Name] = pin.Fingerprint
			if change != nil {
				obs.Changes = append(obs.Changes, *change)
			}
			if write {
				writes = append(writes, pin)
			}
		}
		return writes, nil
	})
	return obs, err
}

type offer struct {
	def   Definition
	fp    string
	canon json.RawMessage
}

func offersOf(defs []Definition) ([]offer, error) {
	out := make([]offer, 0, len(defs))
	for _, d := range defs {
		canon, err := canonical(d)
		if err != nil {
			return nil, err
		}
		fp, _ := Fingerprint(d)
		out = append(out, offer{def: d, fp: fp, canon: canon})
	}
	return out, nil
}

// judge decides one tool: the pin to store, the change to audit (nil when
// nothing new happened) and whether the pin must be written.
func judge(upstream string, pin Pin, o offer, firstUse bool, now time.Time) (Pin, *Change, bool) {
	switch {
	case pin.Tool == "" && firstUse:
		pin = Pin{Upstream: upstream, Tool: o.def.Name, Status: StatusTrusted, Fingerprint: o.fp, Definition: o.canon, UpdatedAt: now}
		return pin, &Change{Upstream: upstream, Tool: o.def.Name, Kind: KindFirstUse, NewFingerprint: o.fp, Status: StatusTrusted}, true
	case pin.Fingerprint == o.fp:
		if pin.Status == StatusTrusted {
			return pin, nil, false
		}
		// The upstream went back to the accepted definition.
		pin.Status, pin.OfferedFingerprint, pin.OfferedDefinition, pin.Kind, pin.UpdatedAt = StatusTrusted, "", nil, "", now
		return pin, nil, true
	case pin.OfferedFingerprint == o.fp:
		return pin, nil, false // already quarantined or rejected as it is
	}
	kind := KindChanged
	if pin.Fingerprint == "" {
		kind = KindNewTool
	}
	change := &Change{Upstream: upstream, Tool: o.def.Name, Kind: kind, OldFingerprint: pin.Fingerprint,
		NewFingerprint: o.fp, Status: StatusQuarantined}
	if kind == KindChanged {
		change.ChangedFields = ChangedFields(pin.Definition, o.canon)
	}
	pin.Upstream, pin.Tool, pin.Status, pin.Kind = upstream, o.def.Name, StatusQuarantined, kind
	pin.OfferedFingerprint, pin.OfferedDefinition, pin.UpdatedAt = o.fp, o.canon, now
	return pin, change, true
}

// Accept makes the offered definition of a tool the accepted one. When
// fingerprint is not empty it must be the offered one, so an operator
// accepts exactly the definition they reviewed.
func Accept(ctx context.Context, s Store, upstream, tool, fingerprint, by string, now time.Time) (Pin, error) {
	return decide(ctx, s, upstream, tool, fingerprint, func(p *Pin) {
		p.Fingerprint, p.Definition = p.OfferedFingerprint, p.OfferedDefinition
		p.OfferedFingerprint, p.OfferedDefinition, p.Kind = "", nil, ""
		p.Status, p.DecidedBy, p.UpdatedAt = StatusTrusted, by, now
	})
}

// Reject keeps the tool hidden for as long as the upstream offers the
// refused definition.
func Reject(ctx context.Context, s Store, upstream, tool, fingerprint, by string, now time.Time) (Pin, error) {
	return decide(ctx, s, upstream, tool, fingerprint, func(p *Pin) {
		p.Status, p.DecidedBy, p.UpdatedAt = StatusRejected, by, now
	})
}

func decide(ctx context.Context, s Store, upstream, tool, fingerprint string, apply func(*Pin)) (Pin, error) {
	var out Pin
	err := s.Update(ctx, upstream, func(pins map[string]Pin) ([]Pin, error) {
		p, ok := pins[tool]
		if !ok || p.OfferedFingerprint == "" {
			return nil, fmt.Errorf("%s/%s: %w", upstream, tool, ErrNotFound)
		}
		if fingerprint != "" && fingerprint != p.OfferedFingerprint {
			return nil, fmt.Errorf("%s/%s: offered definition is %s, not %s: %w", upstream, tool, p.OfferedFingerprint, fingerprint, ErrNotFound)
		}
		apply(&p)
		out = p
		return []Pin{p}, nil
	})
	return out, err
}

package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"slices"

	"github.com/caddy-nomos/nomos/internal/pins"
)

// checkPins reports, per upstream, the tool definitions that wait for an
// operator's review (mcp.pins): a changed or new tool is hidden under pin
// enforce, and served unreviewed under pin warn, until someone decides.
func (in *doctorInput) checkPins(ctx context.Context) []doctorCheck {
	if len(in.app.Upstreams) == 0 {
		return nil
	}
	all, stateless, err := in.pinList(ctx)
	if err != nil {
		return []doctorCheck{doctorCheck{ID: "mcp.pins"}.fail(err.Error(), "make the pin store's directory writable, repair or move it, or set pins { path <file> }")}
	}
	if stateless {
		return []doctorCheck{doctorCheck{ID: "mcp.pins"}.pass("pins are kept in the server's memory (runtime stateless): review them in the running server's operator UI")}
	}
	byUpstream := map[string][]pins.Pin{}
	for _, p := range all {
		byUpstream[p.Upstream] = append(byUpstream[p.Upstream], p)
	}
	names := slices.Sorted(maps.Keys(in.app.Upstreams))
	out := make([]doctorCheck, 0, len(names))
	for _, n := range names {
		out = append(out, judgePins(doctorCheck{ID: "mcp.pins", Subject: n}, pinModeOf(in.app.Upstreams[n]), byUpstream[n]))
	}
	return out
}

func judgePins(c doctorCheck, mode pins.Mode, list []pins.Pin) doctorCheck {
	if mode == pins.ModeOff {
		return c.warn("pin off: a changed tool definition is served without review",
			"set pin enforce (or pin warn) in the upstream block")
	}
	var evidence []string
	quarantined, rejected := 0, 0
	for _, p := range list {
		if p.OfferedFingerprint == "" {
			continue
		}
		evidence = append(evidence, fmt.Sprintf("%s %s (%s) offers %s", p.Tool, p.Status, p.Kind, p.OfferedFingerprint))
		if p.Status == pins.StatusRejected {
			rejected++
		} else {
			quarantined++
		}
	}
	if quarantined > 0 {
		what := "hidden from clients until reviewed"
		if mode == pins.ModeWarn {
			what = "served unreviewed (pin warn)"
		}
		return c.warn(fmt.Sprintf("%d tool definition(s) wait for review, %s", quarantined, what),
			fmt.Sprintf("review with nomos mcp pins diff --config <file> --upstream %s, then nomos mcp pins accept (or reject) --config <file> --upstream %s --tool <tool> --fingerprint <offered>", c.Subject, c.Subject),
			evidence...)
	}
	if rejected > 0 {
		return c.warn(fmt.Sprintf("the upstream still offers %d rejected tool definition(s); those tools are unavailable", rejected),
			"fix or roll back the upstream, or accept the definition after review (nomos mcp pins accept)", evidence...)
	}
	if len(list) == 0 {
		return c.pass(fmt.Sprintf("pin %s; nothing pinned yet: the first listing is trusted as it is", mode))
	}
	return c.pass(fmt.Sprintf("pin %s; %d tool(s) pinned, none waits for review", mode, len(list)))
}

// pinList reads every pin from where the app keeps them (pinStoreChoice):
// the running app's store (live), the shared Redis (in every mode), or the
// config's file, which doctor never creates (no file: nothing pinned yet).
// stateless reports pins kept in a server's memory.
func (in *doctorInput) pinList(ctx context.Context) (list []pins.Pin, stateless bool, err error) {
	if in.live != nil && in.live.pins != nil {
		list, err = in.live.pins.List(ctx, "")
		return list, false, err
	}
	if in.app.State != nil {
		client, closeClient, err := in.sharedClient()
		if err != nil {
			return nil, false, err
		}
		defer closeClient()
		list, err = pins.OpenRedis(client).List(ctx, "")
		return list, false, err
	}
	path, err := in.app.pinStorePath()
	if err != nil || path == "" {
		return nil, path == "" && err == nil, err
	}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	st, err := pins.OpenSQLite(path)
	if err != nil {
		return nil, false, err
	}
	defer st.Close()
	list, err = st.List(ctx, "")
	return list, false, err
}

package mcp

import (
	"bytes"
	"encoding/json"
	"strings"

	"github.com/caddy-nomos/nomos/internal/redact"
)

// truncationNote ends text cut by an output cap.
const truncationNote = "\n[output truncated by Nomos]"

// shapeOutput applies the decision's obligations to an upstream result:
// every string is redacted, then the text blocks under capKey are capped.
// It returns the result to send and whether the upstream set isError.
func shapeOutput(result json.RawMessage, res AuthzResult, capKey string) (any, bool) {
	dec := json.NewDecoder(bytes.NewReader(result))
	dec.UseNumber()
	var v map[string]any
	if dec.Decode(&v) != nil || v == nil {
		return result, false
	}
	isErr, _ := v["isError"].(bool)
	if res.Redact != nil {
		redactValue(v, "", res.Redact)
	}
	if capKey != "" && (res.OutputMaxBytes > 0 || res.OutputMaxLines > 0) {
		if capBlocks(v, capKey, res.OutputMaxBytes, res.OutputMaxLines) {
			markTruncated(v)
		}
	}
	return v, isErr
}

// redactValue redacts string leaves in place, except protocol fields.
func redactValue(v any, key string, redact func(string) string) any {
	switch t := v.(type) {
	case string:
		if key == "type" || key == "mimeType" {
			return t
		}
		return redact(t)
	case map[string]any:
		for k, e := range t {
			t[k] = redactValue(e, k, redact)
		}
	case []any:
		for i, e := range t {
			t[i] = redactValue(e, key, redact)
		}
	}
	return v
}

// capBlocks caps the text of the blocks under key to the byte and line
// budgets, dropping non-text blocks once the budget is spent. It also drops
// structuredContent that alone exceeds the byte budget.
func capBlocks(v map[string]any, key string, maxBytes, maxLines int64) bool {
	blocks, _ := v[key].([]any)
	b := newBudget(maxBytes, maxLines)
	kept := blocks[:0]
	cut := false
	for _, blk := range blocks {
		keep, trimmed := b.take(blk)
		cut = cut || trimmed || !keep
		if keep {
			kept = append(kept, blk)
		}
	}
	if blocks != nil {
		v[key] = kept
	}
	if sc, ok := v["structuredContent"]; ok && maxBytes > 0 {
		if raw, _ := json.Marshal(sc); int64(len(raw)) > maxBytes {
			delete(v, "structuredContent")
			cut = true
		}
	}
	return cut
}

// budget is what is left of the byte and line caps; a negative cap is
// unlimited.
type budget struct{ bytes, lines int64 }

func newBudget(maxBytes, maxLines int64) budget {
	b := budget{bytes: -1, lines: -1}
	if maxBytes > 0 {
		b.bytes = maxBytes
	}
	if maxLines > 0 {
		b.lines = maxLines
	}
	return b
}

// take charges one block; it reports whether to keep it and if it was cut.
func (b *budget) take(blk any) (bool, bool) {
	m, _ := blk.(map[string]any)
	text, isText := m["text"].(string)
	if !isText {
		raw, _ := json.Marshal(blk)
		if b.lines == 0 || b.bytes >= 0 && int64(len(raw)) > b.bytes {
			return false, true
		}
		b.charge(int64(len(raw)), 0)
		return true, false
	}
	cutText, trimmed := b.cutText(text)
	m["text"] = cutText
	return true, trimmed
}

// cutText spends the budget on text with the one UTF-8-safe cap,
// redact.Cap; a spent budget (0) keeps nothing.
func (b *budget) cutText(text string) (string, bool) {
	orig := text
	if b.bytes == 0 || b.lines == 0 {
		text = ""
	} else {
		text, _ = redact.Cap(text, b.bytes, b.lines)
	}
	b.charge(int64(len(text)), int64(strings.Count(text, "\n")+1))
	if text != orig {
		return text + truncationNote, true
	}
	return text, false
}

func (b *budget) charge(n, lines int64) {
	if b.bytes >= 0 {
		b.bytes = max(b.bytes-n, 0)
	}
	if b.lines >= 0 {
		b.lines = max(b.lines-lines, 0)
	}
}

func markTruncated(v map[string]any) {
	meta, _ := v["_meta"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
	}
	meta["nomos/truncated"] = true
	v["_meta"] = meta
}

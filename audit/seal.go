package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/caddy-nomos/nomos/policy/action"
)

// prepared is an event encoded and redacted but not yet linked: its stored
// line with both chain fields empty, and where their values go.
type prepared struct {
	line           []byte
	hashAt, prevAt int
	floats         bool
}

var errIdentityAltered = errors.New("audit: record: the redactor altered event_id, event_type, trace_id, action_id or prev_event_hash")

// prepare encodes e and redacts it. It runs outside the Recorder's lock:
// this is where sealing spends its time, so concurrent events prepare in
// parallel and only the cheap link is serialized.
func (r *Recorder) prepare(e *Event) (*prepared, error) {
	enc := r.encoders.Get().(*encoder)
	defer r.encoders.Put(enc)
	enc.buf, enc.floats, enc.keys = enc.buf[:0], false, enc.keys[:0]
	if err := enc.appendEvent(e); err != nil {
		return nil, fmt.Errorf("audit: record: encode event: %w", err)
	}
	p := &prepared{hashAt: enc.hashAt, prevAt: enc.prevAt, floats: enc.floats}
	if r.redact == nil {
		p.line = bytes.Clone(enc.buf)
		return p, nil
	}
	red := r.redact(enc.buf)
	if bytes.Equal(red, enc.buf) {
		p.line = bytes.Clone(enc.buf)
		return p, nil
	}
	return r.renormalize(e, red)
}

// renormalize brings a line the redactor changed back to the stored form
// and checks it kept the fields the chain and the sinks key on: a 64-hex
// hash can look like a secret to a pattern, and storing a mangled link
// would break the chain.
func (r *Recorder) renormalize(e *Event, red []byte) (*prepared, error) {
	var sealed Event
	if err := json.Unmarshal(red, &sealed); err != nil {
		return nil, fmt.Errorf("audit: record: redacted event does not fit the schema: %w", err)
	}
	if e.EventID != sealed.EventID || e.EventType != sealed.EventType || sealed.PrevEventHash != "" ||
		e.TraceID != sealed.TraceID || e.ActionID != sealed.ActionID || sealed.EventHash != "" {
		return nil, errIdentityAltered
	}
	fields, err := decodeObject(red)
	if err != nil {
		return nil, fmt.Errorf("audit: record: redacted event: %w", err)
	}
	enc := &encoder{}
	if err := enc.object(fields, 0); err != nil {
		return nil, fmt.Errorf("audit: record: redacted event: %w", err)
	}
	line := enc.buf
	hashAt := bytes.Index(line, []byte(`"event_hash":""`))
	prevAt := bytes.LastIndex(line, []byte(`"prev_event_hash":""`))
	if hashAt < 0 || prevAt < 0 {
		return nil, errIdentityAltered
	}
	return &prepared{line: line, hashAt: hashAt + len(`"event_hash":"`),
		prevAt: prevAt + len(`"prev_event_hash":"`), floats: enc.floats}, nil
}

// link returns the final line of p linked to prev, and its event hash.
// scratch is reused between calls (the caller serializes them).
func link(p *prepared, prev string, scratch *[]byte) ([]byte, string, error) {
	// The line with event_hash still empty is what is hashed.
	b := append((*scratch)[:0], p.line[:p.prevAt]...)
	b = append(b, prev...)
	b = append(b, p.line[p.prevAt:]...)
	*scratch = b
	var sum [sha256.Size]byte
	if p.floats {
		canon, err := action.Canonicalize(b)
		if err != nil {
			return nil, "", fmt.Errorf("audit: record: canonical json: %w", err)
		}
		sum = sha256.Sum256(canon)
	} else {
		sum = sha256.Sum256(b)
	}
	out := make([]byte, 0, len(b)+2*sha256.Size)
	out = append(out, b[:p.hashAt]...)
	out = hex.AppendEncode(out, sum[:])
	out = append(out, b[p.hashAt:]...)
	return out, string(out[p.hashAt : p.hashAt+2*sha256.Size]), nil
}

// rawCache remembers the stored form of small JSON documents that repeat
// (the obligations of a rule), so they are not decoded for every event.
type rawCache struct {
	mu sync.Mutex
	m  map[string]rawEntry
}

type rawEntry struct {
	line   []byte
	floats bool
}

const (
	rawCacheEntries = 256
	rawCacheMaxDoc  = 4 << 10
)

func (c *rawCache) get(doc []byte) ([]byte, bool, bool) {
	if len(doc) > rawCacheMaxDoc {
		return nil, false, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[string(doc)]
	return e.line, e.floats, ok
}

func (c *rawCache) put(doc, line []byte, floats bool) {
	if len(doc) > rawCacheMaxDoc {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= rawCacheEntries {
		c.m = make(map[string]rawEntry, rawCacheEntries)
	}
	c.m[string(doc)] = rawEntry{line: bytes.Clone(line), floats: floats}
}

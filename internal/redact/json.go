package redact

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"unicode/utf8"
)

// maxJSONDepth bounds nesting so a hostile document cannot exhaust the stack.
const maxJSONDepth = 512

var errJSONDepth = errors.New("redact: json nested too deeply")

// JSON returns b with every string (keys included) redacted as text and the
// value of every credential-named key (see IsCredentialName) replaced by
// Mask; null and boolean values are kept. Key order is preserved and the
// result is compact, valid JSON. Input that is not a single JSON value is
// redacted as plain text instead, so it is never returned unredacted.
//
// A compact document with nothing to redact is returned as it is (b
// itself), after one allocation-free pass; only then may an escape differ
// from what the rewriter would write (\u003c stays \u003c).
func (r *Redactor) JSON(b []byte) []byte {
	if r.cleanJSON(b) {
		return b
	}
	out, err := r.rewriteJSON(b)
	if err != nil {
		return r.Bytes(b)
	}
	return out
}

type jsonRewriter struct {
	r   *Redactor
	dec *json.Decoder
	out bytes.Buffer
}

func (r *Redactor) rewriteJSON(b []byte) ([]byte, error) {
	w := &jsonRewriter{r: r, dec: json.NewDecoder(bytes.NewReader(b))}
	w.dec.UseNumber()
	tok, err := w.dec.Token()
	if err != nil {
		return nil, err
	}
	if err := w.value(tok, 0); err != nil {
		return nil, err
	}
	if _, err := w.dec.Token(); err != io.EOF {
		return nil, errors.New("redact: trailing data after json value")
	}
	return w.out.Bytes(), nil
}

func (w *jsonRewriter) value(tok json.Token, depth int) error {
	switch v := tok.(type) {
	case json.Delim:
		return w.container(v, depth+1)
	case string:
		w.str(w.r.String(v))
	case json.Number:
		w.number(string(v))
	case bool:
		w.literal(v)
	case nil:
		w.out.WriteString("null")
	}
	return nil
}

func (w *jsonRewriter) container(open json.Delim, depth int) error {
	if depth > maxJSONDepth {
		return errJSONDepth
	}
	isObject := open == '{'
	w.out.WriteByte(byte(open))
	for i := 0; w.dec.More(); i++ {
		if i > 0 {
			w.out.WriteByte(',')
		}
		if err := w.member(isObject, depth); err != nil {
			return err
		}
	}
	closing, err := w.dec.Token()
	if err != nil {
		return err
	}
	w.out.WriteByte(byte(closing.(json.Delim)))
	return nil
}

// member writes one array element, or one object key and its value.
func (w *jsonRewriter) member(isObject bool, depth int) error {
	tok, err := w.dec.Token()
	if err != nil {
		return err
	}
	if !isObject {
		return w.value(tok, depth)
	}
	key, _ := tok.(string)
	w.str(w.r.String(key))
	w.out.WriteByte(':')
	if tok, err = w.dec.Token(); err != nil {
		return err
	}
	if IsCredentialName(key) {
		return w.masked(tok)
	}
	return w.value(tok, depth)
}

// masked writes Mask in place of a credential value, skipping a nested one.
func (w *jsonRewriter) masked(tok json.Token) error {
	switch v := tok.(type) {
	case nil:
		w.out.WriteString("null")
		return nil
	case bool:
		w.literal(v)
		return nil
	case json.Delim:
		if err := w.skip(); err != nil {
			return err
		}
	}
	w.str(Mask)
	return nil
}

// skip consumes the rest of a container whose opening token was just read.
func (w *jsonRewriter) skip() error {
	for depth := 1; depth > 0; {
		tok, err := w.dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
	}
	return nil
}

// number keeps a number as written unless it is itself a secret value.
func (w *jsonRewriter) number(n string) {
	if w.r.String(n) != n {
		w.str(Mask)
		return
	}
	w.out.WriteString(n)
}

func (w *jsonRewriter) literal(v bool) {
	if v {
		w.out.WriteString("true")
		return
	}
	w.out.WriteString("false")
}

// str writes s as a JSON string the way encoding/json does, without HTML
// escaping; invalid UTF-8 becomes U+FFFD.
func (w *jsonRewriter) str(s string) {
	w.out.WriteByte('"')
	for i := 0; i < len(s); {
		c, size := utf8.DecodeRuneInString(s[i:])
		w.char(c)
		i += size
	}
	w.out.WriteByte('"')
}

var shortEscapes = map[rune]string{
	'"': `\"`, '\\': `\\`, '\n': `\n`, '\r': `\r`, '\t': `\t`, '\b': `\b`, '\f': `\f`,
	'\u2028': `\u2028`, '\u2029': `\u2029`,
}

func (w *jsonRewriter) char(c rune) {
	const hex = "0123456789abcdef"
	if esc, ok := shortEscapes[c]; ok {
		w.out.WriteString(esc)
		return
	}
	if c < 0x20 {
		w.out.WriteString(`\u00`)
		w.out.WriteByte(hex[c>>4])
		w.out.WriteByte(hex[c&0xf])
		return
	}
	w.out.WriteRune(c) // utf8.RuneError for invalid bytes
}

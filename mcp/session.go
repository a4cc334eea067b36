package mcp

import (
	"container/list"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddy-nomos/nomos/internal/jsonrpc"
)

// streamQueue bounds the messages waiting for a session's GET stream.
const streamQueue = 64

// session is one downstream MCP session, bound to the identity that
// initialized it.
type session struct {
	id       string
	identity Identity
	gw       atomic.Pointer[Gateway] // swapped when a reload adopts the session
	lastSeen atomic.Int64            // unix nanoseconds
	sharedAt atomic.Int64            // last registry refresh, unix nanoseconds
	idle     *list.Element           // in sessionStore.idle, guarded by the store's lock
	nextID   atomic.Int64
	done     chan struct{}

	mu              sync.Mutex
	protocolVersion string
	initParams      json.RawMessage    // the client's initialize params, for redials
	caps            clientCapabilities // what the client declared, mirrored upstream
	links           map[string]*conn   // upstream name → conn
	pending         map[string]chan *message
	inflight        map[string]*inflight // by downstream request id
	subs            map[string]string    // resource uri → upstream name
	owners          map[string]string    // resource uri → upstream name
	logLevel        int
	closed          bool
	stream          chan []byte
	streaming       bool
}

func newSessionID() (string, error) {
	b := make([]byte, 24) // 192 bits
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

func newSession(gw *Gateway, id Identity) (*session, error) {
	sid, err := newSessionID()
	if err != nil {
		return nil, err
	}
	s := &session{
		id: sid, identity: id, done: make(chan struct{}),
		links: map[string]*conn{}, pending: map[string]chan *message{}, inflight: map[string]*inflight{},
		subs: map[string]string{}, owners: map[string]string{},
		stream: make(chan []byte, streamQueue), logLevel: -1, caps: noCapabilities,
	}
	s.gw.Store(gw)
	s.lastSeen.Store(gw.now().UnixNano())
	return s, nil
}

func (s *session) expired(now time.Time, ttl time.Duration) bool {
	return now.Sub(time.Unix(0, s.lastSeen.Load())) > ttl
}

// link returns the conn for upstream name.
func (s *session) link(name string) *conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.links[name]
}

func (s *session) setLink(name string, c *conn) {
	s.mu.Lock()
	s.links[name] = c
	s.mu.Unlock()
	c.attach(s)
}

// close ends the session in the background: dedicated upstream sessions
// are closed (a remote upstream sees DELETE), shared ones only forget it.
func (s *session) close() {
	for _, c := range s.end() {
		go c.close()
	}
}

// closeWait ends the session and waits for its upstream sessions to close.
func (s *session) closeWait() {
	var wg sync.WaitGroup
	for _, c := range s.end() {
		wg.Go(c.close)
	}
	wg.Wait()
}

// end marks the session closed and returns its dedicated conns.
func (s *session) end() []*conn {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	links := s.links
	s.links = map[string]*conn{}
	close(s.done)
	s.mu.Unlock()
	var own []*conn
	for _, c := range links {
		c.detach(s)
		if c.dedicated == s {
			own = append(own, c)
		}
	}
	return own
}

// push queues a message for the GET stream; it drops when the queue is
// full so a slow client cannot block an upstream.
func (s *session) push(msg []byte) {
	select {
	case s.stream <- msg:
	default:
		s.gw.Load().log.Debug("mcp session stream queue full; dropping message", "downstream_session_id", s.id)
	}
}

// deliver sends a server→client message on the POST stream of the request
// it relates to, or else on the GET stream.
func (s *session) deliver(related *responder, msg []byte) {
	if related != nil && related.send(msg) {
		return
	}
	s.push(msg)
}

// request relays an upstream→client request and waits for the answer.
// onID learns the downstream id so cancellations can be mapped.
func (s *session) requestTracked(ctx context.Context, related *responder, method string, params json.RawMessage, onID func(string)) (*message, error) {
	id := strconv.Quote("nomos-srv-" + strconv.FormatInt(s.nextID.Add(1), 10))
	onID(id)
	ch := make(chan *message, 1)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, errors.New("downstream session closed")
	}
	s.pending[id] = ch
	s.mu.Unlock()
	defer s.forget(id)
	s.deliver(related, jsonrpc.Request(json.RawMessage(id), method, params))
	select {
	case m := <-ch:
		return m, nil
	case <-s.done:
		return nil, errors.New("downstream session closed")
	case <-ctx.Done():
		s.deliver(related, jsonrpc.Notification("notifications/cancelled", map[string]any{"requestId": json.RawMessage(id), "reason": "upstream canceled"}))
		return nil, ctx.Err()
	}
}

func (s *session) forget(id string) {
	s.mu.Lock()
	delete(s.pending, id)
	s.mu.Unlock()
}

// answer hands a client's response to the waiting upstream request.
func (s *session) answer(m *message) bool {
	s.mu.Lock()
	ch, ok := s.pending[string(m.ID)]
	delete(s.pending, string(m.ID))
	s.mu.Unlock()
	if ok {
		ch <- m
	}
	return ok
}

// claimStream lets one GET stream at a time read the queue.
func (s *session) claimStream() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.streaming || s.closed {
		return false
	}
	s.streaming = true
	return true
}

func (s *session) releaseStream() {
	s.mu.Lock()
	s.streaming = false
	s.mu.Unlock()
}

// responder carries the messages related to one POST request when the
// response is an SSE stream.
type responder struct {
	ch     chan []byte
	mu     sync.Mutex
	closed bool
}

func newResponder() *responder {
	return &responder{ch: make(chan []byte, streamQueue)}
}

// send queues msg on the stream; false once the stream has ended or its
// queue is full. It never blocks: it runs on an upstream's reader.
func (r *responder) send(msg []byte) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	select {
	case r.ch <- msg:
		return true
	default:
		return false
	}
}

// finish ends the stream: later messages go to the GET stream, and what
// was queued before can be drained.
func (r *responder) finish() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
}

// deadLink reports whether one of the session's own upstream sessions has
// ended (e.g. the remote upstream forgot it): the client must start over.
func (s *session) deadLink() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.links {
		if c.dedicated == s && c.dead.Load() {
			return true
		}
	}
	return false
}

// usesOnly reports whether every upstream the session is linked to is the
// same Upstream in byName.
func (s *session) usesOnly(byName map[string]*Upstream) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, c := range s.links {
		if byName[name] != c.up {
			return false
		}
	}
	return true
}

// capabilities is what the client declared at initialize.
func (s *session) capabilities() clientCapabilities {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.caps
}

// narrowCapabilities serves the session with cc, a part of what it
// declared, when a stdio upstream has no child for all of it: the child
// never asks for more, and requests route to that child from then on.
func (s *session) narrowCapabilities(cc clientCapabilities) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cc.within(s.caps) {
		s.caps = cc
	}
}

func (s *session) initParamsCopy() json.RawMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	return s.initParams
}

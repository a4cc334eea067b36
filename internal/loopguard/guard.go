package loopguard

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"

	"github.com/caddy-nomos/nomos/policy"
	"github.com/caddy-nomos/nomos/policy/action"
)

// Scopes of a tracker.
const (
	ScopeSession = "session"
	ScopeAgent   = "agent"
)

// Limit names, as audit, metrics and tool results spell them.
const (
	LimitCalls          = "calls"
	LimitWriteCalls     = "write_calls"
	LimitDistinctTools  = "distinct_tools"
	LimitIdenticalCalls = "identical_calls"
)

// Defaults of Config.
const (
	DefaultWindow     = time.Minute
	DefaultMaxTracked = 10000
	// maxKeysPerWindow bounds the tool and identical-call sets of one
	// tracker; calls beyond it are still counted.
	maxKeysPerWindow = 4096
)

// Limits are the caps of one scope per window; 0 leaves a dimension
// uncapped.
type Limits struct {
	Calls          int
	WriteCalls     int
	DistinctTools  int
	IdenticalCalls int
}

func (l Limits) any() bool {
	return l.Calls > 0 || l.WriteCalls > 0 || l.DistinctTools > 0 || l.IdenticalCalls > 0
}

// Config configures a Guard.
type Config struct {
	// Window is the length of a counting window. Default: 1m.
	Window time.Duration
	// Session caps each MCP session; Agent caps each (principal, agent).
	Session, Agent Limits
	// ReadOnly are resource globs whose calls are never write-class (for
	// MCP tools known to only read).
	ReadOnly []string
	// MaxTracked bounds the sessions and agents tracked at once. Default:
	// 10000.
	MaxTracked int
}

// Call is one agent-initiated action.
type Call struct {
	// SessionID is the MCP session; empty means no session caps apply.
	SessionID  string
	Principal  string
	Agent      string
	ActionType string
	Resource   string
	ParamsHash string
	RiskFlags  []string
}

// Verdict is the outcome of one check.
type Verdict struct {
	Tripped bool
	// Scope and Limit say which cap tripped.
	Scope string
	Limit string
	// Max is the tripped cap.
	Max int
	// RetryAfter is how long until the tripped window starts again.
	RetryAfter time.Duration
	// Budget is what the tripped scope has left in its window, per limit.
	Budget map[string]int
}

// Guard counts calls per session and agent. It is safe for concurrent
// use.
type Guard struct {
	cfg      Config
	readOnly []*policy.Glob

	mu       sync.Mutex
	trackers *simplelru.LRU[string, *tracker]
}

// New validates cfg and builds a Guard.
func New(cfg Config) (*Guard, error) {
	if cfg.Window <= 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.MaxTracked <= 0 {
		cfg.MaxTracked = DefaultMaxTracked
	}
	if err := checkLimits(cfg); err != nil {
		return nil, err
	}
	g := &Guard{cfg: cfg}
	for _, p := range cfg.ReadOnly {
		glob, err := policy.CompileGlob(p)
		if err != nil {
			return nil, fmt.Errorf("loop_breakers: read_only %q: %w", p, err)
		}
		g.readOnly = append(g.readOnly, glob)
	}
	lru, err := simplelru.NewLRU[string, *tracker](cfg.MaxTracked, nil)
	if err != nil {
		return nil, err
	}
	g.trackers = lru
	return g, nil
}

func checkLimits(cfg Config) error {
	if !cfg.Session.any() && !cfg.Agent.any() {
		return errors.New("loop_breakers: set at least one session or agent limit")
	}
	for _, l := range []Limits{cfg.Session, cfg.Agent} {
		if l.Calls < 0 || l.WriteCalls < 0 || l.DistinctTools < 0 || l.IdenticalCalls < 0 {
			return errors.New("loop_breakers: limits must not be negative")
		}
		if l.DistinctTools > maxKeysPerWindow {
			return fmt.Errorf("loop_breakers: max_distinct_tools must be at most %d (the tools one window remembers)", maxKeysPerWindow)
		}
	}
	return nil
}

// Governed reports whether calls of actionType count: everything an agent
// initiates, not the sampling and elicitation requests upstream servers
// send towards the client.
func Governed(actionType string) bool {
	return actionType != action.TypeMCPSample && actionType != action.TypeMCPElicit
}

// Check counts c against its session and agent windows at now, or counts
// nothing and trips when any cap would be exceeded.
func (g *Guard) Check(c Call, now time.Time) Verdict {
	if !Governed(c.ActionType) {
		return Verdict{}
	}
	k := g.keys(c)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.prune(now)
	scopes := g.scopes(c, now)
	for _, s := range scopes {
		if v := s.t.check(s.limits, k, now, g.cfg.Window); v.Tripped {
			v.Scope = s.name
			return v
		}
	}
	for _, s := range scopes {
		s.t.add(k)
	}
	return Verdict{}
}

type scoped struct {
	name   string
	limits Limits
	t      *tracker
}

func (g *Guard) scopes(c Call, now time.Time) []scoped {
	var out []scoped
	if c.SessionID != "" && g.cfg.Session.any() {
		out = append(out, scoped{ScopeSession, g.cfg.Session, g.tracker("session|"+c.SessionID, now)})
	}
	if g.cfg.Agent.any() {
		key := fmt.Sprintf("agent|%d:%s|%s", len(c.Principal), c.Principal, c.Agent)
		out = append(out, scoped{ScopeAgent, g.cfg.Agent, g.tracker(key, now)})
	}
	return out
}

// tracker returns key's tracker with its window current at now.
func (g *Guard) tracker(key string, now time.Time) *tracker {
	t, ok := g.trackers.Get(key)
	if !ok {
		t = new(tracker)
		g.trackers.Add(key, t)
	}
	t.roll(now, g.cfg.Window)
	return t
}

// prune forgets trackers idle for a whole window; the least recently used
// comes first, so pruning stops at the first one still in use.
func (g *Guard) prune(now time.Time) {
	for {
		_, t, ok := g.trackers.GetOldest()
		if !ok || now.Sub(t.touched) < g.cfg.Window {
			return
		}
		g.trackers.RemoveOldest()
	}
}

// callKeys identify the tool, the exact call and its class.
type callKeys struct {
	tool, identical string
	write           bool
}

func (g *Guard) keys(c Call) callKeys {
	tool := c.ActionType
	if action.IsMCP(c.ActionType) {
		tool = c.Resource
	}
	return callKeys{
		tool:      tool,
		identical: fmt.Sprintf("%d:%s|%d:%s|%s", len(c.ActionType), c.ActionType, len(c.Resource), c.Resource, c.ParamsHash),
		write:     g.isWrite(c),
	}
}

// isWrite: built-in actions with side effects, and every MCP tool call
// except the resources declared read_only.
func (g *Guard) isWrite(c Call) bool {
	for _, glob := range g.readOnly {
		if glob.Match(c.Resource) {
			return false
		}
	}
	if c.ActionType == action.TypeMCPCall {
		return true
	}
	for _, f := range c.RiskFlags {
		switch f {
		case action.RiskWrite, action.RiskExec, action.RiskNet, action.RiskSecrets:
			return true
		}
	}
	return false
}

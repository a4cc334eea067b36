package identity

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"time"
)

// unknownAgentKey keys the HMAC computed for an unknown agent id, so an
// unknown agent costs the same time as a wrong signature.
const unknownAgentKey = "nomos-unknown-agent"

// Sign returns the agent signature of body: the lowercase hex HMAC-SHA256
// under secret of the raw body, or of "<timestamp>.<raw body>" when timestamp
// is not empty. Clients and tests use it; the server verifies with it.
func Sign(secret, timestamp string, body []byte) string {
	return hex.EncodeToString(mac([]byte(secret), timestamp, body))
}

func mac(secret []byte, timestamp string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	if timestamp != "" {
		m.Write([]byte(timestamp))
		m.Write([]byte{'.'})
	}
	m.Write(body)
	return m.Sum(nil)
}

// agent authenticates the agent: a signed agent when its headers are
// present, else a trusted proxy's agent header, else the anonymous agent for
// an anonymous principal, else none (an error when an agent is required).
func (a *Authenticator) agent(in Input, anonymous bool) (string, error) {
	id, hasID, err := singleHeader(in.Header, HeaderAgentID)
	if err != nil {
		return "", agentError(err.Error())
	}
	sig, hasSig, err := singleHeader(in.Header, HeaderAgentSignature)
	if err != nil {
		return "", agentError(err.Error())
	}
	switch {
	case hasID && hasSig:
		return a.signedAgent(in, id, sig)
	case hasID:
		return "", agentError("missing agent signature")
	case hasSig:
		return "", agentError("missing agent id")
	}
	return a.unsignedAgent(in, anonymous)
}

func (a *Authenticator) unsignedAgent(in Input, anonymous bool) (string, error) {
	if a.trustedHeaders != nil && a.trustedHeaders.AgentHeader != "" && in.FromTrustedProxy {
		v, ok, err := singleHeader(in.Header, a.trustedHeaders.AgentHeader)
		if err != nil {
			return "", agentError(err.Error())
		}
		if ok {
			if checkName(v) != nil {
				return "", agentError("invalid agent name")
			}
			return v, nil
		}
	}
	switch {
	case anonymous && a.anonymousAgent != "":
		return a.anonymousAgent, nil
	case a.requireAgent:
		return "", agentError("missing agent credentials")
	}
	return "", nil
}

// signedAgent verifies the HMAC, then the timestamp window, then the replay
// cache, so that only authentic signatures ever enter the cache.
func (a *Authenticator) signedAgent(in Input, id, sig string) (string, error) {
	got, err := decodeSignature(sig)
	if err != nil {
		return "", err
	}
	ts, err := a.timestamp(in.Header)
	if err != nil {
		return "", err
	}
	secret, known := a.agents[id]
	if !known {
		secret = []byte(unknownAgentKey)
	}
	if !hmac.Equal(mac(secret, ts, in.Body), got) || !known {
		return "", agentError("invalid agent signature")
	}
	if err := a.checkFreshness(ts, id, got); err != nil {
		return "", err
	}
	return id, nil
}

func decodeSignature(sig string) ([]byte, error) {
	if len(sig) != 2*sha256.Size {
		return nil, agentError("malformed agent signature")
	}
	b, err := hex.DecodeString(sig)
	if err != nil {
		return nil, agentError("malformed agent signature")
	}
	return b, nil
}

// timestamp returns the X-Nomos-Timestamp value exactly as sent: the MAC
// covers those bytes.
func (a *Authenticator) timestamp(h http.Header) (string, error) {
	ts, ok, err := singleHeader(h, HeaderTimestamp)
	if err != nil {
		return "", agentError(err.Error())
	}
	if !ok {
		if a.requireTS {
			return "", agentError("missing timestamp")
		}
		return "", nil
	}
	if !validUnixSeconds(ts) {
		return "", agentError("malformed timestamp")
	}
	return ts, nil
}

func validUnixSeconds(s string) bool {
	if s == "" || len(s) > 12 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// checkFreshness enforces the clock skew window and rejects a signature seen
// before. Untimestamped signatures have no window, so they are not cached:
// identical bodies would otherwise be refused forever.
func (a *Authenticator) checkFreshness(ts, id string, sig []byte) error {
	if ts == "" {
		return nil
	}
	now := a.now()
	if d := now.Sub(time.Unix(parseUnix(ts), 0)); d > a.skew || d < -a.skew {
		return agentError("timestamp outside the allowed clock skew")
	}
	if a.replay.seen(id+"\x00"+string(sig), now) {
		return agentError("replayed signature")
	}
	return nil
}

func parseUnix(s string) int64 {
	var n int64
	for i := 0; i < len(s); i++ {
		n = n*10 + int64(s[i]-'0')
	}
	return n
}

package identity

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"
	"time"
)

// unknownAgentKey keys the HMAC computed for an unknown agent id, so an
// unknown agent costs the same time as a wrong signature.
const unknownAgentKey = "nomos-unknown-agent"

// agent authenticates the agent: a signed agent when its headers are
// present, else a trusted proxy's agent header, else the anonymous agent for
// an anonymous principal, else none (an error when an agent is required).
// principal is the one the request's credential authenticated: a v2
// signature must name it.
func (a *Authenticator) agent(ctx context.Context, in Input, principal string, anonymous bool) (string, error) {
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
		return a.signedAgent(ctx, in, principal, id, sig)
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

// signedAgent dispatches on the signature's version: "v2=<hex>" is the
// current scheme; a bare 64-digit hex value is the legacy body signature,
// refused unless the operator enabled it.
func (a *Authenticator) signedAgent(ctx context.Context, in Input, principal, id, sig string) (string, error) {
	if hexMAC, ok := strings.CutPrefix(sig, SignatureV2Prefix); ok {
		return a.signedAgentV2(ctx, in, principal, id, hexMAC)
	}
	if version, _, ok := strings.Cut(sig, "="); ok && len(version) < 8 {
		return "", agentError("unsupported agent signature version")
	}
	if !a.legacy {
		if len(sig) == 2*sha256.Size {
			return "", agentError("legacy body signature not enabled: sign with v2 (see docs/identity.md)")
		}
		return "", agentError("malformed agent signature")
	}
	return a.signedAgentLegacy(ctx, in, id, sig)
}

// signedAgentV2 checks the headers' form, then the HMAC, then the
// timestamp window, then the nonce, so that only authentic signatures ever
// enter the replay cache.
func (a *Authenticator) signedAgentV2(ctx context.Context, in Input, principal, id, hexMAC string) (string, error) {
	got, err := decodeMAC(hexMAC, true)
	if err != nil {
		return "", err
	}
	req, err := a.v2Request(in, principal, id)
	if err != nil {
		return "", err
	}
	if !a.verifyMAC(id, []byte(req.StringToSign()), got) {
		return "", agentError("invalid agent signature")
	}
	ts, err := a.checkWindow(req.Timestamp)
	if err != nil {
		return "", err
	}
	if err := a.replay.Admit(ctx, "n\x00"+id+"\x00"+req.Nonce, ts, a.now()); err != nil {
		return "", replayError(err)
	}
	return id, nil
}

// v2Request collects what a v2 signature covers. The timestamp and the
// nonce are mandatory; the method and target come from the transport.
func (a *Authenticator) v2Request(in Input, principal, id string) (SignedRequest, error) {
	ts, ok, err := singleHeader(in.Header, HeaderTimestamp)
	switch {
	case err != nil:
		return SignedRequest{}, agentError(err.Error())
	case !ok:
		return SignedRequest{}, agentError("missing timestamp")
	case !validUnixSeconds(ts):
		return SignedRequest{}, agentError("malformed timestamp")
	}
	nonce, ok, err := singleHeader(in.Header, HeaderNonce)
	switch {
	case err != nil:
		return SignedRequest{}, agentError(err.Error())
	case !ok:
		return SignedRequest{}, agentError("missing nonce")
	case !validNonce(nonce):
		return SignedRequest{}, agentError("malformed nonce")
	}
	if !validToken(in.Method) || !validTarget(in.Target) {
		// The glue failed to say what was requested: nothing to verify
		// against.
		return SignedRequest{}, agentError("request method or target unavailable")
	}
	if checkName(principal) != nil {
		return SignedRequest{}, agentError("principal name cannot be signed")
	}
	return SignedRequest{Method: in.Method, Target: in.Target, Principal: principal, Agent: id,
		Timestamp: ts, Nonce: nonce, Body: in.Body}, nil
}

// verifyMAC compares in constant time. An unknown agent is checked against
// a fixed key so it takes as long as a wrong signature, and always fails.
func (a *Authenticator) verifyMAC(id string, msg, got []byte) bool {
	secret, known := a.agents[id]
	if !known {
		secret = []byte(unknownAgentKey)
	}
	m := hmac.New(sha256.New, secret)
	m.Write(msg)
	return hmac.Equal(m.Sum(nil), got) && known
}

// checkWindow parses a validated timestamp and enforces the clock skew.
func (a *Authenticator) checkWindow(ts string) (time.Time, error) {
	t := time.Unix(parseUnix(ts), 0)
	if d := a.now().Sub(t); d > a.skew || d < -a.skew {
		return time.Time{}, agentError("timestamp outside the allowed clock skew")
	}
	return t, nil
}

// signedAgentLegacy verifies a legacy body signature: the HMAC of the body,
// or of "<timestamp>.<body>". Only timestamped ones are replay-checked,
// keyed on the signature itself.
func (a *Authenticator) signedAgentLegacy(ctx context.Context, in Input, id, sig string) (string, error) {
	got, err := decodeMAC(sig, false)
	if err != nil {
		return "", err
	}
	ts, err := a.legacyTimestamp(in.Header)
	if err != nil {
		return "", err
	}
	if !a.verifyMAC(id, legacyMessage(ts, in.Body), got) {
		return "", agentError("invalid agent signature")
	}
	if ts == "" {
		// No window, so no caching: identical bodies would otherwise be
		// refused forever. This is why the legacy form is off by default.
		return id, nil
	}
	sec, err := a.checkWindow(ts)
	if err != nil {
		return "", err
	}
	if err := a.replay.Admit(ctx, "s\x00"+id+"\x00"+hex.EncodeToString(got), sec, a.now()); err != nil {
		return "", replayError(err)
	}
	return id, nil
}

// decodeMAC decodes a 64-digit hex MAC; v2 insists on lower case, the one
// spelling the scheme defines.
func decodeMAC(s string, lowerOnly bool) ([]byte, error) {
	if len(s) != 2*sha256.Size || lowerOnly && strings.ToLower(s) != s {
		return nil, agentError("malformed agent signature")
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, agentError("malformed agent signature")
	}
	return b, nil
}

// legacyTimestamp returns the X-Nomos-Timestamp value exactly as sent: the
// MAC covers those bytes.
func (a *Authenticator) legacyTimestamp(h http.Header) (string, error) {
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

func parseUnix(s string) int64 {
	var n int64
	for i := 0; i < len(s); i++ {
		n = n*10 + int64(s[i]-'0')
	}
	return n
}

package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

const (
	initializeBody = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"nomos-bench","version":"1"}}}`
	initializedMsg = `{"jsonrpc":"2.0","method":"notifications/initialized"}`
	callBody       = `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"test_simple_text","arguments":{}}}`
)

// endpoint is one configuration's MCP URL with the sessions opened on it.
type endpoint struct {
	url      string
	admin    string // the nomos admin address, "" for the direct configuration
	header   http.Header
	sessions []string // "" for a stateless server
}

func baseHeader(auth bool) http.Header {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("Accept", "application/json, text/event-stream")
	if auth {
		h.Set("Authorization", "Bearer "+benchAPIKey)
	}
	return h
}

// openSessions initializes n MCP sessions, as n independent clients would.
func openSessions(url string, auth bool, n int) (*endpoint, error) {
	ep := &endpoint{url: url, header: baseHeader(auth)}
	for i := 0; i < n; i++ {
		sid, err := ep.post(initializeBody, "")
		if err != nil {
			return nil, fmt.Errorf("initialize %s: %w", url, err)
		}
		if _, err := ep.post(initializedMsg, sid); err != nil {
			return nil, fmt.Errorf("initialized %s: %w", url, err)
		}
		ep.sessions = append(ep.sessions, sid)
	}
	if _, err := ep.post(callBody, ep.sessions[0]); err != nil {
		return nil, fmt.Errorf("first tools/call on %s: %w", url, err)
	}
	return ep, nil
}

func (ep *endpoint) post(body, session string) (string, error) {
	req, err := http.NewRequest(http.MethodPost, ep.url, strings.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header = ep.header.Clone()
	if session != "" {
		req.Header.Set("Mcp-Session-Id", session)
		req.Header.Set("MCP-Protocol-Version", "2025-06-18")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, data)
	}
	if strings.Contains(body, `"tools/call"`) && !callSucceeded(data) {
		return "", fmt.Errorf("tool call failed: %s", data)
	}
	return resp.Header.Get("Mcp-Session-Id"), nil
}

// targeter hands out tools/call requests round robin over the sessions, so
// concurrent calls rarely share one.
func (ep *endpoint) targeter() vegeta.Targeter {
	var next atomic.Uint64
	body := []byte(callBody)
	return func(t *vegeta.Target) error {
		sid := ep.sessions[int(next.Add(1))%len(ep.sessions)]
		t.Method, t.URL, t.Body = http.MethodPost, ep.url, body
		t.Header = ep.header.Clone()
		if sid != "" {
			t.Header.Set("Mcp-Session-Id", sid)
			t.Header.Set("MCP-Protocol-Version", "2025-06-18")
		}
		return nil
	}
}

// callSucceeded reads a tools/call answer (JSON or SSE) as a client would:
// a result that is not a tool error.
func callSucceeded(body []byte) bool {
	return bytes.Contains(body, []byte(`"result"`)) && !bytes.Contains(body, []byte(`"isError":true`))
}

// point is what one attack measured, over successful calls only.
type point struct {
	sent, ok      int
	p50, p90, p99 time.Duration
	okPerSecond   float64
	firstError    string
}

// attack runs one open-loop attack (rate > 0) or a closed saturation run
// with workers (rate == 0) and measures it.
func attack(ep *endpoint, rate, workers int, d time.Duration) point {
	opts := []func(*vegeta.Attacker){vegeta.Timeout(10 * time.Second), vegeta.MaxBody(1 << 16), vegeta.KeepAlive(true)}
	pacer := vegeta.Pacer(vegeta.ConstantPacer{Freq: rate, Per: time.Second})
	if rate == 0 {
		opts = append(opts, vegeta.Workers(uint64(workers)), vegeta.MaxWorkers(uint64(workers)))
		pacer = vegeta.ConstantPacer{}
	}
	atk := vegeta.NewAttacker(opts...)
	var lat []time.Duration
	p := point{}
	start := time.Now()
	for r := range atk.Attack(ep.targeter(), pacer, d, "bench") {
		p.sent++
		if r.Code == http.StatusOK && r.Error == "" && callSucceeded(r.Body) {
			lat = append(lat, r.Latency)
		} else if p.firstError == "" {
			p.firstError = fmt.Sprintf("%d %s %.200s", r.Code, r.Error, r.Body)
		}
	}
	p.ok = len(lat)
	p.okPerSecond = float64(p.ok) / time.Since(start).Seconds()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	p.p50, p.p90, p.p99 = quantile(lat, 0.50), quantile(lat, 0.90), quantile(lat, 0.99)
	return p
}

func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

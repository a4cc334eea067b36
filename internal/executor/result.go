package executor

import (
	"net/http"

	"github.com/caddy-nomos/nomos/audit"
	"github.com/caddy-nomos/nomos/internal/redact"
	"github.com/caddy-nomos/nomos/policy"
)

// Result is what an executor did. Its text fields are redacted and capped.
type Result struct {
	// Output is the fs.read content, the HTTP response body, or a summary
	// of what fs.write and repo.apply_patch changed.
	Output string `json:"output,omitempty"`
	// Truncated is set when any output was cut by a cap.
	Truncated bool `json:"truncated,omitempty"`
	// BytesWritten counts the bytes fs.write and repo.apply_patch wrote.
	BytesWritten int64  `json:"bytes_written,omitempty"`
	Stdout       string `json:"stdout,omitempty"`
	Stderr       string `json:"stderr,omitempty"`
	// ExitCode is set for process.exec; -1 when the process was killed.
	ExitCode *int `json:"exit_code,omitempty"`
	// StatusCode is the final HTTP status of net.http_request.
	StatusCode int `json:"status_code,omitempty"`
	// CredentialLeaseID is the lease secrets.checkout created.
	CredentialLeaseID string `json:"credential_lease_id,omitempty"`
	// Classification is SUCCESS, OUTPUT_LIMIT (a cap cut output),
	// EXECUTION_ERROR (the command exited non-zero) or EXEC_TIMEOUT.
	Classification string `json:"classification"`
	// Metadata is executor evidence for the audit event. It holds no raw
	// output and no secret value; its strings are redacted.
	Metadata map[string]any `json:"metadata,omitempty"`
}

// finish redacts every output, then applies the config caps and then the
// obligation caps. Redaction comes first: a cut could otherwise leave a
// fragment of a secret that no pattern recognizes.
func (e *Executor) finish(res *Result, red *redact.Redactor, ob policy.Obligations) *Result {
	maxBytes, maxLines := e.caps(ob)
	cut := false
	for _, s := range []*string{&res.Output, &res.Stdout, &res.Stderr} {
		var c bool
		*s, c = capOutput(red.String(*s), maxBytes, maxLines)
		cut = cut || c
	}
	res.Truncated = res.Truncated || cut
	if res.Metadata == nil {
		res.Metadata = map[string]any{}
	}
	res.Metadata["truncated"] = res.Truncated
	res.Metadata["sandbox_profile"] = e.profile.String()
	res.Metadata = redactValue(red, res.Metadata).(map[string]any)
	if res.Classification == "" {
		res.Classification = audit.ResultSuccess
	}
	if res.Truncated && res.Classification == audit.ResultSuccess {
		res.Classification = audit.ResultOutputLimit
	}
	return res
}

// caps are the config caps narrowed by the obligation caps.
func (e *Executor) caps(ob policy.Obligations) (maxBytes, maxLines int64) {
	maxBytes, maxLines = e.cfg.MaxOutputBytes, e.cfg.MaxOutputLines
	if ob.OutputMaxBytes != nil && *ob.OutputMaxBytes >= 0 && *ob.OutputMaxBytes < maxBytes {
		maxBytes = *ob.OutputMaxBytes
	}
	if ob.OutputMaxLines != nil && *ob.OutputMaxLines >= 0 && *ob.OutputMaxLines < maxLines {
		maxLines = *ob.OutputMaxLines
	}
	return maxBytes, maxLines
}

// capOutput is redact.Cap where a zero limit, which only an obligation can
// set, means no output at all rather than no limit.
func capOutput(s string, maxBytes, maxLines int64) (string, bool) {
	if maxBytes == 0 || maxLines == 0 {
		return "", s != ""
	}
	return redact.Cap(s, maxBytes, maxLines)
}

// redactValue redacts the strings inside metadata values.
func redactValue(red *redact.Redactor, v any) any {
	switch t := v.(type) {
	case string:
		return red.String(t)
	case []string:
		out := make([]string, len(t))
		for i, s := range t {
			out[i] = red.String(s)
		}
		return out
	case http.Header:
		return red.Header(t)
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, x := range t {
			out[k] = redactValue(red, x)
		}
		return out
	case []map[string]any:
		out := make([]map[string]any, len(t))
		for i, m := range t {
			out[i] = redactValue(red, m).(map[string]any)
		}
		return out
	}
	return v
}

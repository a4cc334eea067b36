// Package service is the Nomos decision pipeline shared by every front door:
// decode and validate, normalize, policy, approvals, audit, execute, redact.
// The HTTP action API and the MCP gateway are thin adapters around it; it
// knows nothing of Caddy.
package service

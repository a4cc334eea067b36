// Package credentials owns the credential broker: configured secrets, and
// short-lived leases on them bound to one principal, agent, environment and
// trace. A checkout hands out only a lease id; the secret value leaves the
// broker only through Materialize, into a child process environment, and
// through Values, for exact-value redaction.
package credentials

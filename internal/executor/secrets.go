package executor

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/caddy-nomos/nomos/internal/credentials"
	"github.com/caddy-nomos/nomos/policy"
	"github.com/caddy-nomos/nomos/policy/action"
)

const secretResourcePrefix = "secret://"

// secretsCheckout leases the secret the resource names to the caller's
// identity and trace. Only the lease id is returned.
func (e *Executor) secretsCheckout(_ context.Context, a *action.Action, _ policy.Decision) (*Result, *Error) {
	var secretID string
	if xerr := decodeParams(a.Params, field{name: "secret_id", dst: &secretID, required: true}); xerr != nil {
		return nil, xerr
	}
	name, xerr := secretName(a.Resource)
	if xerr != nil {
		return nil, xerr
	}
	// Policy matched the resource, so the resource decides what is leased;
	// a different secret_id would check out a secret policy never saw.
	if strings.ToLower(secretID) != name {
		return nil, fail(CodeInvalidParams, "params: secret_id must name the resource's secret")
	}
	if e.broker == nil {
		return nil, fail(CodeCredentialsUnavailable, "no credential broker is configured")
	}
	lease, expires, err := e.broker.Checkout(name, binding(a))
	if err != nil {
		return nil, checkoutError(err)
	}
	return &Result{
		CredentialLeaseID: lease,
		Metadata: map[string]any{
			"secret_id":            name,
			"credential_lease_ids": []string{lease},
			"lease_expires_at":     expires.UTC().Format(time.RFC3339Nano),
		},
	}, nil
}

// secretName is the name segment of secret://<host>/<name>.
func secretName(resource string) (string, *Error) {
	rest, ok := strings.CutPrefix(resource, secretResourcePrefix)
	_, name, found := strings.Cut(rest, "/")
	if !ok || !found || name == "" {
		return "", fail(CodeInvalidResource, "resource must be secret://<host>/<name>")
	}
	return name, nil
}

func checkoutError(err error) *Error {
	if errors.Is(err, credentials.ErrUnknownSecret) {
		return fail(CodeNotFound, "unknown secret")
	}
	return fail(CodeCredentialsUnavailable, "%v", err)
}

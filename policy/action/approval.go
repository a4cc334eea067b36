package action

import (
	"encoding/json"
	"fmt"
)

// approvalExtension is the context.extensions key an agent uses to bind a
// retry to an approval.
const approvalExtension = "approval"

// ApprovalID returns the approval id the agent attached to a, read strictly
// from context.extensions.approval = {"approval_id": "..."}. It returns ""
// when there is no approval extension, and an error wrapping ErrValidation
// when the extension is not exactly that shape: a lenient read could let an
// agent smuggle a second id past whoever checks the first.
func ApprovalID(a *Action) (string, error) {
	if a == nil {
		return "", validationError("approval extension", "action is nil")
	}
	raw, ok := a.Extensions[approvalExtension]
	if !ok {
		return "", nil
	}
	id, msg := parseApproval(raw)
	if msg != "" {
		return "", validationError("approval extension", msg)
	}
	return id, nil
}

// parseApproval returns the approval id, or a problem description.
func parseApproval(raw []byte) (string, string) {
	fields, err := readFields(raw)
	if err == errNotObject {
		return "", "approval must be a JSON object"
	}
	if err != nil {
		return "", err.Error()
	}
	id, found := "", false
	for _, f := range fields {
		if f.key != "approval_id" {
			return "", unknownField(f.key, []string{"approval_id"})
		}
		if !isJSONString(f.raw) || json.Unmarshal(f.raw, &id) != nil {
			return "", "approval_id must be a string"
		}
		found = true
	}
	if !found {
		return "", `missing field "approval_id"`
	}
	if !ValidID(id) {
		return "", fmt.Sprintf("approval_id must match %s", IDPattern)
	}
	return id, ""
}

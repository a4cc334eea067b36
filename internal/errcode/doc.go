// Package errcode is the one list of the codes in the stable HTTP error
// shape {"decision":"DENY","reason":"<code>: <message>"} that every Nomos
// front door (nomos_api, nomos_mcp, nomos_guard) answers with, so a code
// means the same thing whichever door wrote it.
package errcode

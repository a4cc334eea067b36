// Package ids makes the identifiers Nomos generates for events and actions.
//
// An id leads with its creation time so that ids made one after another
// sort together: the sqlite audit file indexes event_id, trace_id and
// action_id, and a B-tree index fed random keys touches a random leaf
// page on every insert, which stops fitting in the page cache once the
// file is large. Time-ordered keys land at the index's right edge.
package ids

import (
	"crypto/rand"
	"encoding/hex"
	"time"
)

// New returns 32 lowercase hex characters: the Unix time in milliseconds
// as 48 bits, big-endian, then 80 random bits. The random part keeps ids
// unique without coordination between processes and replicas (a
// collision needs two ids in the same millisecond with the same 80 bits),
// and the time part is what a reader of the id learns: when it was made.
func New() string {
	return at(time.Now())
}

func at(t time.Time) string {
	var b [16]byte
	ms := uint64(t.UnixMilli())
	for i := range 6 {
		b[i] = byte(ms >> (40 - 8*i))
	}
	_, _ = rand.Read(b[6:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

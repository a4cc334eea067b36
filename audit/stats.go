package audit

// RecorderStats counts what a Recorder did with the events it was given.
type RecorderStats struct {
	// Events were stored by every sink.
	Events uint64
	// Dropped were refused: Record returned an error, so the caller
	// treated the event as not audited.
	Dropped uint64
}

// Stats returns the counts since the Recorder was created.
func (r *Recorder) Stats() RecorderStats {
	return RecorderStats{Events: r.events.Load(), Dropped: r.dropped.Load()}
}

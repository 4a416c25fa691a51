package v1import

import "errors"

// Errors of Import. Wrapped with the file; test with errors.Is. Immutable.
var (
	// ErrConfig: an invalid Config or missing client.
	ErrConfig = errors.New("v1import: invalid config")
	// ErrPublish: the server did not store an event or command (its
	// PubAck failed); the import stops and a re-run resumes at the last
	// checkpoint.
	ErrPublish = errors.New("v1import: publish failed")
	// ErrNotSameFile is returned by Import for a file whose first line is
	// that of a file imported before (so it has that file's id and
	// checkpoint) but whose content up to the checkpoint differs: it is
	// another log, not that one grown, and importing it would reuse the
	// other file's event ids (and be dropped as duplicates).
	ErrNotSameFile = errors.New("v1import: not the file imported before under this id")
	// ErrTruncated is returned by Import for a file shorter than what was
	// imported from it before (its checkpoint): truncated or replaced by
	// another log with the same first line.
	ErrTruncated = errors.New("v1import: the file is shorter than what was imported from it")
	// ErrInterrupted is returned by Import when its context ended (with
	// the context's error): how far it read, and the checkpoint a re-run
	// continues from.
	ErrInterrupted = errors.New("v1import: import interrupted")
)

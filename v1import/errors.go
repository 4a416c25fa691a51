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
)

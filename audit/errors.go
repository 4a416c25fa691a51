package audit

import "errors"

// Errors returned by this package, wrapped with details; test with errors.Is.
// The sentinels are immutable and safe to share between goroutines.
var (
	// ErrConfig is returned by Config.Validate and New for an invalid
	// configuration, and by Run when the CODI_AUDIT stream allows messages
	// too large to commit in one store transaction.
	ErrConfig = errors.New("audit: invalid config")

	// ErrRunning is returned by Run when the Service is already running or
	// has run: a Service runs once.
	ErrRunning = errors.New("audit: service already ran")

	// ErrBadRequest is returned by the Client when the service rejected a
	// request as malformed (micro error code 400), and by Query and Verify
	// for arguments that cannot be sent.
	ErrBadRequest = errors.New("audit: bad request")

	// ErrRemote is returned by the Client when the service failed to answer
	// a well-formed request (micro error code 500 or 503); the error text
	// carries the service's description.
	ErrRemote = errors.New("audit: service error")

	// ErrBadRecord is returned for bytes that are not a stored record: they
	// do not decode, or do not end with the hash member.
	ErrBadRecord = errors.New("audit: malformed record")

	// ErrBadCheckpoint is returned for a signed checkpoint that does not
	// verify with the given key or is not a codi2 audit checkpoint, and for
	// a verifier key that does not parse.
	ErrBadCheckpoint = errors.New("audit: bad checkpoint")

	// ErrChanged is returned by Client.Query when a record that did not fit
	// in one reply changed while it was read in parts (retention removed
	// it). Asking again gives a consistent answer.
	ErrChanged = errors.New("audit: record changed while reading")
)

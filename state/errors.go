package state

import "errors"

// Errors returned by the service and the client. They are wrapped with the
// subject, sequence or server message; test for them with errors.Is. The
// sentinels are immutable and safe to share between goroutines.
var (
	// ErrConfig is returned by Config.Validate and New for an invalid
	// configuration or argument.
	ErrConfig = errors.New("state: invalid config")
	// ErrRunning is returned by Run when the Service is already running or
	// has run before: a Service runs once.
	ErrRunning = errors.New("state: service already ran")
	// ErrNotFound is returned by Client.Get for a record that does not exist
	// (never created, deleted or expired): the service's 404.
	ErrNotFound = errors.New("state: not found")
	// ErrConflict is returned by Client.Apply and its helpers when the
	// service rejected the command because expect_rev did not match (or the
	// record to delete does not exist). The Event carries current_rev.
	ErrConflict = errors.New("state: conflict")
	// ErrBadRequest is returned when the service rejected a command or a
	// request as malformed (reason bad_request, or a 400 reply).
	ErrBadRequest = errors.New("state: bad request")
	// ErrTimeout is returned by Client.Get when the service did not reach
	// min_seq within its wait bound (a 504 reply), and by Client.Apply when
	// the outcome event did not arrive before the context ended; the command
	// may still be applied, so read it back with Get and min_seq.
	ErrTimeout = errors.New("state: timed out")
	// ErrUnavailable is returned when the service answered 503: it is
	// shutting down or its store failed.
	ErrUnavailable = errors.New("state: service unavailable")
	// ErrCorrupt is returned for a stored record that fails its checksum
	// or does not decode: the error names the record. Client.Apply returns
	// it for a command rejected with reason "corrupt"; a get or list of it
	// is answered 500 with the same text (ErrRemote on the client).
	ErrCorrupt = errors.New("state: stored record is corrupt")
	// ErrRemote is returned for any other error reply from the service.
	ErrRemote = errors.New("state: service error")
)

package boltkv

import "errors"

// Errors specific to the embedded backend; every other error matches a kv
// sentinel. Compare with errors.Is.
var (
	// ErrLocked is returned by Open when another process holds the file lock
	// for longer than Options.Timeout. bbolt allows one process per file.
	ErrLocked = errors.New("boltkv: database file is locked by another process")

	// ErrTxnDone is returned by a transaction used after the function it was
	// passed to has returned, which is a bug in the caller.
	ErrTxnDone = errors.New("boltkv: transaction used after its function returned")
)

package v1sim

import "errors"

// Errors returned by this package, wrapped with identifying detail; compare
// with errors.Is, which is safe for concurrent use. Never reassign them.
var (
	// ErrInvalidConfig reports a Config that Validate rejects.
	ErrInvalidConfig = errors.New("v1sim: invalid config")
	// ErrNotFound reports that the log holds no parseable STATUS_UPDATE for
	// a task.
	ErrNotFound = errors.New("v1sim: no status update for task")
	// ErrUnsupported reports a Mode the platform cannot run: LockedFsync
	// needs flock(2).
	ErrUnsupported = errors.New("v1sim: mode not supported on this platform")
)

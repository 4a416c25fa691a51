package bus

import "errors"

// Errors returned by the bus. They are wrapped with details; test with
// errors.Is.
var (
	// ErrConfig is returned by Config.Validate for an invalid configuration.
	ErrConfig = errors.New("bus: invalid config")
	// ErrStart is returned when the embedded server cannot start: the port is
	// in use, the data directory is not writable, or it is not ready in time.
	ErrStart = errors.New("bus: server did not start")
	// ErrPayloadTooLarge is returned for a message larger than the server's
	// maximum payload.
	ErrPayloadTooLarge = errors.New("bus: payload too large")
	// ErrDiskLimits is returned when the stream limits do not fit the disk
	// or the NATS server's storage limits; the error names the numbers.
	ErrDiskLimits = errors.New("bus: stream limits do not fit")
	// ErrAnotherInstance is returned by Start with Config.Exclusive when
	// another codi2 instance already serves the streams on the same NATS;
	// the error names it.
	ErrAnotherInstance = errors.New("bus: another codi2 instance serves these streams")
	// ErrRemote is returned by Agent.Call when the called agent answered
	// with an error.
	ErrRemote = errors.New("bus: remote error")
)

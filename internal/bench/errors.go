package bench

import "errors"

// Errors returned by Run and Config.Validate. They are wrapped with details;
// test for them with errors.Is. The sentinels are immutable and safe to share
// between goroutines.
var (
	// ErrConfig is returned for a configuration that cannot run.
	ErrConfig = errors.New("bench: invalid config")
	// ErrNoService is returned when a state or audit service does not answer
	// its status request: with Config.NATSURL the bench measures a running
	// codi2 and does not start one.
	ErrNoService = errors.New("bench: service not answering")
)

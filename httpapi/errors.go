package httpapi

import "errors"

// Errors returned by this package, wrapped with details; test with
// errors.Is. The sentinels are immutable and safe to share.
var (
	// ErrConfig is returned by New for an unusable Config.
	ErrConfig = errors.New("httpapi: invalid config")
	// ErrBadParam is the error of a request whose query parameters or path
	// cannot be turned into a NATS request: answered 400.
	ErrBadParam = errors.New("bad parameter")
	// ErrUnauthorized is the error of a login whose credentials do not
	// hold or do not allow the dashboard: answered 401.
	ErrUnauthorized = errors.New("not authorized")
)

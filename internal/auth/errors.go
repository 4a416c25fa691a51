package auth

import "errors"

// Errors returned by this package; callers use errors.Is.
var (
	// ErrBadRole: a role other than agent, observer or admin.
	ErrBadRole = errors.New("auth: unknown role")
	// ErrBadID: an agent id that is not a valid agent token.
	ErrBadID = errors.New("auth: invalid agent id")
	// ErrUnknownAgent: revoke of an id that was never added.
	ErrUnknownAgent = errors.New("auth: unknown agent")
	// ErrStore: the key or registry files cannot be read or written.
	ErrStore = errors.New("auth: key store")
)

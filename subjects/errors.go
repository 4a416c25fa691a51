package subjects

import "errors"

// Errors returned by the builders and Parse. They are wrapped with the
// offending value; test for them with errors.Is.
var (
	// ErrBadToken is returned for a token that is empty, longer than
	// MaxTokenLen bytes, not UTF-8, or holds whitespace, a control character,
	// '.', '*' or '>'.
	ErrBadToken = errors.New("subjects: invalid token")
	// ErrBadKind is returned for a state kind outside [a-z][a-z0-9_-]{0,31}.
	ErrBadKind = errors.New("subjects: invalid kind")
	// ErrReserved is returned when the reserved target "all" is used as an
	// agent's own id.
	ErrReserved = errors.New("subjects: reserved id")
	// ErrBadEscape is returned by Unescape for a malformed %XX sequence.
	ErrBadEscape = errors.New("subjects: invalid escape")
	// ErrUnknown is returned by Parse for a subject that is not in the contract.
	ErrUnknown = errors.New("subjects: not a codi2 subject")
)

package strictjson

import "errors"

// Errors returned by Check and Decode, wrapped with the details; test with
// errors.Is. Every one means the input is refused. Safe to share.
var (
	// ErrInvalid is returned for input that is not exactly one JSON
	// value: a syntax error, empty input, or data after the value.
	ErrInvalid = errors.New("invalid JSON")
	// ErrNotUTF8 is returned for input that is not valid UTF-8.
	ErrNotUTF8 = errors.New("JSON is not valid UTF-8")
	// ErrTooDeep is returned for input nested deeper than the limit.
	ErrTooDeep = errors.New("JSON nested too deep")
	// ErrDuplicate is returned for an object that names a member twice.
	ErrDuplicate = errors.New("duplicate member")
	// ErrUnknown is returned by Decode for a member the target does not
	// have.
	ErrUnknown = errors.New("unknown member")
	// ErrType is returned by Decode for a member whose value has the wrong
	// type (an array where an object belongs, a fraction for an integer).
	ErrType = errors.New("wrong type")
)

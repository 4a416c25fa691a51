package timeparse

import "errors"

// ErrBadTime is returned by Parse for text that is neither an RFC 3339 time,
// "now", nor a relative duration. Safe to share.
var ErrBadTime = errors.New("not a time")

package boltkv

import "errors"

// ErrLocked is returned by Open when another process holds the file lock for
// longer than Options.Timeout: bbolt allows one process per file. It is the
// only error specific to this backend; every other error matches a kv
// sentinel. Compare with errors.Is.
var ErrLocked = errors.New("boltkv: database file is locked by another process")

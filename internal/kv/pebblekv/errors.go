package pebblekv

import "errors"

// ErrLocked is returned by Open when the directory's LOCK file is held,
// by another process or by a Store of this process that is still open:
// pebble allows one open database per directory. It is the only error
// specific to this backend; every other error matches a kv sentinel (a
// failed fsync is returned as it is, wrapped). Compare with errors.Is.
var ErrLocked = errors.New("pebblekv: database directory is locked by another store")

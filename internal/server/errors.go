package server

import "errors"

// Errors returned by Start. They are wrapped with details (the directory,
// the holder, the numbers); test with errors.Is.
var (
	// ErrDataDirLocked is returned when another process holds the data
	// directory's lock; the error names that process's pid.
	ErrDataDirLocked = errors.New("server: data directory in use")
)

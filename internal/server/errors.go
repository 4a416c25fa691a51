package server

import "errors"

// Errors returned by Start. They are wrapped with details (the directory,
// the holder, the numbers); test with errors.Is.
var (
	// ErrDataDirLocked is returned when another process holds the data
	// directory's lock; the error names that process's pid.
	ErrDataDirLocked = errors.New("server: data directory in use")

	// ErrOtherStore is returned when the data directory holds the files of
	// the embedded engine other than Config.Store (state.db, audit.db or
	// store.db for bolt, pebble/ for pebble), or of the other bolt layout
	// (store.db for the two-file default, state.db or audit.db for
	// Config.InlineAudit); the error names them.
	ErrOtherStore = errors.New("server: data directory holds another store's data")
)

//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly || illumos)

package v1sim

import "os"

// flockSupported reports whether LockedFsync can run here.
const flockSupported = false

// flock is never called where flockSupported is false.
func flock(*os.File, bool) error { return ErrUnsupported }

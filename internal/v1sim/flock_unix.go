//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly || illumos

package v1sim

import (
	"errors"
	"os"
	"syscall"
)

// flockSupported reports whether LockedFsync can run here.
const flockSupported = true

// flock takes (exclusive) or releases an advisory flock(2) lock on f's open
// file description, retrying when a signal such as the Go runtime's
// preemption signal interrupts the wait.
func flock(f *os.File, exclusive bool) error {
	how := syscall.LOCK_UN
	if exclusive {
		how = syscall.LOCK_EX
	}
	for {
		err := syscall.Flock(int(f.Fd()), how)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

package server

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// LockFile is the file in the data directory whose flock(2) makes one
// process the directory's owner. It holds the owner's pid (decimal, one
// line) for the error a second process reports.
const LockFile = "LOCK"

// dirLock is an exclusive flock on DataDir/LOCK, held for the life of the
// process's Server. The kernel drops it when the process dies, kill -9
// included, so a stale file never blocks a restart.
type dirLock struct {
	f *os.File
}

// lockDataDir takes the exclusive lock on dir, which must exist, before
// anything else in it is opened. When another process holds it, the error
// wraps ErrDataDirLocked and names that process's pid as it wrote it.
func lockDataDir(dir string) (*dirLock, error) {
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("server: data directory lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder := readHolder(f)
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is locked by %s; stop that codi2 or use another --data", ErrDataDirLocked, dir, holder)
		}
		return nil, fmt.Errorf("server: data directory lock %s: %w", path, err)
	}
	// The lock is ours: record who holds it.
	pid := strconv.Itoa(os.Getpid()) + "\n"
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt([]byte(pid), 0)
	}
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("server: data directory lock %s: %w", path, err)
	}
	return &dirLock{f: f}, nil
}

// readHolder describes the process named in a held lock file.
func readHolder(f *os.File) string {
	b := make([]byte, 32)
	n, _ := f.ReadAt(b, 0)
	pid := strings.TrimSpace(string(b[:n]))
	if _, err := strconv.Atoi(pid); err != nil {
		return "another process (its pid is not recorded yet)"
	}
	return "process " + pid
}

// release drops the lock. The file stays: removing it would let a third
// process lock a new file while a second still holds the old one open.
func (l *dirLock) release() {
	if l != nil {
		_ = l.f.Close()
	}
}

package server

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Issue 11, input 1: a second server on a data directory in use is refused
// before it opens anything there, naming the holder's pid.
func TestStart_DataDirLocked(t *testing.T) {
	dir := t.TempDir()
	s, err := Start(context.Background(), Config{DataDir: dir, NATSListen: "127.0.0.1:-1"}, zerolog.Nop())
	require.NoError(t, err)
	_, err = Start(context.Background(), Config{DataDir: dir, NATSListen: "127.0.0.1:-1"}, zerolog.Nop())
	require.ErrorIs(t, err, ErrDataDirLocked)
	assert.Contains(t, err.Error(), "locked by process "+strconv.Itoa(os.Getpid()))
	assert.Contains(t, err.Error(), dir)
	require.NoError(t, s.Stop())

	// Released at Stop: the directory starts again.
	s, err = Start(context.Background(), Config{DataDir: dir, NATSListen: "127.0.0.1:-1"}, zerolog.Nop())
	require.NoError(t, err)
	require.NoError(t, s.Stop())
}

func TestLockDataDir(t *testing.T) {
	dir := t.TempDir()
	// A holder that has not written its pid yet.
	f, err := os.OpenFile(filepath.Join(dir, LockFile), os.O_RDWR|os.O_CREATE, 0o640)
	require.NoError(t, err)
	require.NoError(t, syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB))
	_, err = lockDataDir(dir)
	require.ErrorIs(t, err, ErrDataDirLocked)
	assert.Contains(t, err.Error(), "its pid is not recorded yet")
	require.NoError(t, f.Close())

	// A stale file (its holder died) does not block: the pid is rewritten.
	require.NoError(t, os.WriteFile(filepath.Join(dir, LockFile), []byte("99999999\n"), 0o640))
	l, err := lockDataDir(dir)
	require.NoError(t, err)
	b, err := os.ReadFile(filepath.Join(dir, LockFile))
	require.NoError(t, err)
	assert.Equal(t, strconv.Itoa(os.Getpid())+"\n", string(b))
	l.release()
	(*dirLock)(nil).release()

	_, err = lockDataDir(filepath.Join(dir, "missing"))
	require.ErrorContains(t, err, "data directory lock")
}

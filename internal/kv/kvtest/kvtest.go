package kvtest

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/internal/kv/boltkv"
	"github.com/codi2/codi2/internal/kv/pebblekv"
)

// NewBolt opens a real boltkv store on a fresh file in t.TempDir() and closes
// it when the test ends (a store the test closed itself is fine). Commits are
// fsynced as in production. Safe to call from parallel tests; each call gets
// its own file.
func NewBolt(t testing.TB) kv.Store {
	t.Helper()
	s, err := boltkv.Open(filepath.Join(t.TempDir(), "kv.db"), boltkv.Options{
		// Large enough that tests never remap, so a test may hold a View
		// open while it waits for an Update to commit.
		InitialMmapSize: 64 << 20,
	})
	require.NoError(t, err)
	t.Cleanup(func() {
		if err := s.Close(); err != nil && !errors.Is(err, kv.ErrClosed) {
			t.Errorf("close store: %v", err)
		}
	})
	return s
}

// NewPebble opens a real pebblekv store in a fresh directory under
// t.TempDir() and closes it when the test ends (a store the test closed
// itself is fine). Commits are fsynced as in production. Safe to call from
// parallel tests; each call gets its own directory.
func NewPebble(t testing.TB) kv.AsyncStore {
	t.Helper()
	s, err := pebblekv.Open(filepath.Join(t.TempDir(), "pebble"), pebblekv.Options{})
	require.NoError(t, err)
	t.Cleanup(func() {
		if err := s.Close(); err != nil && !errors.Is(err, kv.ErrClosed) {
			t.Errorf("close store: %v", err)
		}
	})
	return s
}

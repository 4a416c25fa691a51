package pebblekv_test

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/internal/kv/kvtest"
	"github.com/codi2/codi2/internal/kv/pebblekv"
)

// openTemp opens a store in a fresh directory and closes it when the test
// ends (a store the test closed itself is fine).
func openTemp(t testing.TB, opts pebblekv.Options) *pebblekv.Store {
	t.Helper()
	s, err := pebblekv.Open(filepath.Join(t.TempDir(), "pebble"), opts)
	require.NoError(t, err)
	t.Cleanup(func() {
		if err := s.Close(); err != nil && !errors.Is(err, kv.ErrClosed) {
			t.Errorf("close store: %v", err)
		}
	})
	return s
}

func TestStore_Conformance(t *testing.T) {
	kvtest.Run(t, func(t *testing.T) kv.Store { return openTemp(t, pebblekv.Options{}) })
}

func TestStore_AsyncConformance(t *testing.T) {
	kvtest.RunAsync(t, func(t *testing.T) kv.AsyncStore { return openTemp(t, pebblekv.Options{}) })
}

package main

import (
	"path/filepath"
	"testing"

	"github.com/codi2/codi2/internal/kv/boltkv"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestOpenStores_Locked(t *testing.T) {
	for _, file := range []string{"state.db", "audit.db"} {
		t.Run(file, func(t *testing.T) {
			dir := t.TempDir()
			held, err := boltkv.Open(filepath.Join(dir, file), boltkv.Options{})
			require.NoError(t, err)
			defer held.Close()
			_, err = openStores(serveConfig{Store: "bolt"}, dir, zerolog.Nop())
			require.ErrorIs(t, err, boltkv.ErrLocked)
			assert.Contains(t, err.Error(), file)
		})
	}
	// After a failure nothing stays open: both files can be opened again.
	dir := t.TempDir()
	st, err := openStores(serveConfig{Store: "bolt"}, dir, zerolog.Nop())
	require.NoError(t, err)
	st.close(zerolog.Nop())
	st, err = openStores(serveConfig{Store: "bolt"}, dir, zerolog.Nop())
	require.NoError(t, err)
	st.close(zerolog.Nop())
}

package server

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/codi2/codi2/internal/kv/boltkv"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStart_StoreLocked(t *testing.T) {
	for _, file := range []string{"state.db", "audit.db", "store.db"} {
		t.Run(file, func(t *testing.T) {
			dir := t.TempDir()
			held, err := boltkv.Open(filepath.Join(dir, file), boltkv.Options{})
			require.NoError(t, err)
			inline := file == "store.db" // InlineAudit's one file
			_, err = Start(context.Background(), Config{DataDir: dir, NATSListen: "127.0.0.1:-1", InlineAudit: inline}, zerolog.Nop())
			require.ErrorIs(t, err, boltkv.ErrLocked)
			assert.Contains(t, err.Error(), file)
			require.NoError(t, held.Close())

			// A failed start left nothing open: the same directory starts.
			s, err := Start(context.Background(), Config{DataDir: dir, NATSListen: "127.0.0.1:-1", InlineAudit: inline}, zerolog.Nop())
			require.NoError(t, err)
			require.NoError(t, s.Stop())
		})
	}
}

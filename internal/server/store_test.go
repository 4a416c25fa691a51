package server

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/codi2/codi2/internal/kv/boltkv"
	"github.com/codi2/codi2/internal/kv/pebblekv"
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

// A data directory holding one embedded engine's data refuses the other,
// naming what it found, rather than starting an empty store beside it;
// nothing is created and nothing is left open.
func TestStart_OtherEngineRefused(t *testing.T) {
	tests := []struct {
		name   string
		store  string
		inline bool
		have   []string
		want   []string
	}{
		{"pebble over bolt", StorePebble, false, []string{"state.db", "audit.db"}, []string{"state.db, audit.db", "the bolt store", "--store bolt"}},
		{"pebble over inline bolt", StorePebble, false, []string{"store.db"}, []string{"store.db", "--store bolt"}},
		{"bolt over pebble", StoreBolt, false, []string{PebbleDir + "/"}, []string{"holds pebble", "the pebble store", "--store pebble"}},
		{"inline bolt over pebble", StoreBolt, true, []string{PebbleDir + "/"}, []string{"holds pebble", "--store pebble"}},
		{"two-file bolt over inline bolt", StoreBolt, false, []string{"store.db"}, []string{"holds store.db", "one file (store.db, InlineAudit)", "start empty"}},
		{"inline bolt over two-file bolt", StoreBolt, true, []string{"state.db", "audit.db"}, []string{"holds state.db, audit.db", "two files (state.db, audit.db)"}},
		{"inline bolt over a lone audit.db", StoreBolt, true, []string{"audit.db"}, []string{"holds audit.db"}},
		// A breaker's inputs: with both engines' data every --store was
		// sent to the other one, and a plain file named pebble was called
		// the pebble store's data.
		{"bolt over both", StoreBolt, false, []string{"state.db", "audit.db", PebbleDir + "/"}, []string{"holds both the bolt store's data (state.db, audit.db) and the pebble store's (pebble/)", "will not choose"}},
		{"pebble over both", StorePebble, false, []string{"store.db", PebbleDir + "/"}, []string{"holds both the bolt store's data (store.db)"}},
		{"detected over both", "", false, []string{"state.db", PebbleDir + "/"}, []string{"holds both"}},
		{"pebble over a file named pebble", StorePebble, false, []string{PebbleDir}, []string{"is a file, not the pebble store's directory"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, name := range tt.have {
				if name[len(name)-1] == '/' {
					require.NoError(t, os.Mkdir(filepath.Join(dir, name), 0o755))
					continue
				}
				require.NoError(t, os.WriteFile(filepath.Join(dir, name), nil, 0o600))
			}
			cfg := Config{DataDir: dir, NATSListen: "127.0.0.1:-1", Store: tt.store, InlineAudit: tt.inline}
			_, err := Start(context.Background(), cfg, zerolog.Nop())
			require.ErrorIs(t, err, ErrOtherStore)
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), w)
			}
			for _, f := range append(boltFiles, PebbleDir) {
				if !contains(tt.have, f) && !contains(tt.have, f+"/") {
					assert.NoFileExists(t, filepath.Join(dir, f), "created by a refused start")
					assert.NoDirExists(t, filepath.Join(dir, f), "created by a refused start")
				}
			}
		})
	}
}

// A plain file named pebble is not the pebble store's data: bolt starts
// beside it.
func TestStart_BoltBesideAFileNamedPebble(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, PebbleDir), []byte("notes"), 0o600))
	s, err := Start(context.Background(), Config{DataDir: dir, NATSListen: "127.0.0.1:-1"}, zerolog.Nop())
	require.NoError(t, err)
	assert.Equal(t, StoreBolt, s.Store())
	require.NoError(t, s.Stop())
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// A pebble directory held by another store fails the start with
// pebblekv.ErrLocked, naming the directory, and leaves nothing open.
func TestStart_PebbleLocked(t *testing.T) {
	dir := t.TempDir()
	held, err := pebblekv.Open(filepath.Join(dir, PebbleDir), pebblekv.Options{})
	require.NoError(t, err)
	cfg := Config{DataDir: dir, NATSListen: "127.0.0.1:-1", Store: StorePebble}
	_, err = Start(context.Background(), cfg, zerolog.Nop())
	require.ErrorIs(t, err, pebblekv.ErrLocked)
	assert.Contains(t, err.Error(), PebbleDir)
	require.NoError(t, held.Close())

	s, err := Start(context.Background(), cfg, zerolog.Nop())
	require.NoError(t, err)
	require.NoError(t, s.Stop())
}

package pebblekv_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/vfs"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/internal/kv/kvtest"
	"github.com/codi2/codi2/internal/kv/pebblekv"
)

func TestOptions_Validate(t *testing.T) {
	tests := []struct {
		name    string
		opts    pebblekv.Options
		wantErr string
	}{
		{"zero", pebblekv.Options{}, ""},
		{"all set", pebblekv.Options{FS: vfs.NewMem(), Log: zerolog.Nop(), CacheSize: 1 << 20, TxnTimeout: time.Second}, ""},
		{"negative cache size", pebblekv.Options{CacheSize: -1}, "CacheSize"},
		{"negative txn timeout", pebblekv.Options{TxnTimeout: -1}, "TxnTimeout"},
		{"tuning set", pebblekv.Options{MemTableSize: 1 << 20, FilterBitsPerKey: -1, CompactionConcurrency: 2}, ""},
		{"largest memtable", pebblekv.Options{MemTableSize: pebblekv.MaxMemTableSize}, ""},
		{"negative memtable size", pebblekv.Options{MemTableSize: -1}, "MemTableSize -1 is not between 0 and 4294967295 bytes"},
		{"memtable too large", pebblekv.Options{MemTableSize: pebblekv.MaxMemTableSize + 1}, "MemTableSize"},
		{"negative compaction concurrency", pebblekv.Options{CompactionConcurrency: -1}, "CompactionConcurrency"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.opts.Validate()
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

func TestOpen_Errors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	require.NoError(t, os.WriteFile(file, []byte("x"), 0o600))
	// A database whose MANIFEST (the list of its tables) is overwritten.
	garbage := filepath.Join(dir, "garbage")
	s, err := pebblekv.Open(garbage, pebblekv.Options{})
	require.NoError(t, err)
	require.NoError(t, s.Close())
	require.NoError(t, os.WriteFile(filepath.Join(garbage, "MANIFEST-000001"), bytes.Repeat([]byte{0xAB}, 4096), 0o600))
	tests := []struct {
		name    string
		dir     string
		opts    pebblekv.Options
		wantErr string
		wantIs  error
	}{
		{"invalid options", filepath.Join(dir, "x"), pebblekv.Options{CacheSize: -1}, "negative CacheSize", nil},
		{"directory is a file", file, pebblekv.Options{}, file, nil},
		{"parent is a file", filepath.Join(file, "db"), pebblekv.Options{}, "not a directory", nil},
		{"damaged manifest", garbage, pebblekv.Options{}, garbage, kv.ErrCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := pebblekv.Open(tt.dir, tt.opts)
			require.ErrorContains(t, err, tt.wantErr)
			if tt.wantIs != nil {
				assert.ErrorIs(t, err, tt.wantIs)
			}
			assert.Nil(t, s)
		})
	}
}

// The lock is per directory, so a second Open in the same process conflicts
// just as another process would.
func TestOpen_Locked(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pebble")
	s, err := pebblekv.Open(dir, pebblekv.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })

	other, err := pebblekv.Open(dir, pebblekv.Options{})
	require.ErrorIs(t, err, pebblekv.ErrLocked)
	assert.ErrorContains(t, err, dir)
	assert.Nil(t, other)

	require.NoError(t, s.Close())
	again, err := pebblekv.Open(dir, pebblekv.Options{})
	require.NoError(t, err, "lock released by Close")
	require.NoError(t, again.Close())
}

func TestOpen_Reopen_KeepsData(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pebble")
	s, err := pebblekv.Open(dir, pebblekv.Options{})
	require.NoError(t, err)
	assert.Equal(t, dir, s.Dir())
	require.NoError(t, s.Update(t.Context(), func(tx kv.Txn) error {
		if err := tx.Set([]byte("k"), []byte("v")); err != nil {
			return err
		}
		return tx.Set([]byte("empty"), nil)
	}))
	durable, err := s.UpdateAsync(t.Context(), func(tx kv.Txn) error { return tx.Set([]byte("async"), []byte("a")) })
	require.NoError(t, err)
	require.NoError(t, durable())
	require.NoError(t, s.Close())

	s, err = pebblekv.Open(dir, pebblekv.Options{})
	require.NoError(t, err)
	defer s.Close()
	require.NoError(t, s.View(t.Context(), func(tx kv.ReadTxn) error {
		kvs, err := tx.GetRange(nil, []byte{0xff}, kv.RangeOptions{})
		require.NoError(t, err)
		require.Len(t, kvs, 3)
		assert.Equal(t, kv.KeyValue{Key: []byte("async"), Value: []byte("a")}, kvs[0])
		assert.Equal(t, "empty", string(kvs[1].Key))
		assert.NotNil(t, kvs[1].Value, "an empty value is not a missing one")
		assert.Empty(t, kvs[1].Value)
		assert.Equal(t, kv.KeyValue{Key: []byte("k"), Value: []byte("v")}, kvs[2])
		return nil
	}))
}

// The embedded backends' shared tests: its own transaction timeout, the
// wait for the writer slot, Close while writers wait, a panicking Update, a
// transaction used after its function.
func TestStore_Embedded(t *testing.T) {
	kvtest.RunEmbedded(t, func(t *testing.T, timeout time.Duration) kv.Store {
		return openTemp(t, pebblekv.Options{TxnTimeout: timeout})
	})
}

package pebblekv_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/vfs"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/internal/kv"
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

func TestStore_Update_TxnTimeout(t *testing.T) {
	s := openTemp(t, pebblekv.Options{TxnTimeout: 50 * time.Millisecond})
	err := s.Update(t.Context(), func(tx kv.Txn) error {
		require.NoError(t, tx.Set([]byte("a"), []byte("1")))
		<-time.After(60 * time.Millisecond) // outlive the transaction
		return tx.Set([]byte("b"), []byte("2"))
	})
	require.ErrorIs(t, err, kv.ErrTimeout)
	assert.NotErrorIs(t, err, context.DeadlineExceeded, "the bound came from the store, not ctx")
	assert.ErrorContains(t, err, "older than 50ms")

	durable, err := s.UpdateAsync(t.Context(), func(tx kv.Txn) error {
		require.NoError(t, tx.Set([]byte("a"), []byte("1")))
		<-time.After(60 * time.Millisecond)
		return nil
	})
	require.ErrorIs(t, err, kv.ErrTimeout, "the commit of UpdateAsync")
	assert.Nil(t, durable)

	err = s.View(t.Context(), func(tx kv.ReadTxn) error {
		<-time.After(60 * time.Millisecond)
		_, err := tx.GetRange(nil, []byte{0xff}, kv.RangeOptions{})
		return err
	})
	require.ErrorIs(t, err, kv.ErrTimeout)

	require.NoError(t, s.View(t.Context(), func(tx kv.ReadTxn) error {
		_, err := tx.Get([]byte("a"))
		assert.ErrorIs(t, err, kv.ErrNotFound, "timed-out Updates rolled back")
		return nil
	}))
}

// A context deadline shorter than the store's bound wins, and is reported as
// both kv.ErrTimeout and context.DeadlineExceeded even when the deadline is
// noticed before ctx itself reports it.
func TestStore_Update_ContextDeadlineWins(t *testing.T) {
	s := openTemp(t, pebblekv.Options{TxnTimeout: time.Hour})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Millisecond)
	defer cancel()
	err := s.Update(ctx, func(tx kv.Txn) error {
		<-ctx.Done()
		return nil
	})
	require.ErrorIs(t, err, kv.ErrTimeout)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
}

// holdWriter starts an Update that keeps the writer slot until release is
// called, and returns once the Update is inside its function.
func holdWriter(t *testing.T, s kv.Store) (release func() error) {
	t.Helper()
	inside, done := make(chan struct{}), make(chan struct{})
	result := make(chan error, 1)
	go func() {
		result <- s.Update(context.Background(), func(tx kv.Txn) error {
			close(inside)
			<-done
			return tx.Set([]byte("holder"), []byte("1"))
		})
	}()
	<-inside
	return func() error { close(done); return <-result }
}

func TestStore_Update_WaitForWriter(t *testing.T) {
	tests := []struct {
		name    string
		opts    pebblekv.Options
		ctx     func(t *testing.T) context.Context
		wantErr []error
	}{
		{
			name: "ctx deadline",
			ctx: func(t *testing.T) context.Context {
				ctx, cancel := context.WithTimeout(t.Context(), 30*time.Millisecond)
				t.Cleanup(cancel)
				return ctx
			},
			wantErr: []error{kv.ErrTimeout, context.DeadlineExceeded},
		},
		{
			name: "ctx cancelled",
			ctx: func(t *testing.T) context.Context {
				ctx, cancel := context.WithCancel(t.Context())
				time.AfterFunc(30*time.Millisecond, cancel)
				return ctx
			},
			wantErr: []error{context.Canceled},
		},
		{
			name:    "store timeout",
			opts:    pebblekv.Options{TxnTimeout: 30 * time.Millisecond},
			ctx:     func(t *testing.T) context.Context { return t.Context() },
			wantErr: []error{kv.ErrTimeout},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openTemp(t, tt.opts)
			release := holdWriter(t, s)
			called := false
			durable, err := s.UpdateAsync(tt.ctx(t), func(kv.Txn) error { called = true; return nil })
			for _, want := range tt.wantErr {
				assert.ErrorIs(t, err, want)
			}
			assert.ErrorContains(t, err, "wait for writer")
			assert.Nil(t, durable)
			assert.False(t, called)
			_ = release() // may itself time out with a short TxnTimeout
		})
	}
}

func TestStore_Close_FailsWaitingWriters(t *testing.T) {
	s := openTemp(t, pebblekv.Options{})
	release := holdWriter(t, s)
	waiting := make(chan error, 1)
	go func() {
		waiting <- s.Update(context.Background(), func(kv.Txn) error { return nil })
	}()
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	require.ErrorIs(t, <-waiting, kv.ErrClosed)
	require.NoError(t, release(), "the running Update still commits")
	require.NoError(t, <-closed)
}

func TestStore_Update_PanicReleasesWriter(t *testing.T) {
	s := openTemp(t, pebblekv.Options{})
	assert.Panics(t, func() {
		_ = s.Update(t.Context(), func(tx kv.Txn) error {
			_ = tx.Set([]byte("a"), []byte("1"))
			panic("boom")
		})
	})
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	require.NoError(t, s.Update(ctx, func(tx kv.Txn) error {
		_, err := tx.Get([]byte("a"))
		assert.ErrorIs(t, err, kv.ErrNotFound, "panicked Update rolled back")
		return nil
	}))
	require.NoError(t, s.Close(), "no transaction left running")
}

func TestStore_Txn_UsedAfterReturn(t *testing.T) {
	s := openTemp(t, pebblekv.Options{})
	var saved kv.Txn
	require.NoError(t, s.Update(t.Context(), func(tx kv.Txn) error { saved = tx; return nil }))
	assert.ErrorIs(t, saved.Set([]byte("a"), []byte("1")), kv.ErrTxnDone)
	assert.ErrorIs(t, saved.Clear([]byte("a")), kv.ErrTxnDone)
	assert.ErrorIs(t, saved.ClearRange(nil, []byte{0xff}), kv.ErrTxnDone)
}

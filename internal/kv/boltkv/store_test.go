package boltkv_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/internal/kv/boltkv"
)

func openTemp(t *testing.T, opts boltkv.Options) *boltkv.Store {
	t.Helper()
	s, err := boltkv.Open(filepath.Join(t.TempDir(), "kv.db"), opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestOptions_Validate(t *testing.T) {
	tests := []struct {
		name    string
		opts    boltkv.Options
		wantErr string
	}{
		{"zero", boltkv.Options{}, ""},
		{"all set", boltkv.Options{Timeout: time.Second, TxnTimeout: time.Second, NoSync: true, InitialMmapSize: 1 << 20}, ""},
		{"negative timeout", boltkv.Options{Timeout: -1}, "Timeout"},
		{"negative txn timeout", boltkv.Options{TxnTimeout: -1}, "TxnTimeout"},
		{"negative mmap size", boltkv.Options{InitialMmapSize: -1}, "InitialMmapSize"},
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
	garbage := filepath.Join(dir, "garbage.db")
	require.NoError(t, os.WriteFile(garbage, make([]byte, 64<<10), 0o600))
	tests := []struct {
		name    string
		path    string
		opts    boltkv.Options
		wantErr string
	}{
		{"invalid options", filepath.Join(dir, "x.db"), boltkv.Options{Timeout: -1}, "negative Timeout"},
		{"missing directory", filepath.Join(dir, "missing", "kv.db"), boltkv.Options{}, "no such file"},
		{"not a bbolt file", garbage, boltkv.Options{}, garbage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := boltkv.Open(tt.path, tt.opts)
			require.ErrorContains(t, err, tt.wantErr)
			assert.Nil(t, s)
		})
	}
}

// The lock is per open file, so a second Open in the same process conflicts
// just as another process would.
func TestOpen_Locked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kv.db")
	s, err := boltkv.Open(path, boltkv.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })

	other, err := boltkv.Open(path, boltkv.Options{Timeout: 50 * time.Millisecond})
	require.ErrorIs(t, err, boltkv.ErrLocked)
	assert.ErrorContains(t, err, path)
	assert.Nil(t, other)

	require.NoError(t, s.Close())
	again, err := boltkv.Open(path, boltkv.Options{Timeout: 50 * time.Millisecond})
	require.NoError(t, err, "lock released by Close")
	require.NoError(t, again.Close())
}

func TestOpen_Reopen_KeepsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kv.db")
	s, err := boltkv.Open(path, boltkv.Options{})
	require.NoError(t, err)
	assert.Equal(t, path, s.Path())
	require.NoError(t, s.Update(t.Context(), func(tx kv.Txn) error {
		return tx.Set([]byte("k"), []byte("v"))
	}))
	require.NoError(t, s.Close())

	s, err = boltkv.Open(path, boltkv.Options{NoSync: true})
	require.NoError(t, err)
	defer s.Close()
	require.NoError(t, s.View(t.Context(), func(tx kv.ReadTxn) error {
		v, err := tx.Get([]byte("k"))
		require.NoError(t, err)
		assert.Equal(t, "v", string(v))
		return nil
	}))
}

func TestStore_Update_TxnTimeout(t *testing.T) {
	s := openTemp(t, boltkv.Options{TxnTimeout: 50 * time.Millisecond})
	err := s.Update(t.Context(), func(tx kv.Txn) error {
		require.NoError(t, tx.Set([]byte("a"), []byte("1")))
		<-time.After(60 * time.Millisecond) // outlive the transaction
		return tx.Set([]byte("b"), []byte("2"))
	})
	require.ErrorIs(t, err, kv.ErrTimeout)
	assert.NotErrorIs(t, err, context.DeadlineExceeded, "the bound came from the store, not ctx")
	assert.ErrorContains(t, err, "older than 50ms")

	err = s.View(t.Context(), func(tx kv.ReadTxn) error {
		<-time.After(60 * time.Millisecond)
		_, err := tx.GetRange(nil, []byte{0xff}, kv.RangeOptions{})
		return err
	})
	require.ErrorIs(t, err, kv.ErrTimeout)

	require.NoError(t, s.View(t.Context(), func(tx kv.ReadTxn) error {
		_, err := tx.Get([]byte("a"))
		assert.ErrorIs(t, err, kv.ErrNotFound, "timed-out Update rolled back")
		return nil
	}))
}

// A context deadline shorter than the store's bound wins, and is reported as
// both kv.ErrTimeout and context.DeadlineExceeded even when the deadline is
// noticed before ctx itself reports it.
func TestStore_Update_ContextDeadlineWins(t *testing.T) {
	s := openTemp(t, boltkv.Options{TxnTimeout: time.Hour})
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
// closed, and returns once the Update is inside its function.
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
		opts    boltkv.Options
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
			opts:    boltkv.Options{TxnTimeout: 30 * time.Millisecond},
			ctx:     func(t *testing.T) context.Context { return t.Context() },
			wantErr: []error{kv.ErrTimeout},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openTemp(t, tt.opts)
			release := holdWriter(t, s)
			called := false
			err := s.Update(tt.ctx(t), func(kv.Txn) error { called = true; return nil })
			for _, want := range tt.wantErr {
				assert.ErrorIs(t, err, want)
			}
			assert.ErrorContains(t, err, "wait for writer")
			assert.False(t, called)
			_ = release() // may itself time out with a short TxnTimeout
		})
	}
}

func TestStore_Close_FailsWaitingWriters(t *testing.T) {
	s := openTemp(t, boltkv.Options{})
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
	s := openTemp(t, boltkv.Options{})
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
	s := openTemp(t, boltkv.Options{})
	var saved kv.Txn
	require.NoError(t, s.Update(t.Context(), func(tx kv.Txn) error { saved = tx; return nil }))
	assert.ErrorIs(t, saved.Set([]byte("a"), []byte("1")), kv.ErrTxnDone)
	assert.ErrorIs(t, saved.ClearRange(nil, []byte{0xff}), kv.ErrTxnDone)
}

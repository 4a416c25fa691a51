package kvtest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/internal/kv"
)

// RunEmbedded runs the tests of what an embedded backend (one process, one
// writer slot: boltkv, pebblekv) adds to Run's: its own transaction timeout
// (kv.Lifetime), the wait for the writer slot, Close while writers wait, a
// panicking Update, a transaction used after its function. open returns an
// empty store whose transactions last at most txnTimeout (zero: the
// backend's default) and that the test's cleanup closes. A store that is a
// kv.AsyncStore is checked through UpdateAsync too.
func RunEmbedded(t *testing.T, open func(t *testing.T, txnTimeout time.Duration) kv.Store) {
	t.Run("TxnTimeout", func(t *testing.T) { testTxnTimeout(t, open(t, 50*time.Millisecond)) })
	t.Run("ContextDeadlineWins", func(t *testing.T) { testContextDeadlineWins(t, open(t, time.Hour)) })
	t.Run("WaitForWriter", func(t *testing.T) { testWaitForWriter(t, open) })
	t.Run("CloseFailsWaitingWriters", func(t *testing.T) { testCloseFailsWaitingWriters(t, open(t, 0)) })
	t.Run("PanicReleasesWriter", func(t *testing.T) { testPanicReleasesWriter(t, open(t, 0)) })
	t.Run("UsedAfterReturn", func(t *testing.T) { testUsedAfterReturn(t, open(t, 0)) })
}

func testTxnTimeout(t *testing.T, s kv.Store) {
	err := s.Update(t.Context(), func(tx kv.Txn) error {
		require.NoError(t, tx.Set([]byte("a"), []byte("1")))
		<-time.After(60 * time.Millisecond) // outlive the transaction
		return tx.Set([]byte("b"), []byte("2"))
	})
	require.ErrorIs(t, err, kv.ErrTimeout)
	assert.NotErrorIs(t, err, context.DeadlineExceeded, "the bound came from the store, not ctx")
	assert.ErrorContains(t, err, "older than 50ms")

	if as, ok := s.(kv.AsyncStore); ok {
		durable, err := as.UpdateAsync(t.Context(), func(tx kv.Txn) error {
			require.NoError(t, tx.Set([]byte("a"), []byte("1")))
			<-time.After(60 * time.Millisecond)
			return nil
		})
		require.ErrorIs(t, err, kv.ErrTimeout, "the commit of UpdateAsync")
		assert.Nil(t, durable)
	}

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
func testContextDeadlineWins(t *testing.T, s kv.Store) {
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

func testWaitForWriter(t *testing.T, open func(t *testing.T, txnTimeout time.Duration) kv.Store) {
	tests := []struct {
		name    string
		timeout time.Duration
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
			timeout: 30 * time.Millisecond,
			ctx:     func(t *testing.T) context.Context { return t.Context() },
			wantErr: []error{kv.ErrTimeout},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t, tt.timeout)
			release := holdWriter(t, s)
			called := false
			update := func(ctx context.Context) error {
				return s.Update(ctx, func(kv.Txn) error { called = true; return nil })
			}
			if as, ok := s.(kv.AsyncStore); ok {
				update = func(ctx context.Context) error {
					durable, err := as.UpdateAsync(ctx, func(kv.Txn) error { called = true; return nil })
					assert.Nil(t, durable)
					return err
				}
			}
			err := update(tt.ctx(t))
			for _, want := range tt.wantErr {
				assert.ErrorIs(t, err, want)
			}
			assert.ErrorContains(t, err, "wait for writer")
			assert.False(t, called)
			_ = release() // may itself time out with a short timeout
		})
	}
}

func testCloseFailsWaitingWriters(t *testing.T, s kv.Store) {
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

func testPanicReleasesWriter(t *testing.T, s kv.Store) {
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

func testUsedAfterReturn(t *testing.T, s kv.Store) {
	var saved kv.Txn
	require.NoError(t, s.Update(t.Context(), func(tx kv.Txn) error { saved = tx; return nil }))
	assert.ErrorIs(t, saved.Set([]byte("a"), []byte("1")), kv.ErrTxnDone)
	assert.ErrorIs(t, saved.Clear([]byte("a")), kv.ErrTxnDone)
	assert.ErrorIs(t, saved.ClearRange(nil, []byte{0xff}), kv.ErrTxnDone)
}

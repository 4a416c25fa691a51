package kvtest

import (
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/internal/kv"
)

// RunAsync is the conformance suite of kv.AsyncStore's UpdateAsync, run
// beside Run by backends with a split commit: writes visible to later
// transactions before durable is called, durable calls in any order and
// from other goroutines, fn's error and write errors with a nil durable,
// the writer serialized across UpdateAsync and Update. What a crash keeps
// (the durability order) needs a backend's own power-loss test.
// newStore has Run's contract.
func RunAsync(t *testing.T, newStore func(t *testing.T) kv.AsyncStore) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s kv.AsyncStore)
	}{
		{"VisibleBeforeDurable", testAsyncVisible},
		{"DurableAnyOrder", testAsyncDurableAnyOrder},
		{"ReadOnly", testAsyncReadOnly},
		{"FnError_NilDurable", testAsyncFnError},
		{"IgnoredWriteError_NilDurable", testAsyncIgnoredWriteError},
		{"ConcurrentIncrements", testAsyncConcurrentIncrements},
		{"Closed", testAsyncClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, newStore(t))
		})
	}
}

// setAsync applies pairs with UpdateAsync and returns its durable.
func setAsync(t *testing.T, s kv.AsyncStore, kvs ...string) func() error {
	t.Helper()
	durable, err := s.UpdateAsync(t.Context(), func(tx kv.Txn) error {
		for i := 0; i < len(kvs); i += 2 {
			if err := tx.Set([]byte(kvs[i]), []byte(kvs[i+1])); err != nil {
				return err
			}
		}
		return nil
	})
	require.NoError(t, err)
	require.NotNil(t, durable)
	return durable
}

// testAsyncVisible checks that UpdateAsync's writes are seen by the next
// UpdateAsync, Update and View before anyone waited for durability.
func testAsyncVisible(t *testing.T, s kv.AsyncStore) {
	d1 := setAsync(t, s, "a", "1", "b", "1")
	assert.Equal(t, "1", get(t, s, "a"), "View after UpdateAsync")
	d2, err := s.UpdateAsync(t.Context(), func(tx kv.Txn) error {
		v, err := tx.Get([]byte("a"))
		require.NoError(t, err)
		assert.Equal(t, "1", string(v), "the next UpdateAsync")
		if err := tx.Clear([]byte("b")); err != nil {
			return err
		}
		return tx.Set([]byte("a"), []byte("2"))
	})
	require.NoError(t, err)
	require.NoError(t, s.Update(t.Context(), func(tx kv.Txn) error {
		v, err := tx.Get([]byte("a"))
		require.NoError(t, err)
		assert.Equal(t, "2", string(v), "Update after two UpdateAsync")
		return tx.Set([]byte("c"), []byte("3"))
	}))
	assert.Equal(t, []string{"a", "c"}, keys(t, s))
	require.NoError(t, d2())
	require.NoError(t, d1())
}

// testAsyncDurableAnyOrder waits for durability out of order and from
// other goroutines; every call returns nil.
func testAsyncDurableAnyOrder(t *testing.T, s kv.AsyncStore) {
	const n = 10
	durables := make([]func() error, n)
	for i := range durables {
		durables[i] = setAsync(t, s, string(rune('a'+i)), "v")
	}
	require.NoError(t, durables[n-1]())
	var wg sync.WaitGroup
	errs := make([]error, n-1)
	for i := range n - 1 {
		wg.Go(func() { errs[i] = durables[i]() })
	}
	wg.Wait()
	for i, err := range errs {
		assert.NoError(t, err, "durable of transaction %d", i)
	}
	assert.Len(t, keys(t, s), n)
}

// testAsyncReadOnly: a transaction that writes nothing gets a durable
// that returns nil, whether or not an earlier one is still in flight.
func testAsyncReadOnly(t *testing.T, s kv.AsyncStore) {
	read := func() func() error {
		durable, err := s.UpdateAsync(t.Context(), func(tx kv.Txn) error {
			_, err := tx.Get([]byte("a"))
			if errors.Is(err, kv.ErrNotFound) {
				return nil
			}
			return err
		})
		require.NoError(t, err)
		require.NotNil(t, durable)
		return durable
	}
	require.NoError(t, read()(), "nothing written yet")
	d := setAsync(t, s, "a", "1")
	require.NoError(t, read()(), "after a write in flight")
	require.NoError(t, d())
	require.NoError(t, s.Update(t.Context(), func(kv.Txn) error { return nil }), "an empty Update")
}

func testAsyncFnError(t *testing.T, s kv.AsyncStore) {
	set(t, s, "keep", "1")
	durable, err := s.UpdateAsync(t.Context(), func(tx kv.Txn) error {
		require.NoError(t, tx.Set([]byte("new"), []byte("x")))
		require.NoError(t, tx.Clear([]byte("keep")))
		return errTest
	})
	assert.Equal(t, errTest, err, "fn's error is returned unchanged")
	assert.Nil(t, durable)
	assert.Equal(t, []string{"keep"}, keys(t, s))
}

func testAsyncIgnoredWriteError(t *testing.T, s kv.AsyncStore) {
	durable, err := s.UpdateAsync(t.Context(), func(tx kv.Txn) error {
		require.NoError(t, tx.Set([]byte("good"), []byte("1")))
		_ = tx.Set([]byte("bad"), make([]byte, kv.MaxValueSize+1))
		return nil
	})
	require.ErrorIs(t, err, kv.ErrValueTooLarge)
	assert.Nil(t, durable)
	assert.Empty(t, keys(t, s), "nothing applied")
}

// testAsyncConcurrentIncrements mixes UpdateAsync and Update
// read-modify-writes on one key; a lost update shows as a short total.
func testAsyncConcurrentIncrements(t *testing.T, s kv.AsyncStore) {
	const goroutines, increments = 8, 20
	key := kv.Tuple{"counter"}.Pack()
	incr := func(tx kv.Txn) error {
		var n uint64
		v, err := tx.Get(key)
		switch {
		case errors.Is(err, kv.ErrNotFound):
		case err != nil:
			return err
		default:
			n = binary.BigEndian.Uint64(v)
		}
		return tx.Set(key, binary.BigEndian.AppendUint64(nil, n+1))
	}
	var wg sync.WaitGroup
	errs := make(chan error, goroutines*increments)
	for g := range goroutines {
		wg.Go(func() {
			for range increments {
				if g%2 == 0 {
					errs <- s.Update(t.Context(), incr)
					continue
				}
				durable, err := s.UpdateAsync(t.Context(), incr)
				if err == nil {
					err = durable()
				}
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.NoError(t, s.View(t.Context(), func(tx kv.ReadTxn) error {
		v, err := tx.Get(key)
		require.NoError(t, err)
		assert.Equal(t, uint64(goroutines*increments), binary.BigEndian.Uint64(v))
		return nil
	}))
}

// testAsyncClosed: UpdateAsync on a closed store fails without running fn,
// and a durable obtained before Close still reports (Close made it
// durable or failed).
func testAsyncClosed(t *testing.T, s kv.AsyncStore) {
	d := setAsync(t, s, "a", "1")
	require.NoError(t, s.Close())
	require.NoError(t, d(), "durable after Close")
	called := false
	durable, err := s.UpdateAsync(context.Background(), func(kv.Txn) error { called = true; return nil })
	require.ErrorIs(t, err, kv.ErrClosed)
	assert.Nil(t, durable)
	assert.False(t, called)
}

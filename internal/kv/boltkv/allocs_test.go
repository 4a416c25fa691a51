package boltkv_test

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/internal/kv/boltkv"
)

// setAllocs is the allocations per put of appended 16-byte keys with
// 100-byte values, 1,000 puts into a bucket that already holds 10,000
// keys, in one write transaction.
func setAllocs(t *testing.T, put func(key, value []byte) error) float64 {
	t.Helper()
	value := make([]byte, 100)
	var key []byte
	i := 0
	next := func() {
		key = kv.AppendInt(append(key[:0], 0x01), int64(i))
		i++
		if err := put(key, value); err != nil {
			t.Fatal(err)
		}
	}
	for range 10_000 {
		next()
	}
	return testing.AllocsPerRun(1000, next)
}

// A Set costs what bbolt's Put costs and nothing more: it runs for every
// key a batch writes (the audit log's several per event). It used to cost
// two or three more (a closure for its guard, the error prefix joined per
// write).
func TestTxn_Set_NoAllocsBeyondBbolt(t *testing.T) {
	db, err := bolt.Open(filepath.Join(t.TempDir(), "raw.db"), 0o600, &bolt.Options{NoSync: true})
	require.NoError(t, err)
	defer db.Close()
	var raw float64
	require.NoError(t, db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("kv"))
		require.NoError(t, err)
		raw = setAllocs(t, b.Put)
		return nil
	}))

	s := openTemp(t, boltkv.Options{NoSync: true})
	var got float64
	require.NoError(t, s.Update(t.Context(), func(tx kv.Txn) error {
		got = setAllocs(t, tx.Set)
		return nil
	}))
	assert.LessOrEqual(t, got, raw, "allocations per Set, bbolt's Put: %v", raw)
}

// A Get that finds its key allocates only the copy it returns, and a miss
// nothing: bbolt's Get would allocate a cursor and its stack each time.
func TestTxn_Get_OneAlloc(t *testing.T) {
	s := openTemp(t, boltkv.Options{NoSync: true})
	require.NoError(t, s.Update(t.Context(), func(tx kv.Txn) error {
		for i := range 10_000 {
			if err := tx.Set(kv.Tuple{"k", i}.Pack(), []byte("value")); err != nil {
				return err
			}
		}
		return nil
	}))
	hit, miss := kv.Tuple{"k", 5000}.Pack(), kv.Tuple{"k", 5000, 1}.Pack()
	check := func(tx kv.ReadTxn) {
		assert.Equal(t, 1.0, testing.AllocsPerRun(100, func() {
			if v, err := tx.Get(hit); err != nil || string(v) != "value" {
				t.Fatalf("get: %q, %v", v, err)
			}
		}), "a hit")
		// A miss returns the sentinel itself.
		assert.Zero(t, testing.AllocsPerRun(100, func() {
			if _, err := tx.Get(miss); err != kv.ErrNotFound { //nolint:errorlint // the sentinel itself
				t.Fatalf("get missing: %v", err)
			}
		}), "a miss")
	}
	require.NoError(t, s.View(t.Context(), func(tx kv.ReadTxn) error { check(tx); return nil }))
	require.NoError(t, s.Update(t.Context(), func(tx kv.Txn) error {
		require.NoError(t, tx.Set(kv.Tuple{"k", 5001}.Pack(), []byte("new")))
		check(tx) // after a write, in the write transaction
		return nil
	}))
}

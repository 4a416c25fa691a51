package kvtest

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/internal/kv"
)

// Run is the conformance suite of kv.Store: every backend passes it, so code
// tested on the embedded store behaves the same on FoundationDB. newStore
// must return a new, empty store for each call and arrange for it to be
// closed when t ends; the suite closes some stores itself, so Close must
// tolerate a second call (returning kv.ErrClosed).
//
// Run calls t.Run once per property. It does not call t.Parallel.
func Run(t *testing.T, newStore func(t *testing.T) kv.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s kv.Store)
	}{
		{"Get_Missing", testGetMissing},
		{"Update_ReadYourWrites", testReadYourWrites},
		{"Set_EmptyValue", testSetEmptyValue},
		{"Set_Overwrite", testSetOverwrite},
		{"Set_CallerOwnsBuffers", testCallerOwnsBuffers},
		{"Get_ReturnsCopy", testGetReturnsCopy},
		{"Clear", testClear},
		{"ClearRange", testClearRange},
		{"GetRange", testGetRange},
		{"GetRange_ReadYourWrites", testGetRangeReadYourWrites},
		{"Update_FnError_RollsBack", testFnErrorRollsBack},
		{"Update_IgnoredWriteError_FailsCommit", testIgnoredWriteError},
		{"Limits", testLimits},
		{"InvalidKeys", testInvalidKeys},
		{"View_ReadOnly", testViewReadOnly},
		{"View_Snapshot", testViewSnapshot},
		{"Txn_UsedAfterReturn", testTxnUsedAfterReturn},
		{"Close", testClose},
		{"Close_WaitsForRunning", testCloseWaits},
		{"Context_Cancelled", testContextCancelled},
		{"Context_Deadline", testContextDeadline},
		{"Context_DeadlineDuringTxn", testDeadlineDuringTxn},
		{"Update_ConcurrentIncrements", testConcurrentIncrements},
		{"TupleKeys_Order", testTupleKeysOrder},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, newStore(t))
		})
	}
}

var errTest = errors.New("kvtest: fn failed")

// set commits pairs given as key, value, key, value...
func set(t *testing.T, s kv.Store, kvs ...string) {
	t.Helper()
	require.NoError(t, s.Update(t.Context(), func(tx kv.Txn) error {
		for i := 0; i < len(kvs); i += 2 {
			if err := tx.Set([]byte(kvs[i]), []byte(kvs[i+1])); err != nil {
				return err
			}
		}
		return nil
	}))
}

// get reads key in its own View; missing keys read as "<missing>".
func get(t *testing.T, s kv.Store, key string) string {
	t.Helper()
	var got string
	require.NoError(t, s.View(t.Context(), func(tx kv.ReadTxn) error {
		v, err := tx.Get([]byte(key))
		if errors.Is(err, kv.ErrNotFound) {
			got = "<missing>"
			return nil
		}
		got = string(v)
		return err
	}))
	return got
}

// keys returns every key in the store, in order.
func keys(t *testing.T, s kv.Store) []string {
	t.Helper()
	var out []string
	require.NoError(t, s.View(t.Context(), func(tx kv.ReadTxn) error {
		kvs, err := tx.GetRange(nil, []byte{0xff}, kv.RangeOptions{})
		for _, p := range kvs {
			out = append(out, string(p.Key))
		}
		return err
	}))
	return out
}

func pairs(kvs []kv.KeyValue) []string {
	out := make([]string, 0, len(kvs))
	for _, p := range kvs {
		out = append(out, string(p.Key)+"="+string(p.Value))
	}
	return out
}

func testGetMissing(t *testing.T, s kv.Store) {
	err := s.View(t.Context(), func(tx kv.ReadTxn) error {
		_, err := tx.Get([]byte("missing"))
		return err
	})
	require.ErrorIs(t, err, kv.ErrNotFound)
}

func testReadYourWrites(t *testing.T, s kv.Store) {
	set(t, s, "a", "old")
	err := s.Update(t.Context(), func(tx kv.Txn) error {
		require.NoError(t, tx.Set([]byte("a"), []byte("new")))
		require.NoError(t, tx.Set([]byte("b"), []byte("1")))
		v, err := tx.Get([]byte("a"))
		require.NoError(t, err)
		assert.Equal(t, "new", string(v))
		require.NoError(t, tx.Clear([]byte("b")))
		_, err = tx.Get([]byte("b"))
		assert.ErrorIs(t, err, kv.ErrNotFound)
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, "new", get(t, s, "a"))
	assert.Equal(t, "<missing>", get(t, s, "b"))
}

func testSetEmptyValue(t *testing.T, s kv.Store) {
	require.NoError(t, s.Update(t.Context(), func(tx kv.Txn) error {
		require.NoError(t, tx.Set([]byte("empty"), nil))
		v, err := tx.Get([]byte("empty"))
		require.NoError(t, err)
		assert.NotNil(t, v, "in transaction")
		assert.Empty(t, v)
		return nil
	}))
	require.NoError(t, s.View(t.Context(), func(tx kv.ReadTxn) error {
		v, err := tx.Get([]byte("empty"))
		require.NoError(t, err)
		assert.NotNil(t, v, "after commit")
		assert.Empty(t, v)
		return nil
	}))
}

func testSetOverwrite(t *testing.T, s kv.Store) {
	set(t, s, "k", "1")
	set(t, s, "k", "2")
	assert.Equal(t, "2", get(t, s, "k"))
	assert.Equal(t, []string{"k"}, keys(t, s))
}

func testCallerOwnsBuffers(t *testing.T, s kv.Store) {
	key, val := []byte("key"), []byte("value")
	require.NoError(t, s.Update(t.Context(), func(tx kv.Txn) error {
		require.NoError(t, tx.Set(key, val))
		copy(key, "KEY")
		copy(val, "VALUE")
		v, err := tx.Get([]byte("key"))
		require.NoError(t, err)
		assert.Equal(t, "value", string(v), "in transaction")
		return nil
	}))
	assert.Equal(t, "value", get(t, s, "key"), "after commit")
	assert.Equal(t, "<missing>", get(t, s, "KEY"))
}

func testGetReturnsCopy(t *testing.T, s kv.Store) {
	set(t, s, "k", "value")
	require.NoError(t, s.View(t.Context(), func(tx kv.ReadTxn) error {
		v, err := tx.Get([]byte("k"))
		require.NoError(t, err)
		v[0] = 'X' // must not fault or change the store
		kvs, err := tx.GetRange(nil, []byte{0xff}, kv.RangeOptions{})
		require.NoError(t, err)
		require.Len(t, kvs, 1)
		kvs[0].Key[0], kvs[0].Value[0] = 'X', 'X'
		again, err := tx.Get([]byte("k"))
		require.NoError(t, err)
		assert.Equal(t, "value", string(again))
		return nil
	}))
	assert.Equal(t, "value", get(t, s, "k"))
}

func testClear(t *testing.T, s kv.Store) {
	set(t, s, "a", "1", "b", "2")
	require.NoError(t, s.Update(t.Context(), func(tx kv.Txn) error {
		require.NoError(t, tx.Clear([]byte("a")))
		return tx.Clear([]byte("never-set"))
	}))
	assert.Equal(t, []string{"b"}, keys(t, s))
}

func testClearRange(t *testing.T, s kv.Store) {
	tests := []struct {
		name       string
		begin, end string
		want       []string
	}{
		{"middle", "b", "d", []string{"a", "d", "e"}},
		{"begin inclusive end exclusive", "a", "e", []string{"e"}},
		{"between keys", "bb", "cc", []string{"a", "b", "d", "e"}},
		{"inverted is a no-op", "d", "b", []string{"a", "b", "c", "d", "e"}},
		{"empty range", "c", "c", []string{"a", "b", "c", "d", "e"}},
		{"from start", "", "c", []string{"c", "d", "e"}},
		{"to end of keyspace", "c", "\xff", []string{"a", "b"}},
		{"everything", "", "\xff", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.NoError(t, s.Update(t.Context(), func(tx kv.Txn) error {
				return tx.ClearRange(nil, []byte{0xff})
			}))
			set(t, s, "a", "1", "b", "2", "c", "3", "d", "4", "e", "5")
			require.NoError(t, s.Update(t.Context(), func(tx kv.Txn) error {
				return tx.ClearRange([]byte(tt.begin), []byte(tt.end))
			}))
			assert.Equal(t, tt.want, keys(t, s))
		})
	}
}

func testGetRange(t *testing.T, s kv.Store) {
	set(t, s, "a", "1", "b", "2", "c", "3", "d", "4", "e", "5")
	tests := []struct {
		name       string
		begin, end string
		opts       kv.RangeOptions
		want       []string
	}{
		{"all", "", "\xff", kv.RangeOptions{}, []string{"a=1", "b=2", "c=3", "d=4", "e=5"}},
		{"begin inclusive end exclusive", "b", "d", kv.RangeOptions{}, []string{"b=2", "c=3"}},
		{"bounds between keys", "aa", "cc", kv.RangeOptions{}, []string{"b=2", "c=3"}},
		{"past last key", "f", "\xff", kv.RangeOptions{}, []string{}},
		{"reverse", "", "\xff", kv.RangeOptions{Reverse: true}, []string{"e=5", "d=4", "c=3", "b=2", "a=1"}},
		{"reverse bounded", "b", "d", kv.RangeOptions{Reverse: true}, []string{"c=3", "b=2"}},
		{"reverse end between keys", "a", "cc", kv.RangeOptions{Reverse: true}, []string{"c=3", "b=2", "a=1"}},
		{"reverse before first key", "", "a", kv.RangeOptions{Reverse: true}, []string{}},
		{"limit", "", "\xff", kv.RangeOptions{Limit: 2}, []string{"a=1", "b=2"}},
		{"limit above count", "c", "\xff", kv.RangeOptions{Limit: 10}, []string{"c=3", "d=4", "e=5"}},
		{"reverse limit takes the last", "", "\xff", kv.RangeOptions{Limit: 2, Reverse: true}, []string{"e=5", "d=4"}},
		{"inverted", "d", "b", kv.RangeOptions{}, []string{}},
		{"empty", "c", "c", kv.RangeOptions{}, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.NoError(t, s.View(t.Context(), func(tx kv.ReadTxn) error {
				kvs, err := tx.GetRange([]byte(tt.begin), []byte(tt.end), tt.opts)
				require.NoError(t, err)
				assert.Equal(t, tt.want, pairs(kvs))
				return nil
			}))
		})
	}
}

func testGetRangeReadYourWrites(t *testing.T, s kv.Store) {
	set(t, s, "a", "1", "b", "2", "c", "3")
	require.NoError(t, s.Update(t.Context(), func(tx kv.Txn) error {
		require.NoError(t, tx.Set([]byte("bb"), []byte("new")))
		require.NoError(t, tx.Set([]byte("c"), []byte("33")))
		require.NoError(t, tx.Clear([]byte("a")))
		kvs, err := tx.GetRange(nil, []byte{0xff}, kv.RangeOptions{})
		require.NoError(t, err)
		assert.Equal(t, []string{"b=2", "bb=new", "c=33"}, pairs(kvs))
		kvs, err = tx.GetRange(nil, []byte{0xff}, kv.RangeOptions{Reverse: true, Limit: 2})
		require.NoError(t, err)
		assert.Equal(t, []string{"c=33", "bb=new"}, pairs(kvs))
		require.NoError(t, tx.ClearRange([]byte("b"), []byte("c")))
		kvs, err = tx.GetRange(nil, []byte{0xff}, kv.RangeOptions{})
		require.NoError(t, err)
		assert.Equal(t, []string{"c=33"}, pairs(kvs))
		return nil
	}))
	assert.Equal(t, []string{"c"}, keys(t, s))
}

func testFnErrorRollsBack(t *testing.T, s kv.Store) {
	set(t, s, "keep", "1")
	err := s.Update(t.Context(), func(tx kv.Txn) error {
		require.NoError(t, tx.Set([]byte("new"), []byte("x")))
		require.NoError(t, tx.Set([]byte("keep"), []byte("changed")))
		require.NoError(t, tx.Clear([]byte("keep")))
		return errTest
	})
	require.ErrorIs(t, err, errTest)
	assert.Equal(t, errTest, err, "fn's error is returned unchanged")
	assert.Equal(t, []string{"keep"}, keys(t, s))
	assert.Equal(t, "1", get(t, s, "keep"))

	err = s.View(t.Context(), func(kv.ReadTxn) error { return errTest })
	assert.Equal(t, errTest, err, "View returns fn's error unchanged")
}

func testIgnoredWriteError(t *testing.T, s kv.Store) {
	err := s.Update(t.Context(), func(tx kv.Txn) error {
		require.NoError(t, tx.Set([]byte("good"), []byte("1")))
		_ = tx.Set([]byte("bad"), make([]byte, kv.MaxValueSize+1))
		return nil
	})
	require.ErrorIs(t, err, kv.ErrValueTooLarge)
	assert.Empty(t, keys(t, s), "nothing committed")
}

func testLimits(t *testing.T, s kv.Store) {
	maxKey := bytes.Repeat([]byte{'k'}, kv.MaxKeySize)
	bigKey := bytes.Repeat([]byte{'k'}, kv.MaxKeySize+1)
	tests := []struct {
		name    string
		fn      func(tx kv.Txn) error
		wantErr error
	}{
		{"max key", func(tx kv.Txn) error { return tx.Set(maxKey, []byte("v")) }, nil},
		{"max value", func(tx kv.Txn) error { return tx.Set([]byte("k"), make([]byte, kv.MaxValueSize)) }, nil},
		{"key too large", func(tx kv.Txn) error { return tx.Set(bigKey, []byte("v")) }, kv.ErrKeyTooLarge},
		{"value too large", func(tx kv.Txn) error { return tx.Set([]byte("k"), make([]byte, kv.MaxValueSize+1)) }, kv.ErrValueTooLarge},
		{"get key too large", func(tx kv.Txn) error { _, err := tx.Get(bigKey); return err }, kv.ErrKeyTooLarge},
		{"clear key too large", func(tx kv.Txn) error { return tx.Clear(bigKey) }, kv.ErrKeyTooLarge},
		{"range bound too large", func(tx kv.Txn) error {
			_, err := tx.GetRange(append(bigKey, 'x'), nil, kv.RangeOptions{})
			return err
		}, kv.ErrKeyTooLarge},
		{"transaction too large", func(tx kv.Txn) error {
			value := make([]byte, kv.MaxValueSize)
			for i := 0; i <= kv.MaxTxnWriteBytes/kv.MaxValueSize; i++ {
				if err := tx.Set(kv.Tuple{"big", i}.Pack(), value); err != nil {
					return err
				}
			}
			return nil
		}, kv.ErrTxnTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.Update(t.Context(), tt.fn)
			if tt.wantErr == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tt.wantErr)
			assert.ErrorIs(t, err, kv.ErrTooLarge)
		})
	}
}

func testInvalidKeys(t *testing.T, s kv.Store) {
	system := []byte{0xff, 'x'}
	tests := []struct {
		name string
		fn   func(tx kv.Txn) error
	}{
		{"set empty key", func(tx kv.Txn) error { return tx.Set(nil, []byte("v")) }},
		{"get empty key", func(tx kv.Txn) error { _, err := tx.Get([]byte{}); return err }},
		{"clear empty key", func(tx kv.Txn) error { return tx.Clear(nil) }},
		{"set system key", func(tx kv.Txn) error { return tx.Set(system, []byte("v")) }},
		{"get system key", func(tx kv.Txn) error { _, err := tx.Get(system); return err }},
		{"clear system key", func(tx kv.Txn) error { return tx.Clear(system) }},
		{"range into system keys", func(tx kv.Txn) error {
			_, err := tx.GetRange(nil, []byte{0xff, 0xff}, kv.RangeOptions{})
			return err
		}},
		{"clear range into system keys", func(tx kv.Txn) error { return tx.ClearRange(nil, system) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.ErrorIs(t, s.Update(t.Context(), tt.fn), kv.ErrInvalidKey)
		})
	}
}

func testViewReadOnly(t *testing.T, s kv.Store) {
	set(t, s, "a", "1")
	require.NoError(t, s.View(t.Context(), func(tx kv.ReadTxn) error {
		wtx, ok := tx.(kv.Txn)
		if !ok {
			return nil // the type system already forbids writes
		}
		assert.ErrorIs(t, wtx.Set([]byte("a"), []byte("2")), kv.ErrReadOnly)
		assert.ErrorIs(t, wtx.Clear([]byte("a")), kv.ErrReadOnly)
		assert.ErrorIs(t, wtx.ClearRange(nil, []byte{0xff}), kv.ErrReadOnly)
		return nil
	}))
	assert.Equal(t, "1", get(t, s, "a"))
}

// testViewSnapshot holds a View open while an Update commits and checks that
// the View sees the old state throughout and a later View sees the new one.
func testViewSnapshot(t *testing.T, s kv.Store) {
	set(t, s, "a", "old", "b", "old")
	started := make(chan struct{})
	committed := make(chan error, 1)
	go func() {
		<-started
		committed <- s.Update(context.Background(), func(tx kv.Txn) error {
			if err := tx.Set([]byte("a"), []byte("new")); err != nil {
				return err
			}
			if err := tx.Set([]byte("c"), []byte("new")); err != nil {
				return err
			}
			return tx.Clear([]byte("b"))
		})
	}()
	err := s.View(t.Context(), func(tx kv.ReadTxn) error {
		v, err := tx.Get([]byte("a"))
		require.NoError(t, err)
		assert.Equal(t, "old", string(v))
		close(started)
		require.NoError(t, <-committed)
		v, err = tx.Get([]byte("a"))
		require.NoError(t, err)
		assert.Equal(t, "old", string(v), "committed write visible inside the snapshot")
		kvs, err := tx.GetRange(nil, []byte{0xff}, kv.RangeOptions{})
		require.NoError(t, err)
		assert.Equal(t, []string{"a=old", "b=old"}, pairs(kvs))
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, []string{"a", "c"}, keys(t, s))
	assert.Equal(t, "new", get(t, s, "a"))
}

func testTxnUsedAfterReturn(t *testing.T, s kv.Store) {
	var saved kv.Txn
	require.NoError(t, s.Update(t.Context(), func(tx kv.Txn) error {
		saved = tx
		return tx.Set([]byte("a"), []byte("1"))
	}))
	assert.ErrorIs(t, saved.Set([]byte("b"), []byte("2")), kv.ErrTxnDone)
	_, err := saved.Get([]byte("a"))
	assert.ErrorIs(t, err, kv.ErrTxnDone)
	assert.Equal(t, []string{"a"}, keys(t, s))

	var savedRead kv.ReadTxn
	require.NoError(t, s.View(t.Context(), func(tx kv.ReadTxn) error {
		savedRead = tx
		return nil
	}))
	_, err = savedRead.GetRange(nil, []byte{0xff}, kv.RangeOptions{})
	assert.ErrorIs(t, err, kv.ErrTxnDone)
}

func testClose(t *testing.T, s kv.Store) {
	set(t, s, "a", "1")
	require.NoError(t, s.Close())
	called := false
	err := s.Update(t.Context(), func(kv.Txn) error { called = true; return nil })
	assert.ErrorIs(t, err, kv.ErrClosed)
	err = s.View(t.Context(), func(kv.ReadTxn) error { called = true; return nil })
	assert.ErrorIs(t, err, kv.ErrClosed)
	assert.False(t, called, "fn ran on a closed store")
	assert.ErrorIs(t, s.Close(), kv.ErrClosed)
}

func testCloseWaits(t *testing.T, s kv.Store) {
	inside := make(chan struct{})
	release := make(chan struct{})
	updated := make(chan error, 1)
	go func() {
		updated <- s.Update(context.Background(), func(tx kv.Txn) error {
			close(inside)
			<-release
			return tx.Set([]byte("a"), []byte("1"))
		})
	}()
	<-inside
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	// Close must not return while the Update runs. Waiting a little gives
	// a wrong implementation the chance to show itself; the test does not
	// depend on the timing to pass.
	select {
	case err := <-closed:
		t.Fatalf("Close returned %v while a transaction was running", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	require.NoError(t, <-updated, "running Update commits")
	require.NoError(t, <-closed)
	assert.ErrorIs(t, s.View(t.Context(), func(kv.ReadTxn) error { return nil }), kv.ErrClosed)
}

func testContextCancelled(t *testing.T, s kv.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	called := false
	err := s.Update(ctx, func(kv.Txn) error { called = true; return nil })
	require.ErrorIs(t, err, context.Canceled)
	assert.NotErrorIs(t, err, kv.ErrTimeout)
	err = s.View(ctx, func(kv.ReadTxn) error { called = true; return nil })
	require.ErrorIs(t, err, context.Canceled)
	assert.False(t, called)

	// Cancelled while fn runs: the next operation fails and nothing commits.
	ctx, cancel = context.WithCancel(t.Context())
	err = s.Update(ctx, func(tx kv.Txn) error {
		require.NoError(t, tx.Set([]byte("a"), []byte("1")))
		cancel()
		return tx.Set([]byte("b"), []byte("2"))
	})
	require.ErrorIs(t, err, context.Canceled)
	assert.Empty(t, keys(t, s))
}

func testContextDeadline(t *testing.T, s kv.Store) {
	ctx, cancel := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
	defer cancel()
	called := false
	err := s.Update(ctx, func(kv.Txn) error { called = true; return nil })
	require.ErrorIs(t, err, kv.ErrTimeout)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	err = s.View(ctx, func(kv.ReadTxn) error { called = true; return nil })
	require.ErrorIs(t, err, kv.ErrTimeout)
	assert.False(t, called)
}

func testDeadlineDuringTxn(t *testing.T, s kv.Store) {
	tests := []struct {
		name string
		// after runs once the deadline has passed.
		after func(tx kv.Txn) error
	}{
		{"next write fails", func(tx kv.Txn) error { return tx.Set([]byte("b"), []byte("2")) }},
		{"ignored write error fails commit", func(tx kv.Txn) error { _ = tx.Set([]byte("b"), []byte("2")); return nil }},
		{"commit fails", func(kv.Txn) error { return nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
			defer cancel()
			err := s.Update(ctx, func(tx kv.Txn) error {
				require.NoError(t, tx.Set([]byte("a"), []byte("1")))
				<-ctx.Done()
				return tt.after(tx)
			})
			require.ErrorIs(t, err, kv.ErrTimeout)
			assert.Empty(t, keys(t, s), "rolled back")
		})
	}
	t.Run("read fails", func(t *testing.T) {
		set(t, s, "r", "1")
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		err := s.View(ctx, func(tx kv.ReadTxn) error {
			_, err := tx.Get([]byte("r"))
			require.NoError(t, err)
			<-ctx.Done()
			_, err = tx.Get([]byte("r"))
			return err
		})
		require.ErrorIs(t, err, kv.ErrTimeout)
	})
}

// testConcurrentIncrements runs read-modify-write Updates on one key from
// several goroutines; a lost update shows as a short total.
func testConcurrentIncrements(t *testing.T, s kv.Store) {
	const goroutines, increments = 8, 20
	key := kv.Tuple{"counter"}.Pack()
	var wg sync.WaitGroup
	errs := make(chan error, goroutines*increments)
	for range goroutines {
		wg.Go(func() {
			for range increments {
				errs <- s.Update(t.Context(), func(tx kv.Txn) error {
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
				})
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

// testTupleKeysOrder stores tuple-encoded keys in random order and checks
// that a range scan returns them in tuple order.
func testTupleKeysOrder(t *testing.T, s kv.Store) {
	ints := []int64{math.MinInt64, -1 << 40, -65536, -256, -255, -1, 0, 1, 255, 256, 65535, 1 << 40, math.MaxInt64}
	strs := []string{"", "\x00", "a", "a\x00", "a\x00b", "a\x01", "b", "é"}
	var want []kv.Tuple
	for _, i := range ints {
		want = append(want, kv.Tuple{"t", i})
	}
	for _, str := range strs {
		want = append(want, kv.Tuple{"t", str})
	}
	want = append(want,
		kv.Tuple{"t", nil},
		kv.Tuple{"t", []byte{0}},
		kv.Tuple{"t", kv.Tuple{"nested", nil}},
		kv.Tuple{"t", int64(5), "sub"},
		kv.Tuple{"t", false},
		kv.Tuple{"t", true},
	)
	// Neighbours that must stay out of the ("t") range.
	outside := []kv.Tuple{{"s", math.MaxInt64}, {"t"}, {"t\x00", 1}, {"u", nil}}

	shuffled := append(slices.Clone(want), outside...)
	rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	require.NoError(t, s.Update(t.Context(), func(tx kv.Txn) error {
		for i, tp := range shuffled {
			if err := tx.Set(tp.Pack(), []byte{byte(i)}); err != nil {
				return err
			}
		}
		return nil
	}))

	slices.SortFunc(want, func(a, b kv.Tuple) int { return cmp.Compare(string(a.Pack()), string(b.Pack())) })
	require.NoError(t, s.View(t.Context(), func(tx kv.ReadTxn) error {
		begin, end := kv.Tuple{"t"}.Range()
		kvs, err := tx.GetRange(begin, end, kv.RangeOptions{})
		require.NoError(t, err)
		got := make([]kv.Tuple, 0, len(kvs))
		for _, p := range kvs {
			tp, err := kv.Unpack(p.Key)
			require.NoError(t, err)
			got = append(got, tp)
		}
		require.Len(t, got, len(want))
		for i := range want {
			assert.Equal(t, want[i].Pack(), got[i].Pack(), "position %d: want %v, got %v", i, want[i], got[i])
		}
		return nil
	}))

	// The order in the store is the order of the values, checked on ints.
	require.NoError(t, s.View(t.Context(), func(tx kv.ReadTxn) error {
		begin, end := kv.Tuple{"t"}.Range()
		kvs, err := tx.GetRange(begin, end, kv.RangeOptions{})
		require.NoError(t, err)
		var gotInts []int64
		for _, p := range kvs {
			tp, err := kv.Unpack(p.Key)
			require.NoError(t, err)
			if i, ok := tp[1].(int64); ok && len(tp) == 2 {
				gotInts = append(gotInts, i)
			}
		}
		assert.Equal(t, ints, gotInts)
		return nil
	}))
}

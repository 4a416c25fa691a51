package pebblekv

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/bloom"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/internal/kv"
)

// Options' zero fields become the measured defaults, set ones reach pebble
// as given; every level gets a table-level bloom filter unless filters are
// off (a transaction's Get reads the last level's too).
func TestOptions_PebbleOptions(t *testing.T) {
	po := Options{}.withDefaults().pebbleOptions(nil, nil, pebbleLogger{})
	assert.EqualValues(t, DefaultMemTableSize, po.MemTableSize)
	assert.Equal(t, DefaultCompactionConcurrency, po.MaxConcurrentCompactions())
	assert.Equal(t, memTableStopWrites, po.MemTableStopWritesThreshold)
	assert.Equal(t, l0StopWrites, po.L0StopWritesThreshold)
	require.Len(t, po.Levels, numLevels)
	for i, l := range po.Levels {
		assert.Equal(t, bloom.FilterPolicy(DefaultFilterBitsPerKey), l.FilterPolicy, "level %d", i)
		assert.Equal(t, pebble.TableFilter, l.FilterType, "level %d", i)
		assert.EqualValues(t, targetFileSize<<i, l.TargetFileSize, "level %d", i)
	}
	assert.Equal(t, pebble.DefaultComparer.Name, po.Comparer.Name, "a database written before opens")
	assert.Equal(t, 5, po.Comparer.Split([]byte("abcde")), "the whole key is the prefix")
	require.NoError(t, po.EnsureDefaults().Validate())

	po = Options{MemTableSize: 1 << 20, FilterBitsPerKey: -1, CompactionConcurrency: 2}.withDefaults().pebbleOptions(nil, nil, pebbleLogger{})
	assert.EqualValues(t, 1<<20, po.MemTableSize)
	assert.Equal(t, 2, po.MaxConcurrentCompactions())
	for i, l := range po.Levels {
		assert.Nil(t, l.FilterPolicy, "level %d", i)
	}
}

// A Get of a missing key is answered by the tables' filters, without
// reading their blocks (issue 18: the audit's msg-id lookups); the data
// reads back after a reopen without filters, since tables keep the filter
// they were written with.
func TestStore_Get_MissingKeyUsesFilter(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pebble")
	s, err := Open(dir, Options{})
	require.NoError(t, err)
	const tables, perTable = 3, 100
	key := func(table, i int) []byte { return []byte(fmt.Sprintf("key/%d/%03d", table, i)) }
	for table := range tables {
		require.NoError(t, s.Update(t.Context(), func(tx kv.Txn) error {
			for i := range perTable {
				if err := tx.Set(key(table, i), []byte("v")); err != nil {
					return err
				}
			}
			return nil
		}))
		// One level-0 table per batch: no compaction before the reads.
		require.NoError(t, s.db.Flush())
	}
	require.Equal(t, int64(tables), s.db.Metrics().Levels[0].NumFiles)
	before := s.db.Metrics().Filter
	require.NoError(t, s.View(t.Context(), func(tx kv.ReadTxn) error {
		for table := range tables {
			// Within the table's key range, so only the filter rules it out.
			_, err := tx.Get(append(key(table, 50), 'x'))
			require.ErrorIs(t, err, kv.ErrNotFound)
		}
		v, err := tx.Get(key(1, 7))
		require.NoError(t, err)
		assert.Equal(t, "v", string(v))
		return nil
	}))
	after := s.db.Metrics().Filter
	assert.GreaterOrEqual(t, after.Hits-before.Hits, int64(tables), "filter hits: %+v then %+v", before, after)
	require.NoError(t, s.Close())

	s, err = Open(dir, Options{FilterBitsPerKey: -1})
	require.NoError(t, err)
	defer s.Close()
	require.NoError(t, s.View(t.Context(), func(tx kv.ReadTxn) error {
		kvs, err := tx.GetRange([]byte("key/"), []byte("key0"), kv.RangeOptions{})
		require.NoError(t, err)
		assert.Len(t, kvs, tables*perTable)
		_, err = tx.Get(append(key(0, 50), 'x'))
		assert.ErrorIs(t, err, kv.ErrNotFound)
		return nil
	}))
}

// pebble charges its memtables to the block cache: with a memtable as
// large as CacheSize, a cache of CacheSize alone would keep no block and
// every read would go to the file. Open sizes the cache on top of them.
func TestOpen_CacheOnTopOfMemtables(t *testing.T) {
	opts := Options{CacheSize: 1 << 20, MemTableSize: 8 << 20}
	assert.EqualValues(t, 1<<20+memTableStopWrites*8<<20, opts.cacheBytes())
	s, err := Open(filepath.Join(t.TempDir(), "pebble"), opts)
	require.NoError(t, err)
	defer s.Close()
	// Each memtable is twice the size of the last, up to MemTableSize:
	// after 16 MiB of writes, the one in use is past CacheSize.
	value := make([]byte, kv.MaxValueSize)
	for i := range 16 {
		require.NoError(t, s.Update(t.Context(), func(tx kv.Txn) error {
			for j := range 10 {
				if err := tx.Set([]byte(fmt.Sprintf("key/%02d/%d", i, j)), value); err != nil {
					return err
				}
			}
			return nil
		}))
	}
	require.NoError(t, s.db.Flush())
	require.Greater(t, s.db.Metrics().MemTable.Size, uint64(opts.CacheSize))
	before := s.db.Metrics().BlockCache
	require.NoError(t, s.View(t.Context(), func(tx kv.ReadTxn) error {
		for range 10 {
			if _, err := tx.Get([]byte("key/03/3")); err != nil {
				return err
			}
		}
		return nil
	}))
	after := s.db.Metrics().BlockCache
	assert.Greater(t, after.Hits-before.Hits, int64(5), "block cache %+v then %+v", before, after)
}

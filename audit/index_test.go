package audit

import (
	"context"
	"testing"

	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/internal/kv/kvtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type entry struct {
	t   int64
	seq uint64
}

// writeIndex adds entries to the index of source "s" and category "c" in
// one transaction per batch, as the writer does.
func writeIndex(t *testing.T, store kv.Store, batches ...[]entry) {
	t.Helper()
	for _, batch := range batches {
		require.NoError(t, store.Update(context.Background(), func(tx kv.Txn) error {
			w := writer{tx: tx}
			ix := newIndexer()
			for _, e := range batch {
				ix.add(&w, "s", "c", e.t, e.seq)
			}
			ix.flush(&w)
			return w.err
		}))
	}
}

func scanAll(t *testing.T, store kv.Store, prefix kv.Tuple, from entry, end []byte, limit int) []entry {
	t.Helper()
	var got []entry
	require.NoError(t, store.View(context.Background(), func(tx kv.ReadTxn) error {
		got = nil
		return scanIndex(tx, prefix, from.t, from.seq, end, func(t int64, seq uint64) bool {
			got = append(got, entry{t, seq})
			return len(got) < limit
		})
	}))
	return got
}

func countKeys(t *testing.T, store kv.Store, ns string) int {
	t.Helper()
	n := 0
	require.NoError(t, store.View(context.Background(), func(tx kv.ReadTxn) error {
		b, e := kv.Tuple{ns}.Range()
		kvs, err := tx.GetRange(b, e, kv.RangeOptions{})
		n = len(kvs)
		return err
	}))
	return n
}

// TestIndex_Blocks writes more entries than a block holds and more blocks
// than a scan reads at once, then scans from every kind of starting point.
func TestIndex_Blocks(t *testing.T) {
	store := kvtest.NewBolt(t)
	// Times repeat (a clock that stood still) and jump; seqs have gaps, as
	// in a source's index.
	var all []entry
	var batches [][]entry
	seq, tm := uint64(0), int64(1_000)
	for b := range 40 {
		var batch []entry
		n := 3
		if b == 0 {
			n = 2*maxBlockEntries + 10 // three blocks in one commit
		}
		for i := range n {
			seq += uint64(1 + i%3)
			if i%4 != 0 {
				tm += int64(i * 1000)
			}
			batch = append(batch, entry{tm, seq})
		}
		all = append(all, batch...)
		batches = append(batches, batch)
	}
	writeIndex(t, store, batches...)
	assert.Equal(t, 3+39, countKeys(t, store, nsBySource), "one block per commit, full blocks split")

	for _, prefix := range []kv.Tuple{{nsByTime}, {nsBySource, "s"}, {nsByCategory, "c"}, {nsBySC, "s", "c"}} {
		assert.Equal(t, all, scanAll(t, store, prefix, entry{0, 0}, nil, len(all)+1), prefix)
	}
	src := kv.Tuple{nsBySource, "s"}
	for _, i := range []int{0, 1, maxBlockEntries - 1, maxBlockEntries, maxBlockEntries + 1, 2*maxBlockEntries + 11, len(all) - 1} {
		// From an entry: it and everything after it.
		assert.Equal(t, all[i:], scanAll(t, store, src, all[i], nil, len(all)), "from entry %d", i)
		// From just after it.
		assert.Equal(t, append([]entry(nil), all[i+1:]...), scanAll(t, store, src, entry{all[i].t, all[i].seq + 1}, nil, len(all)), "after entry %d", i)
	}
	// A limit stops the scan inside a block.
	assert.Equal(t, all[5:12], scanAll(t, store, src, all[5], nil, 7))
	// end excludes the blocks that start at or after it.
	end := append(src.Pack(), kv.Tuple{all[maxBlockEntries].t}.Pack()...)
	got := scanAll(t, store, src, entry{0, 0}, end, len(all))
	assert.Equal(t, all[:maxBlockEntries], got)
	// Past the end of the index.
	assert.Empty(t, scanAll(t, store, src, entry{tm + 1, 0}, nil, 10))
	// Another value's index is empty.
	assert.Empty(t, scanAll(t, store, kv.Tuple{nsBySource, "t"}, entry{0, 0}, nil, 10))

	t.Run("clear before", func(t *testing.T) {
		clear := func(first uint64) {
			require.NoError(t, store.Update(context.Background(), func(tx kv.Txn) error {
				w := writer{tx: tx}
				if err := clearIndexBefore(&w, src, first); err != nil {
					return err
				}
				return w.err
			}))
		}
		// Inside the first block: nothing goes.
		clear(all[10].seq)
		assert.Equal(t, 42, countKeys(t, store, nsBySource))
		// Just past the first block: it goes.
		clear(all[maxBlockEntries].seq)
		assert.Equal(t, 41, countKeys(t, store, nsBySource))
		// Past more blocks than one read returns.
		clear(all[len(all)-4].seq)
		assert.Equal(t, 2, countKeys(t, store, nsBySource))
		assert.Equal(t, all[len(all)-6:], scanAll(t, store, src, entry{0, 0}, nil, len(all)))
		// Everything.
		clear(seq + 1)
		assert.Zero(t, countKeys(t, store, nsBySource))
		// The other indexes are untouched.
		assert.Equal(t, 42, countKeys(t, store, nsByCategory))
	})
}

// TestIndex_Corrupt checks that a block that does not decode is an error,
// never a silently shorter answer.
func TestIndex_Corrupt(t *testing.T) {
	prefix := kv.Tuple{nsBySource, "s"}
	key := func(elems ...any) []byte { return append(append(kv.Tuple{}, prefix...), elems...).Pack() }
	cases := []struct {
		name       string
		key, value []byte
	}{
		{"truncated seq delta", key(int64(1), int64(1)), []byte{0x80}},
		{"zero seq delta", key(int64(1), int64(1)), []byte{0, 1}},
		{"truncated time delta", key(int64(1), int64(1)), []byte{1}},
		{"key without a seq", key(int64(1)), nil},
		{"seq not a number", key(int64(1), "x"), nil},
		{"seq zero", key(int64(1), int64(0)), nil},
		{"not a tuple", append(prefix.Pack(), 0xFE), nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			store := kvtest.NewBolt(t)
			require.NoError(t, store.Update(context.Background(), func(tx kv.Txn) error { return tx.Set(c.key, c.value) }))
			err := store.View(context.Background(), func(tx kv.ReadTxn) error {
				return scanIndex(tx, prefix, 0, 0, nil, func(int64, uint64) bool { return true })
			})
			require.ErrorIs(t, err, errBadIndex)
			err = store.Update(context.Background(), func(tx kv.Txn) error {
				return clearIndexBefore(&writer{tx: tx}, prefix, 100)
			})
			require.ErrorIs(t, err, errBadIndex)
		})
	}
}

// TestIndex_OneKeyPerEntry reads an index written with one key and an empty
// value per entry (how codi2 wrote its indexes before blocks) followed by
// blocks: an empty value is a block of one entry.
func TestIndex_OneKeyPerEntry(t *testing.T) {
	store := kvtest.NewBolt(t)
	src := kv.Tuple{nsBySource, "s"}
	old := []entry{{10, 1}, {10, 2}, {20, 4}}
	require.NoError(t, store.Update(context.Background(), func(tx kv.Txn) error {
		for _, e := range old {
			if err := tx.Set(append(append(kv.Tuple{}, src...), e.t, e.seq).Pack(), nil); err != nil {
				return err
			}
		}
		return nil
	}))
	blocks := []entry{{30, 5}, {30, 6}, {40, 9}}
	writeIndex(t, store, blocks)
	all := append(old, blocks...)
	assert.Equal(t, all, scanAll(t, store, src, entry{0, 0}, nil, 10))
	assert.Equal(t, all[2:], scanAll(t, store, src, entry{11, 0}, nil, 10))
	require.NoError(t, store.Update(context.Background(), func(tx kv.Txn) error {
		return clearIndexBefore(&writer{tx: tx}, src, 5)
	}))
	assert.Equal(t, blocks, scanAll(t, store, src, entry{0, 0}, nil, 10))
}

// countingTxn counts the range reads of a real read transaction and the
// pairs (index blocks) they return.
type countingTxn struct {
	kv.ReadTxn
	blocks, reads int
}

func (c *countingTxn) GetRange(begin, end []byte, opts kv.RangeOptions) ([]kv.KeyValue, error) {
	kvs, err := c.ReadTxn.GetRange(begin, end, opts)
	c.blocks += len(kvs)
	c.reads++
	return kvs, err
}

// TestIndex_ReadsWhatItReturns scans a few entries from the middle of an
// index of full blocks: it reads the block that holds the first entry (once
// to find it, once to scan it) and the next one at most, not a page of
// blocks.
func TestIndex_ReadsWhatItReturns(t *testing.T) {
	store := kvtest.NewBolt(t)
	var all []entry
	for i := range 20 * maxBlockEntries {
		all = append(all, entry{int64(1000 + i), uint64(i + 1)})
	}
	writeIndex(t, store, all)
	src := kv.Tuple{nsBySource, "s"}
	for _, n := range []int{1, 10, maxBlockEntries} {
		from := 5*maxBlockEntries + 500
		require.NoError(t, store.View(context.Background(), func(tx kv.ReadTxn) error {
			c := &countingTxn{ReadTxn: tx}
			var got []entry
			err := scanIndex(c, src, all[from].t, all[from].seq, nil, func(t int64, seq uint64) bool {
				got = append(got, entry{t, seq})
				return len(got) < n
			})
			require.NoError(t, err)
			assert.Equal(t, all[from:from+n], got)
			assert.LessOrEqual(t, c.blocks, 3, "%d entries", n)
			return nil
		}))
	}
}

// TestIndexer_Add_MixedValues writes one commit whose events come in runs
// of one source and category and switch between them, past a full block,
// and reads every index back: each value's entries and nothing else's.
func TestIndexer_Add_MixedValues(t *testing.T) {
	store := kvtest.NewBolt(t)
	// Each change of one without the other, and runs of one pair.
	pairs := [][2]string{{"a", "x"}, {"a", "y"}, {"a", "y"}, {"b", "y"}, {"b", "x"}, {"a", "x"}}
	want := map[string][]entry{}
	put := func(prefix kv.Tuple, e entry) {
		k := string(prefix.Pack())
		want[k] = append(want[k], e)
	}
	require.NoError(t, store.Update(context.Background(), func(tx kv.Txn) error {
		w := writer{tx: tx}
		ix := newIndexer()
		for i := range 3 * maxBlockEntries {
			p, e := pairs[i%len(pairs)], entry{int64(1000 + i), uint64(i + 1)}
			ix.add(&w, p[0], p[1], e.t, e.seq)
			put(kv.Tuple{nsByTime}, e)
			put(kv.Tuple{nsBySource, p[0]}, e)
			put(kv.Tuple{nsByCategory, p[1]}, e)
			put(kv.Tuple{nsBySC, p[0], p[1]}, e)
		}
		ix.flush(&w)
		return w.err
	}))
	prefixes := []kv.Tuple{{nsByTime}, {nsBySource, "a"}, {nsBySource, "b"}, {nsByCategory, "x"}, {nsByCategory, "y"},
		{nsBySC, "a", "x"}, {nsBySC, "a", "y"}, {nsBySC, "b", "x"}, {nsBySC, "b", "y"}}
	for _, prefix := range prefixes {
		assert.Equal(t, want[string(prefix.Pack())], scanAll(t, store, prefix, entry{0, 0}, nil, 4*maxBlockEntries), prefix)
	}
}

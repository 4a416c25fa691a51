package audit

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/codi2/codi2/internal/kv"
)

// The indexes are posting lists. An index key names the first entry of a
// block, and its value holds the block's further entries:
//
//	key   = (ns, [source], [category], t, seq)   the block's first entry
//	value = { uvarint(seq - prev seq), uvarint(t - prev t) }...
//
// An entry (t, seq) says that record seq, whose time is t, belongs to the
// index; entries are in seq order, which is also time order. A commit writes
// one block per index and value it touches (at most maxBlockEntries entries
// each), so an index costs a commit a few keys instead of one key per event.
// An empty value is a block of one entry, which is also how logs written
// with one index key per event read.

// errBadIndex is returned for an index block that does not decode.
var errBadIndex = errors.New("audit: corrupt index")

// maxBlockEntries bounds the entries of one index block, and with them what
// a query reads beyond what it returns: at most one block at each end of its
// range. A block of 1,000 entries is a few kilobytes.
const maxBlockEntries = 1000

// scanPageBlocks is the most blocks one range read of a scan returns.
const scanPageBlocks = 32

// block is an index block being written.
type block struct {
	key   []byte // prefix + packed (t, seq) of the first entry
	value []byte
	t     int64
	seq   uint64
	n     int
}

func (b *block) add(prefix []byte, t int64, seq uint64) {
	if b.n == 0 {
		b.key = kv.AppendInt(kv.AppendInt(append(b.key[:0], prefix...), t), int64(seq))
		b.value = b.value[:0]
	} else {
		b.value = binary.AppendUvarint(b.value, seq-b.seq)
		b.value = binary.AppendUvarint(b.value, uint64(t-b.t))
	}
	b.t, b.seq = t, seq
	b.n++
}

// indexer gathers the index entries of the records one transaction appends
// and writes them as blocks. Records must be added in seq order. Its state
// lives in one transaction function run.
type indexer struct {
	byTime     block
	bySource   map[string]*indexBlock
	byCategory map[string]*indexBlock
	bySC       map[[2]string]*indexBlock
	all        []*block // every block, in the order first used
	// last is the source, category and blocks of the previous add: a
	// batch is mostly runs of one agent's events, which then skip the
	// three map lookups.
	last struct {
		source, category string
		src, cat, sc     *indexBlock
	}
}

// indexBlock is a block and the packed prefix of the index value it is for.
type indexBlock struct {
	prefix []byte
	block
}

var timePrefix = kv.Tuple{nsByTime}.Pack()

func newIndexer() *indexer {
	x := &indexer{
		bySource:   map[string]*indexBlock{},
		byCategory: map[string]*indexBlock{},
		bySC:       map[[2]string]*indexBlock{},
	}
	x.all = append(x.all, &x.byTime)
	return x
}

// newBlock returns a new block for the index value whose packed prefix is
// prefix, listed for flush.
func (x *indexer) newBlock(prefix kv.Tuple) *indexBlock {
	b := &indexBlock{prefix: prefix.Pack()}
	x.all = append(x.all, &b.block)
	return b
}

// add records that record seq, of time t, has this source and category,
// writing any block that is full.
func (x *indexer) add(w *writer, source, category string, t int64, seq uint64) {
	addTo(w, &x.byTime, timePrefix, t, seq)
	l := &x.last
	if l.src == nil || source != l.source || category != l.category {
		l.source, l.category = source, category
		l.src, l.cat, l.sc = x.blocks(source, category)
	}
	addTo(w, &l.src.block, l.src.prefix, t, seq)
	addTo(w, &l.cat.block, l.cat.prefix, t, seq)
	addTo(w, &l.sc.block, l.sc.prefix, t, seq)
}

// blocks returns the source, category and source+category blocks for
// source and category, made on first use.
func (x *indexer) blocks(source, category string) (src, cat, sc *indexBlock) {
	if src = x.bySource[source]; src == nil {
		src = x.newBlock(kv.Tuple{nsBySource, source})
		x.bySource[source] = src
	}
	if cat = x.byCategory[category]; cat == nil {
		cat = x.newBlock(kv.Tuple{nsByCategory, category})
		x.byCategory[category] = cat
	}
	key := [2]string{source, category}
	if sc = x.bySC[key]; sc == nil {
		sc = x.newBlock(kv.Tuple{nsBySC, source, category})
		x.bySC[key] = sc
	}
	return src, cat, sc
}

func addTo(w *writer, b *block, prefix []byte, t int64, seq uint64) {
	b.add(prefix, t, seq)
	if b.n == maxBlockEntries {
		w.set(b.key, b.value)
		b.n = 0
	}
}

// flush writes the blocks that are not full yet.
func (x *indexer) flush(w *writer) {
	for _, b := range x.all {
		if b.n > 0 {
			w.set(b.key, b.value)
			b.n = 0
		}
	}
}

// blockEntries calls fn with each entry of a stored block, in order, until
// fn returns false.
func blockEntries(key, value []byte, fn func(t int64, seq uint64) bool) error {
	t, seq, err := blockFirst(key)
	if err != nil {
		return err
	}
	for {
		if !fn(t, seq) || len(value) == 0 {
			return nil
		}
		ds, n := binary.Uvarint(value)
		if n <= 0 || ds == 0 {
			return fmt.Errorf("%w: index block %q: bad entry", errBadIndex, key)
		}
		value = value[n:]
		dt, n := binary.Uvarint(value)
		if n <= 0 {
			return fmt.Errorf("%w: index block %q: bad entry", errBadIndex, key)
		}
		value = value[n:]
		seq, t = seq+ds, t+int64(dt)
	}
}

// blockFirst returns the first entry of a block: the key's last two
// elements.
func blockFirst(key []byte) (int64, uint64, error) {
	tup, err := kv.Unpack(key)
	if err != nil || len(tup) < 3 {
		return 0, 0, fmt.Errorf("%w: index key %q", errBadIndex, key)
	}
	t, ok1 := tup[len(tup)-2].(int64)
	seq, ok2 := tup[len(tup)-1].(int64)
	if !ok1 || !ok2 || seq <= 0 {
		return 0, 0, fmt.Errorf("%w: index key %q", errBadIndex, key)
	}
	return t, uint64(seq), nil
}

// scanIndex calls fn with the entries of the index under prefix from (t,
// seq) on, in order, until fn returns false or the blocks end before end (a
// key; blocks at or after it are not read). It reads the block that holds
// (t, seq), if any, and the blocks after it, a page at a time.
func scanIndex(tx kv.ReadTxn, prefix kv.Tuple, t int64, seq uint64, end []byte, fn func(t int64, seq uint64) bool) error {
	p := prefix.Pack()
	with := func(t int64, seq uint64) []byte { return append(p[:len(p):len(p)], kv.Tuple{t, seq}.Pack()...) }
	pb, pe := prefix.Range()
	if end == nil {
		end = pe
	}
	// The last block starting at or before (t, seq) may hold it.
	begin := with(t, seq)
	kvs, err := tx.GetRange(pb, with(t, seq+1), kv.RangeOptions{Limit: 1, Reverse: true})
	if err != nil {
		return err
	}
	if len(kvs) == 1 {
		begin = kvs[0].Key
	}
	// Pages start small and double: a query that one or two full blocks
	// answer reads just those, one over many small blocks few round trips.
	for page := 2; ; page = min(2*page, scanPageBlocks) {
		kvs, err := tx.GetRange(begin, end, kv.RangeOptions{Limit: page})
		if err != nil {
			return err
		}
		for _, b := range kvs {
			more := true
			err := blockEntries(b.Key, b.Value, func(et int64, es uint64) bool {
				if et < t || et == t && es < seq {
					return true
				}
				more = fn(et, es)
				return more
			})
			if err != nil || !more {
				return err
			}
		}
		if len(kvs) < page {
			return nil
		}
		k := kvs[len(kvs)-1].Key
		begin = append(k[:len(k):len(k)], 0x00)
	}
}

// scanIndexDesc calls fn with the entries of the index under prefix that
// come before (t, seq), newest first, until fn returns false or the index
// ends. It reads the blocks that start before (t, seq), backwards, a page
// at a time.
func scanIndexDesc(tx kv.ReadTxn, prefix kv.Tuple, t int64, seq uint64, fn func(t int64, seq uint64) bool) error {
	p := prefix.Pack()
	pb, _ := prefix.Range()
	end := append(p[:len(p):len(p)], kv.Tuple{t, seq}.Pack()...)
	var entries [][2]uint64 // one block's (t, seq), oldest first
	for page := 2; ; page = min(2*page, scanPageBlocks) {
		kvs, err := tx.GetRange(pb, end, kv.RangeOptions{Limit: page, Reverse: true})
		if err != nil {
			return err
		}
		for _, b := range kvs {
			entries = entries[:0]
			err := blockEntries(b.Key, b.Value, func(et int64, es uint64) bool {
				if et > t || et == t && es >= seq {
					return false
				}
				entries = append(entries, [2]uint64{uint64(et), es})
				return true
			})
			if err != nil {
				return err
			}
			for i := len(entries) - 1; i >= 0; i-- {
				if !fn(int64(entries[i][0]), entries[i][1]) {
					return nil
				}
			}
		}
		if len(kvs) < page {
			return nil
		}
		end = kvs[len(kvs)-1].Key
	}
}

// clearIndexBefore removes the blocks of the index under prefix whose
// entries are all below seq first, the first kept record. A block that
// still holds kept entries stays whole; scans skip its removed entries.
func clearIndexBefore(w *writer, prefix kv.Tuple, first uint64) error {
	tx := w.tx
	begin, end := prefix.Range()
	for {
		kvs, err := tx.GetRange(begin, end, kv.RangeOptions{Limit: scanPageBlocks})
		if err != nil {
			return err
		}
		for _, b := range kvs {
			var last uint64
			if err := blockEntries(b.Key, b.Value, func(_ int64, seq uint64) bool {
				last = seq
				return true
			}); err != nil {
				return err
			}
			if last >= first {
				return nil
			}
			w.clear(b.Key)
		}
		if len(kvs) < scanPageBlocks {
			return nil
		}
		k := kvs[len(kvs)-1].Key
		begin = append(k[:len(k):len(k)], 0x00)
	}
}

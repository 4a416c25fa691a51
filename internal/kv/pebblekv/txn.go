package pebblekv

import (
	"bytes"
	"errors"
	"fmt"
	"hash/maphash"
	"io"

	"github.com/cockroachdb/pebble"

	"github.com/codi2/codi2/internal/kv"
)

// reader is what a transaction reads from: the indexed batch of an Update
// (its own writes over the database) or the snapshot of a View.
type reader interface {
	Get(key []byte) ([]byte, io.Closer, error)
	NewIter(o *pebble.IterOptions) (*pebble.Iterator, error)
}

// txn implements kv.Txn (and so kv.ReadTxn) on a pebble batch or snapshot.
// Writes are refused in a View's txn.
type txn struct {
	r   reader
	b   *pebble.Batch // nil in a View
	dir string        // the store's directory, for errors

	kv.Lifetime // its clock; Done once fn returned
	writable    bool

	writes kv.Writes // bytes against kv.MaxTxnWriteBytes; the first failed write fails the commit

	// In an Update, Get reads a key the transaction has not written from
	// point, an iterator over the database made at the first such Get
	// (nothing else writes to the database while the transaction holds
	// the writer slot), and one it may have written through the batch.
	// own holds the maphash of every key Set or Cleared (a collision only
	// sends a Get through the batch); ranged is set by a ClearRange, after
	// which every Get goes through the batch.
	db     *pebble.DB
	point  *pebble.Iterator
	own    map[uint64]struct{}
	ranged bool
}

// pointOptions are the options of txn.point: every level's bloom filter
// is read, the last level's included (pebble's own Get skips that one, so
// a missing key cost a read of the last level's index and data block:
// the audit log's Nats-Msg-Id dedupe lookup of every new id).
var pointOptions = pebble.IterOptions{UseL6Filters: true}

// ownSeed seeds the hashes of txn.own.
var ownSeed = maphash.MakeSeed()

// wrote records that the transaction wrote key.
func (t *txn) wrote(key []byte) {
	if t.own == nil {
		t.own = make(map[uint64]struct{})
	}
	t.own[maphash.Bytes(ownSeed, key)] = struct{}{}
}

// mayHaveWritten reports whether the batch may hold a write of key.
func (t *txn) mayHaveWritten(key []byte) bool {
	if t.ranged {
		return true
	}
	_, ok := t.own[maphash.Bytes(ownSeed, key)]
	return ok
}

// close closes the transaction's iterator, if it made one.
func (t *txn) close() {
	if t.point != nil {
		_ = t.point.Close()
		t.point = nil
	}
}

// Get implements kv.ReadTxn. A missing key returns kv.ErrNotFound itself,
// unwrapped, because misses are common and the caller knows the key.
func (t *txn) Get(key []byte) ([]byte, error) {
	if err := t.Alive("get"); err != nil {
		return nil, err
	}
	if err := kv.CheckKey(key); err != nil {
		return nil, fmt.Errorf("pebblekv: get: %w", err)
	}
	if t.b != nil && !t.mayHaveWritten(key) {
		return t.seek(key)
	}
	v, closer, err := t.r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, kv.ErrNotFound
	}
	if err != nil {
		return nil, wrap(t.dir, "get", err)
	}
	// pebble's memory is valid until closer.Close; never nil, so that an
	// empty value stays distinct from a missing key.
	out := append(make([]byte, 0, len(v)), v...)
	_ = closer.Close()
	return out, nil
}

// seek is Get in an Update of a key the transaction did not write: a
// prefix seek of t.point, whose prefix is the whole key (see comparer), so
// that a table whose filter rules the key out is skipped on every level.
func (t *txn) seek(key []byte) ([]byte, error) {
	if t.point == nil {
		it, err := t.db.NewIter(&pointOptions)
		if err != nil {
			return nil, wrap(t.dir, "get", err)
		}
		t.point = it
	}
	if !t.point.SeekPrefixGE(key) || !bytes.Equal(t.point.Key(), key) {
		if err := t.point.Error(); err != nil {
			return nil, wrap(t.dir, "get", err)
		}
		return nil, kv.ErrNotFound
	}
	v, err := t.point.ValueAndErr()
	if err != nil {
		return nil, wrap(t.dir, "get", err)
	}
	// The iterator's memory is valid until it moves; never nil, so that
	// an empty value stays distinct from a missing key.
	return append(make([]byte, 0, len(v)), v...), nil
}

// GetRange implements kv.ReadTxn.
func (t *txn) GetRange(begin, end []byte, opts kv.RangeOptions) ([]kv.KeyValue, error) {
	if err := t.Alive("get range"); err != nil {
		return nil, err
	}
	if err := kv.CheckRange(begin, end); err != nil {
		return nil, fmt.Errorf("pebblekv: get range: %w", err)
	}
	if bytes.Compare(begin, end) >= 0 {
		return nil, nil
	}
	it, err := t.r.NewIter(&pebble.IterOptions{LowerBound: begin, UpperBound: end})
	if err != nil {
		return nil, wrap(t.dir, "get range", err)
	}
	var (
		buf  []byte // every key and value, copied out of pebble's memory
		ends []int  // offsets in buf: key i ends at ends[2i], value i at ends[2i+1]
	)
	full := func() bool { return opts.Limit > 0 && len(ends)/2 >= opts.Limit }
	valid, next := it.First, it.Next
	if opts.Reverse {
		valid, next = it.Last, it.Prev
	}
	for ok := valid(); ok && !full(); ok = next() {
		buf = append(buf, it.Key()...)
		ends = append(ends, len(buf))
		buf = append(buf, it.Value()...)
		ends = append(ends, len(buf))
	}
	if err := it.Close(); err != nil {
		return nil, wrap(t.dir, "get range", err)
	}
	out := make([]kv.KeyValue, len(ends)/2)
	start := 0
	for i := range out {
		k, v := ends[2*i], ends[2*i+1]
		out[i] = kv.KeyValue{Key: buf[start:k:k], Value: buf[k:v:v]}
		start = v
	}
	return out, nil
}

// write runs the checks every write shares; kv.Writes keeps a failure so
// that the commit fails even if fn ignores the error.
func (t *txn) write(op string, n int, check error) error {
	if err := t.Live(op); err != nil {
		if t.writable && !t.Done {
			t.writes.Fail(err)
		}
		return err
	}
	if !t.writable {
		return fmt.Errorf("pebblekv: %s: %w", op, kv.ErrReadOnly)
	}
	return t.writes.Add("pebblekv", op, n, check)
}

// fail records a batch error so that the commit fails too.
func (t *txn) fail(op string, err error) error {
	if err == nil {
		return nil
	}
	err = wrap(t.dir, op, err)
	t.writes.Fail(err)
	return err
}

// Set implements kv.Txn. The batch copies key and value.
func (t *txn) Set(key, value []byte) error {
	check := kv.CheckKey(key)
	if check == nil {
		check = kv.CheckValue(value)
	}
	if err := t.write("set", len(key)+len(value), check); err != nil {
		return err
	}
	t.wrote(key)
	return t.fail("set", t.b.Set(key, value, nil))
}

// Clear implements kv.Txn.
func (t *txn) Clear(key []byte) error {
	if err := t.write("clear", len(key), kv.CheckKey(key)); err != nil {
		return err
	}
	t.wrote(key)
	return t.fail("clear", t.b.Delete(key, nil))
}

// ClearRange implements kv.Txn. It writes one range tombstone, so, as in
// FoundationDB, its cost does not grow with the keys it removes.
func (t *txn) ClearRange(begin, end []byte) error {
	if err := t.write("clear range", len(begin)+len(end), kv.CheckRange(begin, end)); err != nil {
		return err
	}
	if bytes.Compare(begin, end) >= 0 {
		return nil
	}
	t.ranged = true
	return t.fail("clear range", t.b.DeleteRange(begin, end, nil))
}

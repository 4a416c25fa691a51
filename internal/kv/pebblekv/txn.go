package pebblekv

import (
	"bytes"
	"errors"
	"fmt"
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
	return t.fail("set", t.b.Set(key, value, nil))
}

// Clear implements kv.Txn.
func (t *txn) Clear(key []byte) error {
	if err := t.write("clear", len(key), kv.CheckKey(key)); err != nil {
		return err
	}
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
	return t.fail("clear range", t.b.DeleteRange(begin, end, nil))
}

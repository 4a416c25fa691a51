package kv

import "context"

// FoundationDB's documented limits, enforced by every backend so that code that
// runs on the embedded store also runs on a cluster.
const (
	// MaxKeySize is the largest key, in bytes.
	MaxKeySize = 10_000
	// MaxValueSize is the largest value, in bytes.
	MaxValueSize = 100_000
	// MaxTxnWriteBytes bounds the bytes written by one transaction (keys and
	// values of every set, keys of every clear).
	MaxTxnWriteBytes = 10_000_000
)

// Store is a transactional, ordered key-value store. Keys are compared as
// bytes; build them with Pack so that every backend lays data out the same way.
//
// A Store is safe for concurrent use by multiple goroutines.
type Store interface {
	// Update runs fn in a read-write transaction and commits it if fn returns
	// nil. If fn returns an error the transaction is rolled back and the error
	// is returned unchanged. fn may run more than once (a backend retries
	// conflicts), so it must have no effects outside tx.
	Update(ctx context.Context, fn func(tx Txn) error) error

	// View runs fn in a read-only transaction over a consistent snapshot.
	// fn may run more than once.
	View(ctx context.Context, fn func(tx ReadTxn) error) error

	// Close releases the store. Calls after Close return ErrClosed.
	Close() error
}

// ReadTxn reads from a consistent snapshot. It is valid only inside the
// function it was passed to and must not be used concurrently.
type ReadTxn interface {
	// Get returns the value stored at key, or ErrNotFound. The returned slice
	// belongs to the caller.
	Get(key []byte) ([]byte, error)

	// GetRange returns the pairs with begin <= key < end in key order (or in
	// reverse order with opts.Reverse), at most opts.Limit of them when
	// Limit > 0. Returned slices belong to the caller.
	GetRange(begin, end []byte, opts RangeOptions) ([]KeyValue, error)
}

// Txn is a read-write transaction: reads see its own writes.
type Txn interface {
	ReadTxn

	// Set writes value at key.
	Set(key, value []byte) error

	// Clear removes key; clearing a missing key is not an error.
	Clear(key []byte) error

	// ClearRange removes every key with begin <= key < end.
	ClearRange(begin, end []byte) error
}

// RangeOptions controls GetRange.
type RangeOptions struct {
	// Limit is the maximum number of pairs returned; 0 means no limit.
	Limit int
	// Reverse returns pairs in descending key order.
	Reverse bool
}

// KeyValue is one pair returned by GetRange.
type KeyValue struct {
	Key   []byte
	Value []byte
}

package kv

import (
	"context"
	"time"
)

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
	// MaxTxnDuration is the default time bound of a transaction, counted from
	// its start (including retries). FoundationDB refuses reads and commits
	// of transactions older than five seconds.
	MaxTxnDuration = 5 * time.Second
)

// Store is a transactional, ordered key-value store. Keys are compared as
// bytes; build them with Pack so that every backend lays data out the same way.
//
// A Store is safe for concurrent use by multiple goroutines. Transactions are
// serializable: each sees a consistent snapshot plus its own writes, and an
// Update commits only if no transaction committed in between changed what it
// read (FoundationDB detects conflicts and retries; the embedded backend runs
// one writer at a time).
//
// Every call bounds its transaction by ctx and by the backend's transaction
// timeout (MaxTxnDuration by default): past either, reads and the commit fail
// with an error matching ErrTimeout and the transaction is rolled back (writes
// are buffered, so a late write fails at the latest at commit). A cancelled
// ctx fails the next operation with an error matching context.Canceled.
type Store interface {
	// Update runs fn in a read-write transaction and commits it if fn returns
	// nil. If fn returns an error the transaction is rolled back and the error
	// is returned unchanged. fn may run more than once (a backend retries
	// conflicts), so it must have no effects outside tx.
	//
	// A write that failed inside fn (an invalid key, a size limit) fails the
	// whole transaction even if fn ignores the error, as FoundationDB reports
	// such errors at commit.
	Update(ctx context.Context, fn func(tx Txn) error) error

	// View runs fn in a read-only transaction over a consistent snapshot.
	// fn may run more than once.
	View(ctx context.Context, fn func(tx ReadTxn) error) error

	// Close releases the store. It waits for running transactions to return.
	// Calls after Close, including a second Close, return ErrClosed.
	Close() error
}

// ReadTxn reads from a consistent snapshot. It is valid only inside the
// function it was passed to and must not be used concurrently.
type ReadTxn interface {
	// Get returns the value stored at key, or ErrNotFound. The returned slice
	// belongs to the caller; an empty stored value is a non-nil empty slice.
	Get(key []byte) ([]byte, error)

	// GetRange returns the pairs with begin <= key < end in key order (or in
	// reverse order with opts.Reverse), at most opts.Limit of them when
	// Limit > 0; with Reverse the last Limit pairs of the range are returned.
	// begin >= end selects nothing. Returned slices belong to the caller.
	GetRange(begin, end []byte, opts RangeOptions) ([]KeyValue, error)
}

// Txn is a read-write transaction: reads see its own writes. Like ReadTxn it
// is valid only inside its function and must not be used concurrently.
type Txn interface {
	ReadTxn

	// Set writes value at key. The transaction keeps no reference to key or
	// value after Set returns.
	Set(key, value []byte) error

	// Clear removes key; clearing a missing key is not an error.
	Clear(key []byte) error

	// ClearRange removes every key with begin <= key < end; begin >= end
	// removes nothing.
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

// AsyncStore is a Store whose commit can be split in two, the way a
// write-ahead log allows (pebble's CommitNoSyncWait and SyncWait): the
// outcome of a transaction is decided, and visible to every later
// transaction, before it is durable.
//
// UpdateAsync runs fn like Update. When fn returns nil its writes are
// applied: later Update, UpdateAsync and View calls see them. The returned
// durable function blocks until they are on stable storage (the log's
// fsync) and reports a failure to get them there; it may be called once,
// from any goroutine. Transactions become durable in the order their
// UpdateAsync calls returned, so when one durable call returned nil every
// earlier transaction is durable too. Until then a crash may lose the
// writes, and the transactions that read them, together.
//
// Backends without a split commit (bbolt, FoundationDB) need not
// implement it: UpdateAsync (the function) falls back to Update.
type AsyncStore interface {
	Store
	UpdateAsync(ctx context.Context, fn func(tx Txn) error) (durable func() error, err error)
}

// UpdateAsync runs fn with s.UpdateAsync when s is an AsyncStore, and
// otherwise with s.Update, returning a durable function that reports nil
// at once (Update returns once the commit is durable).
func UpdateAsync(ctx context.Context, s Store, fn func(tx Txn) error) (durable func() error, err error) {
	if as, ok := s.(AsyncStore); ok {
		return as.UpdateAsync(ctx, fn)
	}
	if err := s.Update(ctx, fn); err != nil {
		return nil, err
	}
	return durableNow, nil
}

func durableNow() error { return nil }

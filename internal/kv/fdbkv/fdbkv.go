//go:build fdb

package fdbkv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/apple/foundationdb/bindings/go/src/fdb"

	"github.com/codi2/codi2/internal/kv"
)

// APIVersion is the FoundationDB API version Open selects: the highest the
// bindings support (7.3). The installed libfdb_c and the cluster must be 7.3
// or newer.
const APIVersion = 730

// FoundationDB error codes the store translates
// (https://apple.github.io/foundationdb/api-error-codes.html).
const (
	codePastVersion         = 1007 // transaction_too_old: older than 5 s
	codeNotCommitted        = 1020 // conflict
	codeCancelled           = 1025 // transaction_cancelled: ctx was done
	codeTimedOut            = 1031 // transaction_timed_out: our timeout
	codeKeyOutsideLegal     = 2004 // key_outside_legal_range: system keys
	codeTransactionTooLarge = 2101
	codeKeyTooLarge         = 2102
	codeValueTooLarge       = 2103
)

// Options configures Open. The zero value connects to the default cluster
// file.
type Options struct {
	// ClusterFile is the path of the cluster file. Empty means the client
	// library's default: $FDB_CLUSTER_FILE, ./fdb.cluster, then
	// /etc/foundationdb/fdb.cluster.
	ClusterFile string

	// TxnTimeout bounds every transaction from its start, retries included.
	// Zero means kv.MaxTxnDuration.
	TxnTimeout time.Duration

	// RetryLimit caps the retries of one transaction; zero retries until the
	// timeout. An Update that runs out of retries on conflicts returns an
	// error matching kv.ErrConflict.
	RetryLimit int
}

// Validate reports options that can never work.
func (o Options) Validate() error {
	switch {
	case o.TxnTimeout < 0:
		return fmt.Errorf("fdbkv: negative TxnTimeout %v", o.TxnTimeout)
	case o.RetryLimit < 0:
		return fmt.Errorf("fdbkv: negative RetryLimit %d", o.RetryLimit)
	}
	return nil
}

// Store is a kv.Store on a FoundationDB database. It is safe for concurrent
// use; transactions run concurrently and FoundationDB resolves conflicts,
// retrying the transaction function.
type Store struct {
	db         fdb.Database
	txnTimeout time.Duration
	retryLimit int

	mu      sync.Mutex
	closed  bool
	running sync.WaitGroup
}

var _ kv.Store = (*Store)(nil)

// Open selects APIVersion (once per process; a different version selected
// earlier is an error) and opens the database of opts.ClusterFile, starting
// the bindings' network thread if needed. Connecting is lazy: an unreachable
// cluster shows as transactions timing out.
//
// The bindings share one handle per cluster file and Close destroys it, so
// keep at most one Store per cluster file open at a time, and do not call
// Open concurrently with Open or Close.
func Open(opts Options) (*Store, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if opts.TxnTimeout == 0 {
		opts.TxnTimeout = kv.MaxTxnDuration
	}
	if err := fdb.APIVersion(APIVersion); err != nil {
		return nil, fmt.Errorf("fdbkv: select API version %d: %w", APIVersion, err)
	}
	db, err := fdb.OpenDatabase(opts.ClusterFile)
	if err != nil {
		return nil, fmt.Errorf("fdbkv: open cluster file %q: %w", opts.ClusterFile, err)
	}
	return &Store{db: db, txnTimeout: opts.TxnTimeout, retryLimit: opts.RetryLimit}, nil
}

// Update runs fn in a transaction and commits it, retrying fn on conflicts
// and other retryable FoundationDB errors (as fdb.Database.Transact does)
// until it commits, fails for good or runs out of time. An error fn returns
// that is not a retryable FoundationDB error is returned unchanged. fn must
// have no effects outside tx. Safe for concurrent use.
func (s *Store) Update(ctx context.Context, fn func(tx kv.Txn) error) error {
	return s.run(ctx, "update", true, func(t *txn) error { return fn(t) })
}

// View runs fn in a read-only transaction, retrying it on retryable errors.
// Its reads see one consistent snapshot, the database as of the first read.
// fn's error is returned unchanged. Safe for concurrent use.
func (s *Store) View(ctx context.Context, fn func(tx kv.ReadTxn) error) error {
	return s.run(ctx, "view", false, func(t *txn) error { return fn(t) })
}

// Close waits for running transactions to return and releases the database
// handle. Calls after Close, including a second Close, return kv.ErrClosed.
// Safe for concurrent use. The bindings' network thread keeps running: it
// can be started only once per process.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("fdbkv: close: %w", kv.ErrClosed)
	}
	s.closed = true
	s.mu.Unlock()
	s.running.Wait()
	s.db.Close()
	return nil
}

// run is the retry loop of Update and View, modelled on the bindings'
// Transact and ReadTransact, with ctx cancellation and a timeout.
func (s *Store) run(ctx context.Context, op string, writable bool, fn func(t *txn) error) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("fdbkv: %s: %w", op, kv.ErrClosed)
	}
	s.running.Add(1)
	s.mu.Unlock()
	defer s.running.Done()

	t := &txn{ctx: ctx, writable: writable}
	if err := t.alive(op); err != nil {
		return err
	}
	timeout := s.txnTimeout
	if d, ok := ctx.Deadline(); ok {
		if rem := time.Until(d); rem < timeout {
			timeout, t.ctxDeadline = rem, true
		}
	}
	if timeout <= 0 {
		return fmt.Errorf("fdbkv: %s: %w: %w", op, kv.ErrTimeout, context.DeadlineExceeded)
	}
	tr, err := s.db.CreateTransaction()
	if err != nil {
		return fmt.Errorf("fdbkv: %s: create transaction: %w", op, err)
	}
	t.tr = tr
	defer func() { t.done = true }()
	// The timeout counts from here across retries (API version >= 610), and
	// cancels the transaction: pending and later operations fail with 1031.
	if err := tr.Options().SetTimeout(max(1, timeout.Milliseconds())); err != nil {
		return fmt.Errorf("fdbkv: %s: set timeout: %w", op, err)
	}
	if s.retryLimit > 0 {
		if err := tr.Options().SetRetryLimit(int64(s.retryLimit)); err != nil {
			return fmt.Errorf("fdbkv: %s: set retry limit: %w", op, err)
		}
	}
	// Cancelling makes blocked futures return 1025 at once, so a done ctx
	// interrupts a read in flight, not just the next operation.
	stop := context.AfterFunc(ctx, tr.Cancel)
	defer stop()

	for {
		t.writes = kv.Writes{}
		err := fn(t)
		fromFn := err != nil
		if err == nil {
			err = t.writes.Err() // a write fn ignored
		}
		if err == nil && writable {
			if cerr := tr.Commit().Get(); cerr != nil {
				err = t.translate("commit", cerr)
			}
		}
		if err == nil {
			return nil
		}
		var fe fdb.Error
		if !errors.As(err, &fe) {
			return err // fn's own error, or a limit we enforce
		}
		// OnError waits out a backoff and resets tr for a retry, or returns
		// the error if it is not retryable (or the retry limit is reached).
		if rerr := tr.OnError(fe).Get(); rerr != nil {
			if fromFn {
				return err
			}
			return t.translate("commit", rerr)
		}
	}
}

// txn implements kv.Txn on an fdb.Transaction. Reads and writes wrap
// fdb.Error with %w, so the retry loop in run still sees it.
type txn struct {
	tr          fdb.Transaction
	ctx         context.Context
	ctxDeadline bool
	writable    bool
	done        bool

	writes kv.Writes // this attempt's writes; the first failed one fails the commit
}

// alive reports whether t may still run: fn has not returned and ctx is not
// done. FoundationDB enforces the timeout itself.
func (t *txn) alive(op string) error {
	if t.done {
		return fmt.Errorf("fdbkv: %s: %w", op, kv.ErrTxnDone)
	}
	if err := t.ctx.Err(); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("fdbkv: %s: %w: %w", op, kv.ErrTimeout, err)
		}
		return fmt.Errorf("fdbkv: %s: %w", op, err)
	}
	return nil
}

// translate maps a FoundationDB error onto the kv sentinels, keeping the
// fdb.Error in the chain.
func (t *txn) translate(op string, err error) error {
	var fe fdb.Error
	if !errors.As(err, &fe) {
		return fmt.Errorf("fdbkv: %s: %w", op, err)
	}
	var sentinel error
	switch fe.Code {
	case codeNotCommitted:
		sentinel = kv.ErrConflict
	case codeTimedOut, codePastVersion:
		sentinel = kv.ErrTimeout
	case codeCancelled:
		if cerr := t.ctx.Err(); cerr != nil {
			if errors.Is(cerr, context.DeadlineExceeded) {
				return fmt.Errorf("fdbkv: %s: %w: %w: %w", op, kv.ErrTimeout, cerr, err)
			}
			return fmt.Errorf("fdbkv: %s: %w: %w", op, cerr, err)
		}
	case codeKeyOutsideLegal:
		sentinel = kv.ErrInvalidKey
	case codeTransactionTooLarge:
		sentinel = kv.ErrTxnTooLarge
	case codeKeyTooLarge:
		sentinel = kv.ErrKeyTooLarge
	case codeValueTooLarge:
		sentinel = kv.ErrValueTooLarge
	}
	switch {
	case sentinel == kv.ErrTimeout && t.ctxDeadline:
		return fmt.Errorf("fdbkv: %s: %w: %w: %w", op, sentinel, context.DeadlineExceeded, err)
	case sentinel != nil:
		return fmt.Errorf("fdbkv: %s: %w: %w", op, sentinel, err)
	}
	return fmt.Errorf("fdbkv: %s: %w", op, err)
}

// Get implements kv.ReadTxn. A missing key returns kv.ErrNotFound itself.
func (t *txn) Get(key []byte) ([]byte, error) {
	if err := t.alive("get"); err != nil {
		return nil, err
	}
	if err := kv.CheckKey(key); err != nil {
		return nil, fmt.Errorf("fdbkv: get: %w", err)
	}
	v, err := t.tr.Get(fdb.Key(key)).Get()
	if err != nil {
		return nil, t.translate("get", err)
	}
	if v == nil {
		return nil, kv.ErrNotFound
	}
	return v, nil // copied out of the C library by the bindings
}

// GetRange implements kv.ReadTxn.
func (t *txn) GetRange(begin, end []byte, opts kv.RangeOptions) ([]kv.KeyValue, error) {
	if err := t.alive("get range"); err != nil {
		return nil, err
	}
	if err := kv.CheckRange(begin, end); err != nil {
		return nil, fmt.Errorf("fdbkv: get range: %w", err)
	}
	if bytes.Compare(begin, end) >= 0 {
		return nil, nil
	}
	r := fdb.KeyRange{Begin: fdb.Key(begin), End: fdb.Key(end)}
	kvs, err := t.tr.GetRange(r, fdb.RangeOptions{Limit: max(opts.Limit, 0), Reverse: opts.Reverse}).GetSliceWithError()
	if err != nil {
		return nil, t.translate("get range", err)
	}
	out := make([]kv.KeyValue, len(kvs))
	for i, p := range kvs {
		out[i] = kv.KeyValue{Key: p.Key, Value: p.Value}
	}
	return out, nil
}

// write runs the checks every write shares; kv.Writes keeps a failure so
// that the commit fails even if fn ignores the error.
func (t *txn) write(op string, n int, check error) error {
	if err := t.alive(op); err != nil {
		if t.writable && !t.done {
			t.writes.Fail(err)
		}
		return err
	}
	if !t.writable {
		return fmt.Errorf("fdbkv: %s: %w", op, kv.ErrReadOnly)
	}
	return t.writes.Add("fdbkv", op, n, check)
}

// Set implements kv.Txn. The C client copies key and value.
func (t *txn) Set(key, value []byte) error {
	check := kv.CheckKey(key)
	if check == nil {
		check = kv.CheckValue(value)
	}
	if err := t.write("set", len(key)+len(value), check); err != nil {
		return err
	}
	t.tr.Set(fdb.Key(key), value)
	return nil
}

// Clear implements kv.Txn.
func (t *txn) Clear(key []byte) error {
	if err := t.write("clear", len(key), kv.CheckKey(key)); err != nil {
		return err
	}
	t.tr.Clear(fdb.Key(key))
	return nil
}

// ClearRange implements kv.Txn. It costs the same whatever the range holds;
// only the bounds count toward the transaction size.
func (t *txn) ClearRange(begin, end []byte) error {
	if err := t.write("clear range", len(begin)+len(end), kv.CheckRange(begin, end)); err != nil {
		return err
	}
	if bytes.Compare(begin, end) >= 0 {
		return nil // FoundationDB rejects an inverted range; kv makes it a no-op
	}
	t.tr.ClearRange(fdb.KeyRange{Begin: fdb.Key(begin), End: fdb.Key(end)})
	return nil
}

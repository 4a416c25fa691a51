package boltkv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/codi2/codi2/internal/kv"
)

// bucket holds every key. One bucket keeps the layout identical to a
// FoundationDB keyspace: namespaces are tuple prefixes, not buckets.
var bucket = []byte("kv")

// DefaultTimeout is how long Open waits for the file lock when
// Options.Timeout is zero.
const DefaultTimeout = time.Second

// Options configures Open. The zero value is ready to use.
type Options struct {
	// Timeout is how long Open waits for the file lock when another process
	// has the file open. Zero means DefaultTimeout. Past it Open fails with
	// ErrLocked.
	Timeout time.Duration

	// TxnTimeout bounds every transaction, from its start, including the
	// wait for the writer slot. Zero means kv.MaxTxnDuration, FoundationDB's
	// limit, so that work which fits here also fits a cluster.
	TxnTimeout time.Duration

	// NoSync skips the fsync of each commit. Commits are then lost, never
	// half-applied, on power loss or an OS crash (a killed process loses
	// nothing). For tests and bulk loads only.
	NoSync bool

	// InitialMmapSize is the size, in bytes, of the initial memory map.
	// bbolt must remap to grow the file, and a remap waits for every open
	// View; a map larger than the file avoids those stalls. It reserves
	// address space, not memory or disk. Zero uses bbolt's default (small).
	InitialMmapSize int

	// FillPercent is how full bbolt packs the pages it splits at a commit,
	// from 0.1 to 1.0 (bbolt's Bucket.FillPercent); zero means bbolt's
	// default, 0.5. Pages split half full leave room for keys inserted
	// between existing ones, but keys appended in order never use that
	// room: bbolt's documentation suggests a high value when "the workload
	// is mostly append-only", and AppendFillPercent is the one for such
	// files. It changes how new pages are laid out, not the file format:
	// any value opens any file.
	FillPercent float64

	// PageSize is the page size, in bytes, of a file Open creates: a power
	// of two from 4,096 to 65,536 (bbolt's Options.PageSize; the on-disk
	// page size is fixed at creation and read back from an existing
	// file's meta page, so this changes nothing for a file that exists).
	// Zero means the OS page size. bbolt writes each dirty page of a
	// commit with its own pwrite, so for a file whose commits append
	// many small values, larger pages cost fewer system calls per byte.
	PageSize int
}

// AppendFillPercent is the FillPercent for files whose keys are mostly
// appended in order with some inserted at random, such as the audit log
// (records and indexes appended, a Nats-Msg-Id key per event inserted
// wherever the id sorts). Measured on 300 of the audit log's commits of
// 1,000 events (audit's BenchmarkApply): with ids counting up, 0.8 writes
// 188 pages per commit where the default writes 308 and 1.0 writes 154;
// with random ids, whose inserts split a full page every time, 0.8 writes
// 1,219 pages, the default 1,230 and 1.0 1,715. 0.8 is never worse than
// the default.
const AppendFillPercent = 0.8

// AppendPageSize is the PageSize for files whose commits append many
// small values in key order, such as the audit log (records of about 600
// bytes, a thousand or more per commit during an import). bbolt writes
// each dirty page with its own pwrite, and at 4 KiB pages that was the
// largest single cost of a v1 import's audit writer (4.9 s of a
// million-line import's 39 s of CPU). Measured with audit's BenchmarkApply
// (commits of 1,000 events at AppendFillPercent): with ids counting up,
// 16 KiB pages write 55 pages per commit where 4 KiB pages write 188, at
// 5.3 µs of CPU per event against 6.0; with random ids each insert
// dirties its own page, and 16 KiB pages cost 27 µs per event against 25.
// The ids codi2 itself sends (NUIDs, state outcome ids, import offsets)
// count up.
const AppendPageSize = 16384

// Validate reports options that can never work.
func (o Options) Validate() error {
	switch {
	case o.Timeout < 0:
		return fmt.Errorf("boltkv: negative Timeout %v", o.Timeout)
	case o.TxnTimeout < 0:
		return fmt.Errorf("boltkv: negative TxnTimeout %v", o.TxnTimeout)
	case o.InitialMmapSize < 0:
		return fmt.Errorf("boltkv: negative InitialMmapSize %d", o.InitialMmapSize)
	case o.FillPercent != 0 && (o.FillPercent < 0.1 || o.FillPercent > 1):
		return fmt.Errorf("boltkv: FillPercent %v is outside 0.1 to 1.0", o.FillPercent)
	case o.PageSize != 0 && (o.PageSize < 4096 || o.PageSize > 65536 || o.PageSize&(o.PageSize-1) != 0):
		return fmt.Errorf("boltkv: PageSize %d is not a power of two from 4096 to 65536", o.PageSize)
	}
	return nil
}

// withDefaults returns o with zero fields set to their defaults.
func (o Options) withDefaults() Options {
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.TxnTimeout == 0 {
		o.TxnTimeout = kv.MaxTxnDuration
	}
	if o.FillPercent == 0 {
		o.FillPercent = bolt.DefaultFillPercent
	}
	return o
}

// Store is a kv.Store backed by one bbolt file. It is safe for concurrent
// use: Updates run one at a time, in the order they get the writer slot, and
// Views run concurrently with each other and with the Update.
type Store struct {
	db          *bolt.DB
	path        string
	txnTimeout  time.Duration
	fillPercent float64
	commits     atomic.Int64 // Updates committed, for Stats

	// gate counts running transactions for Close and holds the single
	// writer slot. Holding it before bbolt's own writer lock lets a waiting
	// Update give up on ctx, timeout or Close.
	gate *kv.Gate
}

var _ kv.Store = (*Store)(nil)

// Open opens or creates the database file at path; its directory must exist.
// Only one process may have a file open: Open fails with an error matching
// ErrLocked if another process keeps it locked for Options.Timeout. The
// caller must Close the Store.
func Open(path string, opts Options) (s *Store, err error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer guard(path, "open", &err)
	opts = opts.withDefaults()
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:         opts.Timeout,
		NoSync:          opts.NoSync,
		InitialMmapSize: opts.InitialMmapSize,
		FreelistType:    bolt.FreelistMapType,
		PageSize:        opts.PageSize,
	})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("boltkv: open %s: no file lock after %v: %w", path, opts.Timeout, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("boltkv: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucket)
		return err
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("boltkv: open %s: create bucket: %w", path, err)
	}
	return &Store{
		db:          db,
		path:        path,
		txnTimeout:  opts.TxnTimeout,
		fillPercent: opts.FillPercent,
		gate:        kv.NewGate("boltkv: " + path),
	}, nil
}

// PageSize returns the file's page size in bytes: the one it was created
// with (see Options.PageSize).
func (s *Store) PageSize() int { return s.db.Info().PageSize }

// Stats counts the work of a Store's commits since Open. It is a plain
// value.
type Stats struct {
	// Commits is the number of Updates that committed.
	Commits int64
	// PageWrites is the number of writes bbolt issued to the file: one
	// per dirty page (a page with overflow pages is one write), and one
	// for the meta page of each commit. Every write is a pwrite system
	// call, the larger part of a commit's CPU.
	PageWrites int64
}

// Stats returns the Store's counters. Safe for concurrent use; a commit
// running meanwhile may be counted in one field and not yet in the other.
func (s *Store) Stats() Stats {
	tx := s.db.Stats().TxStats
	return Stats{Commits: s.commits.Load(), PageWrites: tx.GetWrite()}
}

// Path returns the file the Store was opened on. Safe for concurrent use.
func (s *Store) Path() string { return s.path }

// Update runs fn in the single read-write transaction and commits it, with an
// fsync unless Options.NoSync, before returning nil. It waits for the writer
// slot (bounded by ctx and the transaction timeout). An error from fn is
// returned unchanged after rolling back; a write error fn ignored fails the
// commit. fn runs once here, but kv.Store allows retries: keep fn free of
// outside effects. Safe for concurrent use.
func (s *Store) Update(ctx context.Context, fn func(tx kv.Txn) error) error {
	if err := s.gate.Enter(); err != nil {
		return err
	}
	defer s.gate.Exit()
	t, err := s.newTxn(ctx, true)
	if err != nil {
		return err
	}
	if err := s.gate.Acquire(&t.Lifetime); err != nil {
		return err
	}
	defer s.gate.Release()

	btx, b, err := s.begin(true)
	if err != nil {
		return err
	}
	t.tx, t.b, t.path = btx, b, s.path
	committed := false
	defer func() {
		t.Done = true
		if !committed {
			// Also runs when fn panics, so the writer slot is not leaked.
			_ = btx.Rollback()
		}
	}()

	if err := fn(t); err != nil {
		return err
	}
	if err := t.writes.Err(); err != nil {
		return err
	}
	if err := t.Alive("commit"); err != nil {
		return err
	}
	if err := s.commit(btx); err != nil {
		committed = true // bbolt rolled back already
		return err
	}
	committed = true
	s.commits.Add(1)
	return nil
}

// begin starts a bbolt transaction and opens the bucket, which reads the
// root pages: a damaged one fails with kv.ErrCorrupt.
func (s *Store) begin(writable bool) (btx *bolt.Tx, b *bolt.Bucket, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer guard(s.path, "begin", &err)
	btx, err = s.db.Begin(writable)
	if err != nil {
		return nil, nil, fmt.Errorf("boltkv: begin: %w", err)
	}
	if b = btx.Bucket(bucket); b == nil {
		_ = btx.Rollback()
		return nil, nil, fmt.Errorf("boltkv: %s: bucket %q is missing: %w", s.path, bucket, kv.ErrCorrupt)
	}
	// bbolt keeps the fill per transaction, not in the file.
	b.FillPercent = s.fillPercent
	return btx, b, nil
}

// commit commits btx; bbolt reads pages while it rebalances and spills, so
// a damaged one fails the commit with kv.ErrCorrupt (bbolt's rollback
// included).
func (s *Store) commit(btx *bolt.Tx) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer guard(s.path, "commit", &err)
	defer func() {
		if err != nil && errors.Is(err, kv.ErrCorrupt) {
			_ = btx.Rollback()
		}
	}()
	if err := btx.Commit(); err != nil {
		return fmt.Errorf("boltkv: commit: %w", err)
	}
	return nil
}

// guard turns a panic in bbolt into kv.ErrCorrupt in *err. bbolt panics
// (or faults on its memory map) when a page it reads is damaged: an invalid
// page type, an element count past the page. That must fail one request or
// the start, never the process, so every call into bbolt that reads pages
// runs with guard deferred. Memory faults become panics for the duration,
// so a page id past the end of the map is caught too:
//
//	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
//	defer guard(path, op, &err)
//
// The first line makes faults panics now and restores the old setting on
// return, without the closure (an allocation per call) a helper returning
// the restore would cost. guard must be deferred directly (recover works
// only there), after that restore, so that it runs first.
func guard(path, op string, err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("boltkv: %s: %s: %w (bbolt: %v)", path, op, kv.ErrCorrupt, r)
	}
}

// View runs fn in a read-only transaction over the snapshot current when it
// starts; commits made while fn runs are invisible to it. fn's error is
// returned unchanged. Views never wait for Update, but while a View is open
// an Update that must grow the file waits for it (see
// Options.InitialMmapSize), so keep Views short. Safe for concurrent use.
func (s *Store) View(ctx context.Context, fn func(tx kv.ReadTxn) error) error {
	if err := s.gate.Enter(); err != nil {
		return err
	}
	defer s.gate.Exit()
	t, err := s.newTxn(ctx, false)
	if err != nil {
		return err
	}
	btx, b, err := s.begin(false)
	if err != nil {
		return err
	}
	t.tx, t.b, t.path = btx, b, s.path
	defer func() {
		t.Done = true
		_ = btx.Rollback()
	}()
	return fn(t)
}

// Close waits for running transactions to return, fails Updates still
// waiting for the writer slot with kv.ErrClosed, and closes the file. Calls
// after Close, including a second Close, return kv.ErrClosed. Safe for
// concurrent use.
func (s *Store) Close() error {
	if err := s.gate.Close(); err != nil {
		return err
	}
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("boltkv: close %s: %w", s.path, err)
	}
	return nil
}

// txn implements kv.Txn (and so kv.ReadTxn) on a bbolt transaction. Writes
// are refused in a View's txn.
type txn struct {
	tx   *bolt.Tx
	b    *bolt.Bucket
	path string // the store's file, for errors

	kv.Lifetime // its clock; Done once fn returned
	writable    bool

	writes kv.Writes // bytes against kv.MaxTxnWriteBytes; the first failed write fails the commit
	arena  []byte    // copies of values given to bbolt; see copyValue
	c      *bolt.Cursor
}

// cursor returns the transaction's cursor over the bucket, made on first
// use. Every use positions it with Seek, First or Last first, which walks
// from the root again, so the writes between two uses do not matter
// (bbolt: "reposition your cursor after mutating data").
func (t *txn) cursor() *bolt.Cursor {
	if t.c == nil {
		t.c = t.b.Cursor()
	}
	return t.c
}

// Values are copied into blocks that start at minArena bytes and double up
// to maxArena; values larger than a quarter of maxArena get their own copy.
const (
	minArena = 1 << 10
	maxArena = 64 << 10
)

// copyValue returns a copy of v that stays valid until the commit, when
// bbolt writes it out. Copies are carved from shared blocks rather than
// allocated one by one, because a batch of small values would otherwise cost
// an allocation each. A block is never grown in place, so earlier copies stay
// put. The copy is never nil, so an empty value stays distinct from a
// missing key.
func (t *txn) copyValue(v []byte) []byte {
	switch {
	case len(v) == 0:
		return []byte{}
	case len(v) > maxArena/4:
		return append(make([]byte, 0, len(v)), v...)
	case len(v) > cap(t.arena)-len(t.arena):
		size := min(max(2*cap(t.arena), minArena), maxArena)
		for size < len(v) {
			size *= 2
		}
		t.arena = make([]byte, 0, size)
	}
	n := len(t.arena)
	t.arena = append(t.arena, v...)
	return t.arena[n:len(t.arena):len(t.arena)]
}

// Get implements kv.ReadTxn. A missing key returns kv.ErrNotFound itself,
// unwrapped, because misses are common and the caller knows the key.
func (t *txn) Get(key []byte) (v []byte, err error) {
	if err := t.Alive("get"); err != nil {
		return nil, err
	}
	if err := kv.CheckKey(key); err != nil {
		return nil, fmt.Errorf("boltkv: get: %w", err)
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer guard(t.path, "get", &err)
	// Bucket.Get would allocate a cursor and its stack for every key; the
	// transaction's own cursor, sought afresh, reads the same pairs. The
	// bucket holds no nested buckets, whose values Seek returns as nil.
	k, v := t.cursor().Seek(key)
	if v == nil || !bytes.Equal(k, key) {
		return nil, kv.ErrNotFound
	}
	// bbolt memory is valid only inside the transaction.
	return append(make([]byte, 0, len(v)), v...), nil
}

// GetRange implements kv.ReadTxn.
func (t *txn) GetRange(begin, end []byte, opts kv.RangeOptions) (out []kv.KeyValue, err error) {
	if err := t.Alive("get range"); err != nil {
		return nil, err
	}
	if err := kv.CheckRange(begin, end); err != nil {
		return nil, fmt.Errorf("boltkv: get range: %w", err)
	}
	if bytes.Compare(begin, end) >= 0 {
		return nil, nil
	}
	defer func() {
		if err != nil {
			out = nil // may point into bbolt's memory
		}
	}()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer guard(t.path, "get range", &err)
	size := 0
	full := func() bool { return opts.Limit > 0 && len(out) >= opts.Limit }
	c := t.cursor()
	if opts.Reverse {
		k, v := c.Seek(end)
		if k == nil {
			k, v = c.Last()
		} else {
			k, v = c.Prev()
		}
		for ; k != nil && bytes.Compare(k, begin) >= 0 && !full(); k, v = c.Prev() {
			out = append(out, kv.KeyValue{Key: k, Value: v})
			size += len(k) + len(v)
		}
	} else {
		for k, v := c.Seek(begin); k != nil && bytes.Compare(k, end) < 0 && !full(); k, v = c.Next() {
			out = append(out, kv.KeyValue{Key: k, Value: v})
			size += len(k) + len(v)
		}
	}
	// Copy out of bbolt's memory into one allocation.
	buf := make([]byte, 0, size)
	for i, p := range out {
		n := len(buf)
		buf = append(buf, p.Key...)
		out[i].Key = buf[n:len(buf):len(buf)]
		n = len(buf)
		buf = append(buf, p.Value...)
		out[i].Value = buf[n:len(buf):len(buf)]
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
		return fmt.Errorf("boltkv: %s: %w", op, kv.ErrReadOnly)
	}
	return t.writes.Add("boltkv", op, n, check)
}

// Set implements kv.Txn.
func (t *txn) Set(key, value []byte) (err error) {
	check := kv.CheckKey(key)
	if check == nil {
		check = kv.CheckValue(value)
	}
	if err := t.write("set", len(key)+len(value), check); err != nil {
		return err
	}
	// Guarded inline rather than through a closure: Set runs for every
	// key a batch writes (see guard).
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer t.guardWrite("set", &err)
	// bbolt copies the key but keeps value until commit; the caller may
	// reuse it as soon as Set returns.
	if err := t.b.Put(key, t.copyValue(value)); err != nil {
		return t.fail(fmt.Errorf("boltkv: set: %w", err))
	}
	return nil
}

// guardWrite is guard for a write: a damaged page's error is also recorded
// so that the commit fails. Like guard it must be deferred directly, after
// the SetPanicOnFault restore.
func (t *txn) guardWrite(op string, err *error) {
	if r := recover(); r != nil {
		*err = t.fail(fmt.Errorf("boltkv: %s: %s: %w (bbolt: %v)", t.path, op, kv.ErrCorrupt, r))
	}
}

// Clear implements kv.Txn.
func (t *txn) Clear(key []byte) (err error) {
	if err := t.write("clear", len(key), kv.CheckKey(key)); err != nil {
		return err
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer t.guardWrite("clear", &err)
	if err := t.b.Delete(key); err != nil {
		return t.fail(fmt.Errorf("boltkv: clear: %w", err))
	}
	return nil
}

// ClearRange implements kv.Txn. Unlike FoundationDB, where a range clear
// costs the same whatever it covers, bbolt deletes key by key: its cost grows
// with the number of keys removed.
func (t *txn) ClearRange(begin, end []byte) (err error) {
	if err := t.write("clear range", len(begin)+len(end), kv.CheckRange(begin, end)); err != nil {
		return err
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer t.guardWrite("clear range", &err)
	c := t.cursor()
	// Seek again after each delete: a bbolt cursor skips a key when
	// Next follows Delete.
	for k, _ := c.Seek(begin); k != nil && bytes.Compare(k, end) < 0; k, _ = c.Seek(begin) {
		if err := c.Delete(); err != nil {
			return t.fail(fmt.Errorf("boltkv: clear range: %w", err))
		}
	}
	return nil
}

// fail records a storage error so that the commit fails too.
func (t *txn) fail(err error) error {
	t.writes.Fail(err)
	return err
}

// newTxn starts a transaction's clock (kv.Lifetime).
func (s *Store) newTxn(ctx context.Context, writable bool) (*txn, error) {
	life, err := kv.NewLifetime(ctx, s.txnTimeout, "boltkv")
	if err != nil {
		return nil, err
	}
	return &txn{Lifetime: life, path: s.path, writable: writable}, nil
}

package pebblekv

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/bloom"
	"github.com/cockroachdb/pebble/vfs"
	"github.com/rs/zerolog"

	"github.com/codi2/codi2/internal/kv"
)

// Defaults of Options' zero fields.
const (
	// DefaultCacheSize is the block cache, in bytes, when Options.CacheSize
	// is zero. codi2's state fits in it many times over.
	DefaultCacheSize = 32 << 20

	// DefaultMemTableSize is the memtable, in bytes, when
	// Options.MemTableSize is zero: pebble's benchmark configuration and
	// CockroachDB's. Against pebble's 4 MiB default it cut the CPU of a
	// 1,000,000-line v1 import by 30-40 % (README.md, "v1 import on pebble").
	DefaultMemTableSize = 64 << 20

	// DefaultFilterBitsPerKey is the bloom filter's bits per key when
	// Options.FilterBitsPerKey is zero: about 1 % false positives
	// (pebble's bloom package).
	DefaultFilterBitsPerKey = 10

	// DefaultCompactionConcurrency is the number of compactions that may
	// run at once when Options.CompactionConcurrency is zero: pebble's
	// default, one core of a small machine.
	DefaultCompactionConcurrency = 1

	// MaxMemTableSize is the largest Options.MemTableSize: pebble's
	// limit (its arena offsets are 32-bit).
	MaxMemTableSize = 4<<30 - 1
)

// Options configures Open. The zero value is ready to use.
type Options struct {
	// FS is the file system pebble writes to; nil means the operating
	// system's (vfs.Default). Tests pass vfs.NewStrictMem() to simulate a
	// power loss (its ResetToSyncedState drops every write not fsynced).
	FS vfs.FS

	// Log receives pebble's messages: its informational lines (table
	// flushes, log rotations) at debug level, background errors at error
	// level, write stalls at warn level. The zero Logger discards them.
	Log zerolog.Logger

	// CacheSize is the size, in bytes, of the block cache of table reads.
	// Zero means DefaultCacheSize. pebble charges its memtables to the
	// same cache (DB.newMemTable reserves their size in it), so Open makes
	// the cache this plus the memtables that may queue
	// (memTableStopWrites times MemTableSize): a memtable as large as the
	// cache would otherwise leave table reads no cache at all.
	CacheSize int64

	// TxnTimeout bounds every transaction, from its start, including the
	// wait for the writer slot. Zero means kv.MaxTxnDuration, FoundationDB's
	// limit, so that work which fits here also fits a cluster.
	TxnTimeout time.Duration

	// MemTableSize is the size, in bytes, of the memtable, where commits
	// collect (besides the log) until pebble flushes them to a table of
	// level 0. Zero means DefaultMemTableSize; at most MaxMemTableSize.
	// Larger means fewer flushes and compactions, and keys rewritten while
	// in the memtable (an index's posting-list block, a watermark) reach
	// the tables once; it costs memory (up to memTableStopWrites of them
	// while flushes lag) and a longer log replay at Open.
	MemTableSize int64

	// FilterBitsPerKey is the size, in bits per key, of the bloom filter
	// of every table above the last level, which spares a Get of a
	// missing key the table's index and data blocks. Zero means
	// DefaultFilterBitsPerKey; negative means no filters. Tables keep the
	// filter they were written with, so a change applies to new tables.
	FilterBitsPerKey int

	// CompactionConcurrency is the number of compactions pebble may run at
	// once (besides flushes). Zero means DefaultCompactionConcurrency;
	// more drain level 0 faster when writes outpace one core, at the cost
	// of the cores commits run on.
	CompactionConcurrency int
}

// Validate reports options that can never work.
func (o Options) Validate() error {
	switch {
	case o.CacheSize < 0:
		return fmt.Errorf("pebblekv: negative CacheSize %d", o.CacheSize)
	case o.TxnTimeout < 0:
		return fmt.Errorf("pebblekv: negative TxnTimeout %v", o.TxnTimeout)
	case o.MemTableSize < 0 || o.MemTableSize > MaxMemTableSize:
		return fmt.Errorf("pebblekv: MemTableSize %d is not between 0 and %d bytes", o.MemTableSize, int64(MaxMemTableSize))
	case o.CompactionConcurrency < 0:
		return fmt.Errorf("pebblekv: negative CompactionConcurrency %d", o.CompactionConcurrency)
	}
	return nil
}

// withDefaults returns o with zero fields set to their defaults.
func (o Options) withDefaults() Options {
	if o.FS == nil {
		o.FS = vfs.Default
	}
	if o.CacheSize == 0 {
		o.CacheSize = DefaultCacheSize
	}
	if o.TxnTimeout == 0 {
		o.TxnTimeout = kv.MaxTxnDuration
	}
	if o.MemTableSize == 0 {
		o.MemTableSize = DefaultMemTableSize
	}
	if o.FilterBitsPerKey == 0 {
		o.FilterBitsPerKey = DefaultFilterBitsPerKey
	}
	if o.CompactionConcurrency == 0 {
		o.CompactionConcurrency = DefaultCompactionConcurrency
	}
	return o
}

// Tuning that Options does not expose, after pebble's own benchmark
// configuration (cmd/pebble/db.go) and its option docs (options.go), sized
// for codi2's write load on a small machine.
const (
	// memTableStopWrites is how many memtables may queue for a flush
	// before commits wait (pebble's MemTableStopWritesThreshold; default
	// 2, its benchmark 4): a burst goes on while one flush runs.
	memTableStopWrites = 4
	// l0CompactionThreshold is the read amplification of level 0 (its
	// sublevels) that starts a compaction into the base level (pebble's
	// default 4, its benchmark 2).
	l0CompactionThreshold = 4
	// l0StopWrites is the read amplification of level 0 at which commits
	// wait (pebble's L0StopWritesThreshold; default 12, its benchmark
	// 1000): high, so that an import is slowed by compaction debt only
	// when level 0 is far behind.
	l0StopWrites = 24
	// lBaseMaxBytes is the size of the level level 0 compacts into, in
	// bytes (pebble's default, 64 MiB); the levels below are 10 times the
	// one above.
	lBaseMaxBytes = 64 << 20
	// targetFileSize is level 0's table size, in bytes, doubling per level
	// below (pebble's defaults, 2 MiB).
	targetFileSize = 2 << 20
	// numLevels is pebble's number of levels; the last one holds most of
	// the data.
	numLevels = 7
)

// cacheBytes is the size of pebble's cache: the block cache plus the
// memtables pebble reserves in it (see Options.CacheSize).
func (o Options) cacheBytes() int64 {
	return o.CacheSize + memTableStopWrites*o.MemTableSize
}

// pebbleOptions returns the pebble options of o (with its defaults set)
// for the database on lock's directory.
func (o Options) pebbleOptions(lock *pebble.Lock, cache *pebble.Cache, logger pebbleLogger) *pebble.Options {
	po := &pebble.Options{
		FS:                          o.FS,
		Lock:                        lock,
		Cache:                       cache,
		Logger:                      logger,
		EventListener:               logger.events(),
		FormatMajorVersion:          pebble.FormatNewest,
		MemTableSize:                uint64(o.MemTableSize),
		MemTableStopWritesThreshold: memTableStopWrites,
		L0CompactionThreshold:       l0CompactionThreshold,
		L0StopWritesThreshold:       l0StopWrites,
		LBaseMaxBytes:               lBaseMaxBytes,
		Levels:                      make([]pebble.LevelOptions, numLevels),
	}
	concurrency := o.CompactionConcurrency
	po.MaxConcurrentCompactions = func() int { return concurrency }
	for i := range po.Levels {
		l := &po.Levels[i]
		l.TargetFileSize = targetFileSize << i
		// A table-level filter is one lookup per table, no index block
		// first (pebble's LevelOptions.FilterType). The last level has
		// one too: a transaction's point reads seek with
		// IterOptions.UseL6Filters (see txn.Get), which reads it.
		if o.FilterBitsPerKey > 0 {
			l.FilterPolicy = bloom.FilterPolicy(o.FilterBitsPerKey)
			l.FilterType = pebble.TableFilter
		}
	}
	po.Comparer = comparer
	return po
}

// comparer is pebble's default byte-wise comparer with a Split that makes
// the whole key its prefix, so that Iterator.SeekPrefixGE is a point
// lookup that consults the tables' bloom filters (pebble requires a Split
// for it). Filters are built on the whole key either way, and the name is
// the default's, so a database written without it opens with it and the
// reverse.
var comparer = func() *pebble.Comparer {
	c := *pebble.DefaultComparer
	c.Split = func(key []byte) int { return len(key) }
	return &c
}()

// Store is a kv.AsyncStore backed by one pebble database. It is safe for
// concurrent use: Update and UpdateAsync run one at a time, in the order
// they get the writer slot (so transactions are serializable), and Views
// run concurrently with each other and with the writer.
type Store struct {
	db         *pebble.DB
	dir        string
	txnTimeout time.Duration

	// gate counts running transactions for Close and holds the single
	// writer slot, held while fn runs and its batch is applied; a waiting
	// Update gives up on ctx, timeout or Close.
	gate *kv.Gate
	// last is the last commit applied without waiting for its fsync, nil
	// when the last commit waited for it. A transaction that writes nothing
	// is durable when last is. Guarded by the writer slot.
	last *pending
	// failed, once set, fails every later commit: pebble found it could
	// not go on (see commit). Guarded by the writer slot.
	failed error
}

var _ kv.AsyncStore = (*Store)(nil)

// Open opens or creates the pebble database in dir (created if missing,
// with its parents). Only one Store may have a directory open: Open fails
// with an error matching ErrLocked if its LOCK file is held. Opening
// replays the write-ahead log; a damaged database fails with an error
// matching kv.ErrCorrupt. The caller must Close the Store.
func Open(dir string, opts Options) (*Store, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	if err := mkdirSynced(opts.FS, dir); err != nil {
		return nil, fmt.Errorf("pebblekv: open %s: %w", dir, err)
	}
	// Locking first tells a held lock apart from every other failure.
	lock, err := pebble.LockDirectory(dir, opts.FS)
	if err != nil {
		return nil, fmt.Errorf("pebblekv: open %s: %w (%v)", dir, ErrLocked, err)
	}
	// Open takes its own reference to the lock and to the cache; the
	// database releases them when it closes.
	defer lock.Close()
	cache := pebble.NewCache(opts.cacheBytes())
	defer cache.Unref()
	logger := pebbleLogger{opts.Log}
	db, err := pebble.Open(dir, opts.pebbleOptions(lock, cache, logger))
	if err != nil {
		return nil, wrap(dir, "open", err)
	}
	return &Store{
		db:         db,
		dir:        dir,
		txnTimeout: opts.TxnTimeout,
		gate:       kv.NewGate("pebblekv: " + dir),
	}, nil
}

// mkdirSynced creates dir and its missing parents and fsyncs the directory
// holding each one it created: pebble syncs the files it makes inside dir
// and dir itself, but a new directory's own entry is durable only once its
// parent is synced (a power loss would otherwise take the whole database).
func mkdirSynced(fs vfs.FS, dir string) error {
	var created []string
	for d := dir; ; d = fs.PathDir(d) {
		if _, err := fs.Stat(d); err == nil {
			break
		}
		created = append(created, d)
		if fs.PathDir(d) == d {
			break
		}
	}
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for i := len(created) - 1; i >= 0; i-- {
		parent, err := fs.OpenDir(fs.PathDir(created[i]))
		if err != nil {
			return err
		}
		err = parent.Sync()
		if cerr := parent.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("sync the directory holding %s: %w", created[i], err)
		}
	}
	return nil
}

// wrap adds the operation to a pebble error, and kv.ErrCorrupt when pebble
// found damaged bytes.
func wrap(dir, op string, err error) error {
	if pebble.IsCorruptionError(err) {
		return fmt.Errorf("pebblekv: %s: %s: %w: %w", dir, op, kv.ErrCorrupt, err)
	}
	return fmt.Errorf("pebblekv: %s: %s: %w", dir, op, err)
}

// Dir returns the directory the Store was opened on. Safe for concurrent
// use.
func (s *Store) Dir() string { return s.dir }

// Update runs fn in the single read-write transaction, applies its writes
// and returns nil once they are fsynced to the write-ahead log (and with
// them every commit before). It waits for the writer slot (bounded by ctx
// and the transaction timeout). An error from fn is returned unchanged and
// nothing is written; a write error fn ignored fails the commit. fn runs
// once here, but kv.Store allows retries: keep fn free of outside effects.
// Safe for concurrent use.
func (s *Store) Update(ctx context.Context, fn func(tx kv.Txn) error) error {
	p, err := s.update(ctx, fn, true)
	if err != nil {
		return err
	}
	return p.wait()
}

// UpdateAsync implements kv.AsyncStore. It runs fn like Update and, when
// fn returns nil, applies its writes with pebble's DB.ApplyNoSyncWait:
// they are visible to every later transaction when UpdateAsync returns,
// and the writer slot is free again while the log's fsync is in flight,
// so the next transaction's commit joins the same or the next fsync
// (pebble's log writer syncs everything written before a sync request, in
// one fdatasync, for every commit queued by then).
//
// durable waits for the fsync (Batch.SyncWait) and returns its error. The
// order kv.AsyncStore promises comes from pebble: the log is written in
// commit order under the commit pipeline's mutex, its flusher pops sync
// waiters in that order after a sync that covers all of them, and the
// first failed sync is kept and returned to every later waiter, so a
// durable call returns nil only if every earlier commit's sync succeeded.
// A transaction that wrote nothing is durable when the commit before it
// is. durable may be called from any goroutine, more than once, and after
// Close (Close syncs the log). Not calling it costs nothing but the
// batch's memory until it is collected. On error durable is nil and,
// unless the error is a failed commit (below), nothing was applied.
//
// A failed write or fsync of the log is fatal to pebble: its writes may
// already be visible (pebble applies a batch before its sync completes),
// durable reports the failure, and this and every later commit of the
// store fails until it is reopened (see commit). Safe for concurrent use.
func (s *Store) UpdateAsync(ctx context.Context, fn func(tx kv.Txn) error) (durable func() error, err error) {
	p, err := s.update(ctx, fn, false)
	if err != nil {
		return nil, err
	}
	return p.wait, nil
}

// update runs fn on an indexed batch while holding the writer slot and
// commits the batch: with sync, it waits for the log's fsync; otherwise it
// only applies it. It returns what the caller waits on for durability.
func (s *Store) update(ctx context.Context, fn func(tx kv.Txn) error, sync bool) (*pending, error) {
	if err := s.gate.Enter(); err != nil {
		return nil, err
	}
	defer s.gate.Exit()
	t, err := s.newTxn(ctx, true)
	if err != nil {
		return nil, err
	}
	if err := s.gate.Acquire(&t.Lifetime); err != nil {
		return nil, err
	}
	defer s.gate.Release()

	b := s.db.NewIndexedBatch()
	t.r, t.b, t.db = b, b, s.db
	keep := false // the batch outlives update, until its fsync
	defer func() {
		t.Done = true
		t.close()
		if !keep {
			// Also runs when fn panics.
			_ = b.Close()
		}
	}()
	if err := fn(t); err != nil {
		return nil, err
	}
	if err := t.writes.Err(); err != nil {
		return nil, err
	}
	if err := t.Alive("commit"); err != nil {
		return nil, err
	}
	if b.Empty() {
		// Nothing to log: durable when the commit before it is.
		return s.last, nil
	}
	if err := s.commit(b, sync); err != nil {
		// pebble may still hold the batch: leave it to the collector.
		keep = true
		return nil, err
	}
	if sync {
		s.last = nil // the fsync covered every earlier commit
		return nil, nil
	}
	keep = true
	s.last = &pending{b: b, dir: s.dir}
	return s.last, nil
}

// commit applies b, waiting for the log's fsync when sync is set. pebble
// cannot go on after a failed commit (a write or, for a waited commit, an
// fsync of the log): it calls Fatalf, whose panic is caught here and kept
// in s.failed, so that this and every later write fails with it instead of
// ending the process. The caller holds the writer slot.
func (s *Store) commit(b *pebble.Batch, sync bool) (err error) {
	if s.failed != nil {
		return s.failed
	}
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		f, ok := r.(fatalError)
		if !ok {
			panic(r)
		}
		cause := f.err
		if cause == nil {
			cause = errors.New(f.msg)
		}
		s.failed = fmt.Errorf("pebblekv: %s: commit: %w (%s); writes are refused until the store is reopened", s.dir, cause, f.msg)
		err = s.failed
	}()
	if sync {
		err = b.Commit(pebble.Sync)
	} else {
		err = s.db.ApplyNoSyncWait(b, pebble.Sync)
	}
	if err != nil {
		return wrap(s.dir, "commit", err)
	}
	return nil
}

// pending is a commit applied without waiting for its fsync.
type pending struct {
	once sync.Once
	b    *pebble.Batch
	dir  string
	err  error
}

// wait waits for p's fsync and returns its error; a nil p is durable.
// Safe for concurrent use and repeated calls.
func (p *pending) wait() error {
	if p == nil {
		return nil
	}
	p.once.Do(func() {
		if err := p.b.SyncWait(); err != nil {
			p.err = wrap(p.dir, "sync log", err)
		}
		// pebble allows Close only after SyncWait.
		_ = p.b.Close()
		p.b = nil
	})
	return p.err
}

// View runs fn in a read-only transaction over a pebble snapshot taken when
// it starts; commits made while fn runs are invisible to it, and commits
// applied by UpdateAsync before it are visible even if not yet durable.
// fn's error is returned unchanged. Views never wait for the writer. Safe
// for concurrent use.
func (s *Store) View(ctx context.Context, fn func(tx kv.ReadTxn) error) error {
	if err := s.gate.Enter(); err != nil {
		return err
	}
	defer s.gate.Exit()
	t, err := s.newTxn(ctx, false)
	if err != nil {
		return err
	}
	snap := s.db.NewSnapshot()
	t.r = snap
	defer func() {
		t.Done = true
		_ = snap.Close()
	}()
	return fn(t)
}

// Close waits for running transactions to return, fails Updates still
// waiting for the writer slot with kv.ErrClosed, and closes the database,
// which fsyncs the log (so every durable function returns). Calls after
// Close, including a second Close, return kv.ErrClosed. Safe for
// concurrent use.
func (s *Store) Close() error {
	if err := s.gate.Close(); err != nil {
		return err
	}
	if err := s.db.Close(); err != nil {
		return wrap(s.dir, "close", err)
	}
	return nil
}

// pebbleLogger routes pebble's logging to zerolog.
type pebbleLogger struct{ log zerolog.Logger }

// Infof logs pebble's informational lines at debug level: flushes,
// compactions and log rotations are routine.
func (l pebbleLogger) Infof(format string, args ...any) {
	l.log.Debug().Str("component", "pebble").Msgf(format, args...)
}

// Fatalf logs at error level and panics with a fatalError: pebble calls
// it when it cannot go on and expects it not to return (its default logger
// exits the process). A commit catches the panic (see Store.commit); in
// pebble's background work it ends the process, as pebble intends.
func (l pebbleLogger) Fatalf(format string, args ...any) {
	f := fatalError{msg: fmt.Sprintf(format, args...)}
	for _, a := range args {
		if err, ok := a.(error); ok {
			f.err = err
			break
		}
	}
	l.log.Error().Str("component", "pebble").Msg(f.msg)
	panic(f)
}

// fatalError is the panic value of pebbleLogger.Fatalf: its message and
// the first error among its arguments (the cause, nil if none).
type fatalError struct {
	msg string
	err error
}

// events reports pebble's background errors and write stalls; every other
// event is left to Infof or dropped.
func (l pebbleLogger) events() *pebble.EventListener {
	return &pebble.EventListener{
		BackgroundError: func(err error) {
			l.log.Error().Str("component", "pebble").Err(err).Msg("pebble background error")
		},
		WriteStallBegin: func(info pebble.WriteStallBeginInfo) {
			l.log.Warn().Str("component", "pebble").Str("reason", info.Reason).Msg("pebble write stall: commits wait for flushes or compactions")
		},
	}
}

// newTxn starts a transaction's clock (kv.Lifetime).
func (s *Store) newTxn(ctx context.Context, writable bool) (*txn, error) {
	life, err := kv.NewLifetime(ctx, s.txnTimeout, "pebblekv")
	if err != nil {
		return nil, err
	}
	return &txn{Lifetime: life, dir: s.dir, writable: writable}, nil
}

/*
Package pebblekv is the kv.Store and kv.AsyncStore on a pebble database
(CockroachDB's log-structured engine, pure Go): one directory, ordered byte
keys (FoundationDB's data model on one machine), one writer at a time and any
number of snapshot readers. A commit is one record appended to the
write-ahead log and one fdatasync of it, which pebble shares between commits
queued behind one another (group commit).

# Basics

Update runs fn on an indexed pebble batch (reads see the batch's own writes
over the database) while it holds the single writer slot, applies the batch
and returns once the log is fsynced. UpdateAsync does the same but returns
as soon as the batch is applied (visible to every later transaction) and
releases the writer slot before the fsync, so the next transaction runs
while the fsync is in flight; the durable function it returns waits for that
fsync. View reads a pebble snapshot.

# On-disk layout

Open's directory holds pebble's files, all managed by pebble:

	NNNNNN.log              write-ahead log: every commit, in commit order
	NNNNNN.sst              sorted tables, written by flushes and compactions
	MANIFEST-NNNNNN         the log of which tables make up the database
	marker.manifest.*       which MANIFEST is current (CURRENT too, for older readers)
	marker.format-version.* the on-disk format (pebble.FormatNewest at creation)
	OPTIONS-NNNNNN          the options the database was last opened with
	LOCK                    held while a Store has the directory open

A commit lives in the log until its memtable (Options.MemTableSize,
DefaultMemTableSize) is flushed to a table; recovery at Open replays the
logs. Keys are stored as given (one keyspace, tuple-encoded by the callers),
values as given.

# Tuning

pebble's defaults (a 4 MiB memtable, no filters) are sized for tests. Open
sets, after pebble's own benchmark configuration (cmd/pebble/db.go) and
measured on codi2's v1 import (see README.md, "v1 import on pebble"):

  - a larger memtable (Options.MemTableSize): fewer flushes, fewer and
    smaller compactions, keys rewritten while in memory (an index's
    posting-list block, a watermark) written to a table once;
  - a bloom filter in every table (Options.FilterBitsPerKey): a Get of a
    missing key, such as the audit log's Nats-Msg-Id dedupe lookups,
    skips a table on its filter instead of reading the table's index and
    a data block. pebble's own Get never reads the last level's filters,
    where most keys of a large store live, so a transaction's Get of a key
    it did not write is a prefix seek (the whole key is the prefix, see
    comparer) of one iterator per transaction, opened with
    IterOptions.UseL6Filters;
  - a block cache sized on top of the memtables, which pebble charges to
    it (Options.CacheSize);
  - up to memTableStopWrites memtables queued and l0StopWrites sublevels
    in level 0 before commits wait for flushes and compactions.

# Caveats

Durability: the log is written with pebble.Sync: each commit group costs one
fdatasync of the log file, and no background sync of the log is configured
(WALBytesPerSync 0), so the syscall count is the commit count or less. The
commits whose durable function had not returned nil may be lost, always a
suffix of the commit order, by a power loss or OS crash and also by a kill of
the process: UpdateAsync returns once the batch is queued for the log, whose
write to the file is done by pebble's flush goroutine (record.LogWriter's
flushLoop), possibly after the process died.

ClearRange writes one range tombstone, so unlike bbolt it costs the same
whatever it covers; reads over many tombstoned keys pay until a compaction
removes them.

pebble panics on internal invariant failures and calls its logger's Fatalf
(logged at error level, then a panic) when it cannot go on, for example when
its MANIFEST cannot be written.
*/
package pebblekv

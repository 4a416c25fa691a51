/*
Package kv is codi2's transactional, ordered key-value interface, shaped after
FoundationDB so that the same code runs on one embedded file (boltkv, the
default) and on a FoundationDB cluster (fdbkv, built with the fdb tag).

# Basics

A Store runs transactions. Update runs a function in a read-write
transaction (Txn) and commits it when the function returns nil; View runs a
function in a read-only transaction (ReadTxn) over a consistent snapshot:

	err := store.Update(ctx, func(tx kv.Txn) error {
		v, err := tx.Get(kv.Tuple{"meta", "applied", "CODI_STATE"}.Pack())
		if err != nil && !errors.Is(err, kv.ErrNotFound) {
			return err
		}
		...
		return tx.Set(key, value)
	})

Keys are byte strings compared with bytes.Compare. Build them with Tuple,
FoundationDB's tuple layer: Tuple{"state", kind, id}.Pack() sorts by kind,
then id, and Tuple{"state", kind}.Range() bounds every record of one kind, so
the embedded file holds exactly the layout a FoundationDB cluster would.
PrefixEnd gives the end of a raw prefix scan.

Every backend enforces FoundationDB's limits: keys up to MaxKeySize bytes,
values up to MaxValueSize, a transaction writing at most MaxTxnWriteBytes and
lasting at most MaxTxnDuration (or the ctx deadline, whichever is first).
Errors are the sentinels in errors.go, wrapped with context; compare them
with errors.Is.

# Retries and goroutines

A Store is safe for concurrent use; a transaction is not, and is valid only
inside the function it was passed to. As with the FoundationDB bindings'
Transact, the function may run more than once: fdbkv retries it after
conflicts and other retryable errors, on a fresh view of the database, until
it commits, returns a non-retryable error or runs out of time. So the
function must have no effects outside the transaction: no publishing, acking,
logging of "done", metric updates or writes to captured variables that
survive a retry. Compute inside, act after Update returns nil. boltkv happens
to run the function once, because it has a single writer; do not rely on it.

Update returns fn's error unchanged when fn fails, so callers can test their
own errors with errors.Is or errors.As.

# Caveats

Slices passed to Set belong to the caller again once Set returns, and slices
returned by Get and GetRange belong to the caller; backends copy.

Keys starting with 0xFF are FoundationDB's system keyspace and the empty key
cannot be stored in bbolt; both are rejected with ErrInvalidKey so that the
backends agree.

Transactions are for small, short units of work: a batch of a few hundred
records, not a table scan or a bulk import. Split long work into several
transactions, resuming from the last key read. In boltkv a View that stays
open holds back the reuse of pages and can make a concurrent Update wait when
the file must grow, and a single Update blocks every other writer until it
commits.

Nested transactions are not supported: calling Update or View from inside a
transaction function of the same Store may deadlock.
*/
package kv

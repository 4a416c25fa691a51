package kv

import "errors"

// Errors returned by every backend. Backends wrap them with the operation and
// the offending sizes or keys, so compare with errors.Is, never with ==. The
// sentinels themselves are immutable and safe to share between goroutines.
var (
	// ErrNotFound is returned by Get when the key holds no value.
	ErrNotFound = errors.New("kv: not found")

	// ErrConflict is returned by Update when the transaction kept conflicting
	// with concurrent writers and the backend gave up retrying (FoundationDB
	// not_committed, 1020). The embedded backend has a single writer and never
	// returns it; callers must still handle it.
	ErrConflict = errors.New("kv: transaction conflict")

	// ErrClosed is returned by every call on a Store after Close.
	ErrClosed = errors.New("kv: store closed")

	// ErrTimeout is returned when a transaction outlives its time bound: the
	// context deadline or the backend's transaction timeout (FoundationDB's
	// five seconds, MaxTxnDuration). The transaction is rolled back. When the
	// bound came from a context deadline the error also matches
	// context.DeadlineExceeded.
	ErrTimeout = errors.New("kv: transaction timed out")

	// ErrReadOnly is returned by a write attempted in a transaction started
	// by View.
	ErrReadOnly = errors.New("kv: read-only transaction")

	// ErrTxnDone is returned by a transaction used after the function it was
	// passed to has returned, which is a bug in the caller.
	ErrTxnDone = errors.New("kv: transaction used after its function returned")

	// ErrInvalidKey is returned for a key that no backend can store: an empty
	// key, or a key in FoundationDB's system keyspace (starting with 0xFF).
	// Range bounds may be empty, and an end bound may be exactly {0xFF}.
	ErrInvalidKey = errors.New("kv: invalid key")

	// ErrTooLarge matches every size-limit error: ErrKeyTooLarge,
	// ErrValueTooLarge and ErrTxnTooLarge.
	ErrTooLarge = errors.New("kv: too large")

	// ErrKeyTooLarge is returned for a key longer than MaxKeySize. It
	// matches ErrTooLarge.
	ErrKeyTooLarge error = &sizeError{"kv: key too large"}

	// ErrValueTooLarge is returned for a value longer than MaxValueSize. It
	// matches ErrTooLarge.
	ErrValueTooLarge error = &sizeError{"kv: value too large"}

	// ErrTxnTooLarge is returned when a transaction writes more than
	// MaxTxnWriteBytes. It matches ErrTooLarge.
	ErrTxnTooLarge error = &sizeError{"kv: transaction too large"}

	// ErrCorrupt is returned when the store's own bytes are damaged: a
	// backend that finds a page it cannot read (bbolt panics on those; the
	// embedded backend turns that into this error), or a caller that finds
	// a value failing its checksum. The request or the start fails with it;
	// the process goes on.
	ErrCorrupt = errors.New("kv: store data is corrupt")

	// ErrBadTuple is returned by Unpack for bytes that are not a canonical
	// tuple encoding of a supported element type.
	ErrBadTuple = errors.New("kv: malformed tuple")
)

// sizeError is a limit sentinel that also matches ErrTooLarge, so callers can
// test for "some limit" without listing every limit.
type sizeError struct{ msg string }

func (e *sizeError) Error() string { return e.msg }

// Is reports whether target is the general ErrTooLarge.
func (e *sizeError) Is(target error) bool { return target == ErrTooLarge }

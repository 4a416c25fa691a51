package kv

import "fmt"

// CheckKey returns nil if key can be read and written by every backend, or an
// error matching ErrInvalidKey (empty, or in the 0xFF system keyspace) or
// ErrKeyTooLarge. Backends call it before touching storage; callers may call
// it to reject bad input early. It is safe for concurrent use.
func CheckKey(key []byte) error {
	switch {
	case len(key) == 0:
		return fmt.Errorf("empty key: %w", ErrInvalidKey)
	case len(key) > MaxKeySize:
		return fmt.Errorf("key of %d bytes, limit %d: %w", len(key), MaxKeySize, ErrKeyTooLarge)
	case key[0] == 0xFF:
		return fmt.Errorf("key %s is in the system keyspace (0xFF prefix): %w", printable(key), ErrInvalidKey)
	}
	return nil
}

// CheckValue returns nil if value fits MaxValueSize, or an error matching
// ErrValueTooLarge. It is safe for concurrent use.
func CheckValue(value []byte) error {
	if len(value) > MaxValueSize {
		return fmt.Errorf("value of %d bytes, limit %d: %w", len(value), MaxValueSize, ErrValueTooLarge)
	}
	return nil
}

// CheckRange returns nil if begin and end are valid bounds for GetRange and
// ClearRange: each may be empty, at most MaxKeySize+1 bytes (room for a
// maximal key followed by 0x00), and at most {0xFF}, the end of the user
// keyspace. An empty range (begin >= end) is valid and selects nothing. It is
// safe for concurrent use.
func CheckRange(begin, end []byte) error {
	for _, k := range [2][]byte{begin, end} {
		if len(k) > MaxKeySize+1 {
			return fmt.Errorf("range bound of %d bytes, limit %d: %w", len(k), MaxKeySize+1, ErrKeyTooLarge)
		}
		if len(k) > 1 && k[0] == 0xFF {
			return fmt.Errorf("range bound %s is past the user keyspace (0xFF): %w", printable(k), ErrInvalidKey)
		}
	}
	return nil
}

// printable quotes at most 32 bytes of k for an error message.
func printable(k []byte) string {
	const max = 32
	if len(k) > max {
		return fmt.Sprintf("%q... (%d bytes)", k[:max], len(k))
	}
	return fmt.Sprintf("%q", k)
}

// Writes is the bookkeeping every backend does for the writes of one
// transaction attempt: it enforces MaxTxnWriteBytes and keeps the first
// failed write, so that the commit fails even when the transaction function
// ignored the error, as FoundationDB's does. Its zero value is ready; reset
// it to the zero value for a retry. Like the transaction it belongs to, it is
// not safe for concurrent use.
type Writes struct {
	n   int
	err error
}

// Add admits a write of n bytes whose key and value checks returned check.
// It returns check, or an error matching ErrTxnTooLarge when the write would
// exceed MaxTxnWriteBytes, prefixed with the backend's name and op ("boltkv:
// set: ..."), and remembers it. The two are joined only for an error, so
// that a write that passes allocates nothing.
func (w *Writes) Add(backend, op string, n int, check error) error {
	err := check
	if err == nil && w.n+n > MaxTxnWriteBytes {
		err = fmt.Errorf("transaction writes %d bytes, limit %d: %w", w.n+n, MaxTxnWriteBytes, ErrTxnTooLarge)
	}
	if err != nil {
		err = fmt.Errorf("%s: %s: %w", backend, op, err)
		w.Fail(err)
		return err
	}
	w.n += n
	return nil
}

// Fail remembers err unless an earlier failure is already kept.
func (w *Writes) Fail(err error) {
	if w.err == nil {
		w.err = err
	}
}

// Err is the first failed write, or nil.
func (w *Writes) Err() error { return w.err }

package kv

import (
	"bytes"
	"fmt"
	"math"
	"math/bits"
)

// Type codes of the FoundationDB tuple layer (design/tuple.md in the
// FoundationDB repository). Only the codes Tuple supports are listed.
const (
	nilCode     = 0x00
	bytesCode   = 0x01
	stringCode  = 0x02
	nestedCode  = 0x05
	negIntCode8 = 0x0c // 8-byte negative integer; 0x0c..0x13 are 8..1 bytes
	intZeroCode = 0x14
	posIntCode8 = 0x1c // 8-byte positive integer; 0x15..0x1c are 1..8 bytes
	falseCode   = 0x26
	trueCode    = 0x27
	escapeCode  = 0xff
)

// maxNesting bounds the depth of nested tuples Unpack accepts, so that a
// hostile key cannot exhaust the stack.
const maxNesting = 256

// Tuple is an ordered list of elements that Pack encodes into an
// order-preserving key: comparing two packed tuples with bytes.Compare gives
// the same result as comparing the tuples element by element. The encoding is
// FoundationDB's tuple layer, so keys written by the embedded backend read
// the same as keys written by the FoundationDB bindings' tuple package.
//
// Supported element types and their order (lowest first, as in FoundationDB):
//
//	nil
//	[]byte           compared as bytes
//	string           compared as bytes (UTF-8 for text)
//	Tuple            nested; compared element by element
//	int, int64       all integers compare by value, whatever their Go type
//	uint64           only values up to math.MaxInt64
//	bool             false before true
//
// A Tuple is a plain slice: safe for concurrent reads, not for concurrent
// modification.
type Tuple []any

// Pack returns the tuple-layer encoding of t in a new slice. The empty tuple
// packs to an empty slice.
//
// Pack panics if t (or a nested tuple) holds an element of an unsupported
// type or a uint64 above math.MaxInt64, as the FoundationDB bindings do: that
// is a programming error in the key layout, not a run-time condition.
func (t Tuple) Pack() []byte {
	return appendTuple(make([]byte, 0, 32), t, false)
}

// AppendInt appends the tuple encoding of the integer element v to b and
// returns the extended slice. Packing is concatenation, so
// AppendInt(Tuple{a}.Pack(), v) equals Tuple{a, v}.Pack(): hot paths keep a
// packed prefix and append the integer without boxing it in a Tuple.
func AppendInt(b []byte, v int64) []byte { return appendInt(b, v) }

// AppendString appends the tuple encoding of the string element s to b and
// returns the extended slice, like AppendInt: AppendString(Tuple{a}.Pack(),
// s) equals Tuple{a, s}.Pack().
func AppendString(b []byte, s string) []byte { return appendBytes(b, stringCode, s) }

// AppendStringBytes appends the tuple encoding of the string element
// string(v) to b, like AppendString, without converting v to a string.
func AppendStringBytes(b, v []byte) []byte { return appendBytes(b, stringCode, v) }

// AppendBytes appends the tuple encoding of the []byte element v to b,
// like AppendString: AppendBytes(Tuple{a}.Pack(), v) equals
// Tuple{a, v}.Pack().
func AppendBytes(b, v []byte) []byte { return appendBytes(b, bytesCode, v) }

// Range returns the bounds of every key strictly inside t: keys that are t
// packed and followed by at least one more element. It is
// (Pack()+0x00, Pack()+0xFF), like the FoundationDB bindings' Tuple and
// Subspace ranges; pass the pair to GetRange or ClearRange. The packed key of
// t itself is not in the range. Range panics where Pack does.
func (t Tuple) Range() (begin, end []byte) {
	p := t.Pack()
	begin = append(p[:len(p):len(p)], 0x00)
	end = append(p[:len(p):len(p)], 0xFF)
	return begin, end
}

// PrefixEnd returns the first key after every key that starts with prefix
// (FoundationDB's strinc): trailing 0xFF bytes are dropped and the last
// remaining byte is incremented. Use [prefix, PrefixEnd(prefix)) to scan a
// raw prefix. A prefix that is empty or made only of 0xFF bytes has no
// successor in the user keyspace; PrefixEnd then returns {0xFF}, the end of
// the user keyspace. The result is a new slice; PrefixEnd is safe for
// concurrent use.
func PrefixEnd(prefix []byte) []byte {
	// Not bytes.TrimRight: its cutset is UTF-8, and "\xff" would match
	// every invalid byte.
	n := len(prefix)
	for n > 0 && prefix[n-1] == 0xFF {
		n--
	}
	if n == 0 {
		return []byte{0xFF}
	}
	end := bytes.Clone(prefix[:n])
	end[n-1]++
	return end
}

func appendTuple(b []byte, t Tuple, nested bool) []byte {
	if nested {
		b = append(b, nestedCode)
	}
	for i, e := range t {
		switch e := e.(type) {
		case nil:
			b = append(b, nilCode)
			if nested {
				// Inside a nested tuple a bare 0x00 ends the tuple.
				b = append(b, escapeCode)
			}
		case []byte:
			b = appendBytes(b, bytesCode, e)
		case string:
			b = appendBytes(b, stringCode, e)
		case Tuple:
			b = appendTuple(b, e, true)
		case int:
			b = appendInt(b, int64(e))
		case int64:
			b = appendInt(b, e)
		case uint64:
			if e > math.MaxInt64 {
				panic(fmt.Sprintf("kv: tuple element %d: uint64 %d overflows int64", i, e))
			}
			b = appendInt(b, int64(e))
		case bool:
			if e {
				b = append(b, trueCode)
			} else {
				b = append(b, falseCode)
			}
		default:
			panic(fmt.Sprintf("kv: tuple element %d has unsupported type %T", i, e))
		}
	}
	if nested {
		b = append(b, 0x00)
	}
	return b
}

// appendBytes writes code, s with every 0x00 escaped as 0x00 0xFF, and the
// 0x00 terminator. The escape keeps order: "a" < "a\x00" < "a\x01".
func appendBytes[S []byte | string](b []byte, code byte, s S) []byte {
	b = append(b, code)
	for {
		i := bytes.IndexByte([]byte(s), 0x00)
		if i < 0 {
			break
		}
		b = append(b, s[:i+1]...)
		b = append(b, escapeCode)
		s = s[i+1:]
	}
	b = append(b, s...)
	return append(b, 0x00)
}

// appendInt writes v in the fewest bytes, big endian, after a code that
// encodes sign and length; negative numbers are stored as the one's
// complement of their magnitude so that they sort below smaller magnitudes.
func appendInt(b []byte, v int64) []byte {
	if v == 0 {
		return append(b, intZeroCode)
	}
	if v > 0 {
		u := uint64(v)
		n := byteLen(u)
		return appendBigEndian(append(b, byte(intZeroCode+n)), u, n)
	}
	// For math.MinInt64, -v overflows back to MinInt64, whose uint64 is the
	// correct magnitude 1<<63.
	m := uint64(-v)
	n := byteLen(m)
	return appendBigEndian(append(b, byte(intZeroCode-n)), ^m, n)
}

func byteLen(u uint64) int { return (bits.Len64(u) + 7) / 8 }

func appendBigEndian(b []byte, u uint64, n int) []byte {
	for i := n - 1; i >= 0; i-- {
		b = append(b, byte(u>>(8*i)))
	}
	return b
}

// Unpack decodes a key produced by Pack. Integers decode as int64, byte
// strings as []byte (never nil), unicode strings as string, nested tuples as
// Tuple and booleans as bool. Unpack accepts only the canonical encoding
// Pack produces, so for any b it accepts, Unpack(b).Pack() equals b. It
// rejects type codes Tuple does not support (floats, UUIDs, versionstamps,
// integers wider than 8 bytes or outside int64), truncated input and nesting
// deeper than 256 levels, with an error matching ErrBadTuple. The result does
// not alias b. Unpack is safe for concurrent use.
func Unpack(b []byte) (Tuple, error) {
	t, _, err := decodeTuple(b, 0, 0)
	if err != nil {
		return nil, err
	}
	return t, nil
}

// UnpackBytes decodes b, a packed tuple of byte strings only (what Pack
// gives for a Tuple of []byte elements, or AppendBytes appends one by
// one), into its elements: what Unpack gives, without boxing each one,
// in one buffer the elements share (each capped at its end). Anything
// else, bytes Unpack rejects or an element of another type, is an error
// matching ErrBadTuple. The result does not alias b. UnpackBytes is safe
// for concurrent use.
func UnpackBytes(b []byte) ([][]byte, error) {
	buf := make([]byte, 0, len(b)) // the elements are shorter than b
	out := make([][]byte, 0, bytes.Count(b, []byte{0x00}))
	for i := 0; i < len(b); {
		if b[i] != bytesCode {
			return nil, fmt.Errorf("kv: unpack at byte %d: type code 0x%02x, not a byte string: %w", i, b[i], ErrBadTuple)
		}
		start := len(buf)
		for j := i + 1; ; {
			k := bytes.IndexByte(b[j:], 0x00)
			if k < 0 {
				return nil, fmt.Errorf("kv: unpack at byte %d: unterminated string: %w", i, ErrBadTuple)
			}
			k += j
			if k+1 < len(b) && b[k+1] == escapeCode {
				buf = append(buf, b[j:k+1]...)
				j = k + 2
				continue
			}
			buf = append(buf, b[j:k]...)
			i = k + 1
			break
		}
		out = append(out, buf[start:len(buf):len(buf)])
	}
	return out, nil
}

// decodeTuple decodes elements from b[i:] until the end of b (depth 0) or
// the 0x00 that closes a nested tuple (depth > 0), and returns the index
// after the last byte it consumed.
func decodeTuple(b []byte, i, depth int) (Tuple, int, error) {
	t := Tuple{}
	for i < len(b) {
		code := b[i]
		switch {
		case code == nilCode:
			if depth == 0 {
				t = append(t, nil)
				i++
			} else if i+1 < len(b) && b[i+1] == escapeCode {
				t = append(t, nil)
				i += 2
			} else {
				return t, i + 1, nil
			}
		case code == bytesCode, code == stringCode:
			v, next, err := decodeBytes(b, i)
			if err != nil {
				return nil, 0, err
			}
			if code == stringCode {
				t = append(t, string(v))
			} else {
				t = append(t, v)
			}
			i = next
		case code == nestedCode:
			if depth >= maxNesting {
				return nil, 0, fmt.Errorf("kv: unpack at byte %d: tuples nested deeper than %d: %w", i, maxNesting, ErrBadTuple)
			}
			v, next, err := decodeTuple(b, i+1, depth+1)
			if err != nil {
				return nil, 0, err
			}
			t = append(t, v)
			i = next
		case negIntCode8 <= code && code <= posIntCode8:
			v, next, err := decodeInt(b, i)
			if err != nil {
				return nil, 0, err
			}
			t = append(t, v)
			i = next
		case code == falseCode, code == trueCode:
			t = append(t, code == trueCode)
			i++
		default:
			return nil, 0, fmt.Errorf("kv: unpack at byte %d: unsupported type code 0x%02x: %w", i, code, ErrBadTuple)
		}
	}
	if depth > 0 {
		return nil, 0, fmt.Errorf("kv: unpack: nested tuple not terminated: %w", ErrBadTuple)
	}
	return t, i, nil
}

// decodeBytes decodes the escaped string whose type code is at b[i].
func decodeBytes(b []byte, i int) ([]byte, int, error) {
	start := i + 1
	var out []byte
	for j := start; ; {
		k := bytes.IndexByte(b[j:], 0x00)
		if k < 0 {
			return nil, 0, fmt.Errorf("kv: unpack at byte %d: unterminated string: %w", i, ErrBadTuple)
		}
		k += j
		if k+1 < len(b) && b[k+1] == escapeCode {
			out = append(out, b[j:k+1]...)
			j = k + 2
			continue
		}
		if out == nil {
			out = make([]byte, 0, k-j)
		}
		return append(out, b[j:k]...), k + 1, nil
	}
}

// decodeInt decodes the integer whose type code is at b[i], rejecting
// non-minimal encodings so that every value has exactly one key.
func decodeInt(b []byte, i int) (int64, int, error) {
	code := int(b[i])
	n := code - intZeroCode
	neg := n < 0
	if neg {
		n = -n
	}
	if i+1+n > len(b) {
		return 0, 0, fmt.Errorf("kv: unpack at byte %d: truncated %d-byte integer: %w", i, n, ErrBadTuple)
	}
	raw := b[i+1 : i+1+n]
	var u uint64
	for _, c := range raw {
		u = u<<8 | uint64(c)
	}
	next := i + 1 + n
	switch {
	case n == 0:
		return 0, next, nil
	case !neg:
		if raw[0] == 0x00 {
			return 0, 0, fmt.Errorf("kv: unpack at byte %d: non-canonical integer: %w", i, ErrBadTuple)
		}
		if u > math.MaxInt64 {
			return 0, 0, fmt.Errorf("kv: unpack at byte %d: integer %d overflows int64: %w", i, u, ErrBadTuple)
		}
		return int64(u), next, nil
	default:
		if raw[0] == 0xff {
			return 0, 0, fmt.Errorf("kv: unpack at byte %d: non-canonical integer: %w", i, ErrBadTuple)
		}
		m := ^u // magnitude, once the bits above n bytes are dropped
		if n < 8 {
			m &= 1<<(8*n) - 1
		}
		if m > 1<<63 {
			return 0, 0, fmt.Errorf("kv: unpack at byte %d: integer -%d overflows int64: %w", i, m, ErrBadTuple)
		}
		return -int64(m), next, nil // m == 1<<63 wraps to math.MinInt64
	}
}

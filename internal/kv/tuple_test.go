package kv_test

import (
	"bytes"
	"cmp"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/internal/kv"
)

// The expected bytes come from FoundationDB's design/tuple.md test cases and
// from packing the same values with the FoundationDB Go bindings.
func TestTuple_Pack_Encodings(t *testing.T) {
	tests := []struct {
		name  string
		tuple kv.Tuple
		want  []byte
	}{
		{"empty", kv.Tuple{}, []byte{}},
		{"nil", kv.Tuple{nil}, []byte{0x00}},
		{"bytes with nul (spec)", kv.Tuple{[]byte("foo\x00bar")}, []byte("\x01foo\x00\xffbar\x00")},
		{"empty bytes", kv.Tuple{[]byte{}}, []byte{0x01, 0x00}},
		{"nil bytes", kv.Tuple{[]byte(nil)}, []byte{0x01, 0x00}},
		{"unicode string (spec)", kv.Tuple{"F\u00d4O\u0000bar"}, []byte("\x02F\xc3\x94O\x00\xffbar\x00")},
		{"string", kv.Tuple{"hi", "there"}, []byte("\x02hi\x00\x02there\x00")},
		{"trailing nul", kv.Tuple{"a\x00"}, []byte("\x02a\x00\xff\x00")},
		{"nested with nil (spec)", kv.Tuple{kv.Tuple{[]byte("foo\x00bar"), nil, kv.Tuple{}}}, []byte("\x05\x01foo\x00\xffbar\x00\x00\xff\x05\x00\x00")},
		{"nested empty", kv.Tuple{kv.Tuple{}}, []byte{0x05, 0x00}},
		{"nested nil", kv.Tuple{kv.Tuple{nil}}, []byte{0x05, 0x00, 0xff, 0x00}},
		{"int 0", kv.Tuple{0}, []byte{0x14}},
		{"int 1", kv.Tuple{1}, []byte{0x15, 0x01}},
		{"int -1 (spec)", kv.Tuple{-1}, []byte{0x13, 0xfe}},
		{"int 255", kv.Tuple{255}, []byte{0x15, 0xff}},
		{"int 256", kv.Tuple{256}, []byte{0x16, 0x01, 0x00}},
		{"int -255", kv.Tuple{-255}, []byte{0x13, 0x00}},
		{"int -256", kv.Tuple{-256}, []byte{0x12, 0xfe, 0xff}},
		{"int -5551212 (spec)", kv.Tuple{-5551212}, []byte("\x11\xabK\x93")},
		{"int64 max", kv.Tuple{int64(math.MaxInt64)}, []byte{0x1c, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
		{"int64 min", kv.Tuple{int64(math.MinInt64)}, []byte{0x0c, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
		{"int64 min+1", kv.Tuple{int64(math.MinInt64 + 1)}, []byte{0x0c, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}},
		{"uint64", kv.Tuple{uint64(65536)}, []byte{0x17, 0x01, 0x00, 0x00}},
		{"bools", kv.Tuple{false, true}, []byte{0x26, 0x27}},
		{"mixed", kv.Tuple{"state", "task", int64(7)}, []byte("\x02state\x00\x02task\x00\x15\x07")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, tt.tuple.Pack())
		})
	}
}

func TestTuple_Pack_Panics(t *testing.T) {
	tests := []struct {
		name  string
		tuple kv.Tuple
	}{
		{"float", kv.Tuple{1.5}},
		{"int32", kv.Tuple{int32(1)}},
		{"slice of any", kv.Tuple{[]any{1}}},
		{"nested unsupported", kv.Tuple{kv.Tuple{struct{}{}}}},
		{"uint64 overflow", kv.Tuple{uint64(math.MaxInt64) + 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Panics(t, func() { tt.tuple.Pack() })
		})
	}
}

func TestUnpack_Valid(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want kv.Tuple
	}{
		{"empty", []byte{}, kv.Tuple{}},
		{"nil", []byte{0x00}, kv.Tuple{nil}},
		{"bytes with nul", []byte("\x01foo\x00\xffbar\x00"), kv.Tuple{[]byte("foo\x00bar")}},
		{"empty bytes", []byte{0x01, 0x00}, kv.Tuple{[]byte{}}},
		{"unicode", []byte("\x02F\xc3\x94O\x00\xffbar\x00"), kv.Tuple{"F\u00d4O\u0000bar"}},
		{"nested", []byte("\x05\x01foo\x00\xffbar\x00\x00\xff\x05\x00\x00"), kv.Tuple{kv.Tuple{[]byte("foo\x00bar"), nil, kv.Tuple{}}}},
		{"nested then more", []byte("\x05\x15\x01\x00\x14"), kv.Tuple{kv.Tuple{int64(1)}, int64(0)}},
		{"ints", []byte{0x14, 0x13, 0xfe, 0x15, 0xff, 0x16, 0x01, 0x00, 0x13, 0x00}, kv.Tuple{int64(0), int64(-1), int64(255), int64(256), int64(-255)}},
		{"int64 extremes", kv.Tuple{int64(math.MaxInt64), int64(math.MinInt64)}.Pack(), kv.Tuple{int64(math.MaxInt64), int64(math.MinInt64)}},
		{"bools", []byte{0x27, 0x26}, kv.Tuple{true, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := kv.Unpack(tt.in)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
			assert.Equal(t, tt.in, got.Pack(), "repack")
		})
	}
}

func TestUnpack_Malformed(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		wantMsg string
	}{
		{"unterminated bytes", []byte("\x01foo"), "unterminated"},
		{"escape at end", []byte("\x01foo\x00\xff"), "unterminated"},
		{"unterminated nested", []byte{0x05, 0x14}, "not terminated"},
		{"truncated int", []byte{0x16, 0x01}, "truncated"},
		{"non-canonical positive", []byte{0x16, 0x00, 0x01}, "non-canonical"},
		{"non-canonical negative", []byte{0x13, 0xff}, "non-canonical"},
		{"uint64 above int64", []byte{0x1c, 0x80, 0, 0, 0, 0, 0, 0, 0}, "overflows"},
		{"below int64", []byte{0x0c, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe}, "overflows"},
		{"big positive int", []byte{0x1d, 0x09, 1, 2, 3, 4, 5, 6, 7, 8, 9}, "unsupported type code 0x1d"},
		{"double", []byte{0x21, 0, 0, 0, 0, 0, 0, 0, 0}, "unsupported type code 0x21"},
		{"escape code at top level", []byte{0x00, 0xff}, "unsupported type code 0xff"},
		{"deprecated true", []byte{0x25}, "unsupported"},
		{"bad element in nested", []byte{0x05, 0x21, 0x00}, "unsupported"},
		{"bad string in nested", []byte{0x05, 0x02, 'a'}, "unterminated"},
		{"bad int in nested", []byte{0x05, 0x15}, "truncated"},
		{"too deep", append(bytes.Repeat([]byte{0x05}, 300), bytes.Repeat([]byte{0x00}, 300)...), "nested deeper"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := kv.Unpack(tt.in)
			require.ErrorIs(t, err, kv.ErrBadTuple)
			assert.Contains(t, err.Error(), tt.wantMsg)
			assert.Nil(t, got)
		})
	}
}

func TestUnpack_DoesNotAlias(t *testing.T) {
	in := kv.Tuple{[]byte("abc")}.Pack()
	got, err := kv.Unpack(in)
	require.NoError(t, err)
	in[1] = 'X'
	assert.Equal(t, []byte("abc"), got[0])
}

func TestAppendInt(t *testing.T) {
	prefix := kv.Tuple{"audit"}.Pack()
	for _, v := range []int64{0, 1, -1, 255, 256, -256, 1 << 40, math.MaxInt64, math.MinInt64} {
		want := kv.Tuple{"audit", v}.Pack()
		assert.Equal(t, want, kv.AppendInt(bytes.Clone(prefix), v), "%d", v)
		assert.Equal(t, want[len(prefix):], kv.AppendInt(nil, v), "%d", v)
	}
}

func TestAppendString(t *testing.T) {
	prefix := kv.Tuple{"audit"}.Pack()
	for _, v := range []string{"", "a", "a\x00b", "\x00\xff", "é"} {
		want := kv.Tuple{"audit", v}.Pack()
		assert.Equal(t, want, kv.AppendString(bytes.Clone(prefix), v), "%q", v)
		assert.Equal(t, want[len(prefix):], kv.AppendString(nil, v), "%q", v)
		assert.Equal(t, want, kv.AppendStringBytes(bytes.Clone(prefix), []byte(v)), "%q", v)
	}
}

func TestAppendBytes(t *testing.T) {
	prefix := kv.Tuple{"audit"}.Pack()
	for _, v := range []string{"", "a", "a\x00b", "\x00\x00", "\xff"} {
		want := kv.Tuple{"audit", []byte(v)}.Pack()
		assert.Equal(t, want, kv.AppendBytes(bytes.Clone(prefix), []byte(v)), "%q", v)
	}
}

func TestTuple_Range(t *testing.T) {
	prefix := kv.Tuple{"state", "task"}
	begin, end := prefix.Range()
	p := prefix.Pack()
	assert.Equal(t, append(bytes.Clone(p), 0x00), begin)
	assert.Equal(t, append(bytes.Clone(p), 0xff), end)

	inside := [][]byte{
		kv.Tuple{"state", "task", nil}.Pack(),
		kv.Tuple{"state", "task", ""}.Pack(),
		kv.Tuple{"state", "task", int64(-1 << 40)}.Pack(),
		kv.Tuple{"state", "task", "zzz", kv.Tuple{"x"}}.Pack(),
		kv.Tuple{"state", "task", true}.Pack(),
	}
	outside := [][]byte{
		p,
		kv.Tuple{"state", "tas"}.Pack(),
		kv.Tuple{"state", "task\x00"}.Pack(),
		kv.Tuple{"state", "tasl"}.Pack(),
		kv.Tuple{"state"}.Pack(),
	}
	for _, k := range inside {
		assert.True(t, bytes.Compare(begin, k) <= 0 && bytes.Compare(k, end) < 0, "%q should be inside", k)
	}
	for _, k := range outside {
		assert.False(t, bytes.Compare(begin, k) <= 0 && bytes.Compare(k, end) < 0, "%q should be outside", k)
	}

	// Appending to one bound must not change the other.
	_ = append(begin, 'x')
	assert.Equal(t, append(bytes.Clone(p), 0xff), end)
}

func TestPrefixEnd(t *testing.T) {
	tests := []struct {
		name   string
		prefix []byte
		want   []byte
	}{
		{"simple", []byte("abc"), []byte("abd")},
		{"trailing ff", []byte("ab\xff\xff"), []byte("ac")},
		{"byte wraps to next", []byte{0x01, 0xfe}, []byte{0x01, 0xff}},
		{"empty", nil, []byte{0xff}},
		{"all ff", []byte{0xff, 0xff}, []byte{0xff}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := bytes.Clone(tt.prefix)
			assert.Equal(t, tt.want, kv.PrefixEnd(in))
			assert.Equal(t, tt.prefix, in, "input unchanged")
		})
	}
}

// genTuple builds a tuple from fuzz input so the fuzzer explores element
// types, lengths and nesting; it returns the rest of data.
func genTuple(data []byte, depth int) (kv.Tuple, []byte) {
	if len(data) == 0 {
		return kv.Tuple{}, data
	}
	n := int(data[0] % 5)
	data = data[1:]
	t := kv.Tuple{}
	for range n {
		if len(data) == 0 {
			break
		}
		op := data[0] % 7
		data = data[1:]
		switch op {
		case 0:
			t = append(t, nil)
		case 1, 2:
			l := 0
			if len(data) > 0 {
				l = min(int(data[0]%6), len(data)-1)
				data = data[1:]
			}
			if op == 1 {
				t = append(t, bytes.Clone(data[:l]))
			} else {
				t = append(t, string(data[:l]))
			}
			data = data[l:]
		case 3:
			var v int64
			w := 0
			if len(data) > 0 {
				w = min(int(data[0]%9), len(data)-1)
				data = data[1:]
			}
			for _, c := range data[:w] {
				v = v<<8 | int64(c)
			}
			if w > 0 && w < 8 && data[0]&0x80 != 0 {
				v = -v
			}
			data = data[w:]
			t = append(t, v)
		case 4:
			t = append(t, len(data) > 0 && data[0]&1 == 1)
		case 5:
			if depth < 3 {
				var nested kv.Tuple
				nested, data = genTuple(data, depth+1)
				t = append(t, nested)
			} else {
				t = append(t, nil)
			}
		case 6:
			t = append(t, int(len(data))-3)
		}
	}
	return t, data
}

// typeRank orders element types as the tuple layer does.
func typeRank(e any) int {
	switch e := e.(type) {
	case nil:
		return 0
	case []byte:
		return 1
	case string:
		return 2
	case kv.Tuple:
		return 5
	case int, int64:
		return 20
	case bool:
		if e {
			return 39
		}
		return 38
	}
	panic("unexpected type")
}

func toInt64(e any) int64 {
	if i, ok := e.(int); ok {
		return int64(i)
	}
	return e.(int64)
}

// compareTuples is the order Pack must preserve, computed on the values.
func compareTuples(a, b kv.Tuple) int {
	for i := range min(len(a), len(b)) {
		ra, rb := typeRank(a[i]), typeRank(b[i])
		if c := cmp.Compare(ra, rb); c != 0 {
			return c
		}
		var c int
		switch x := a[i].(type) {
		case []byte:
			c = bytes.Compare(x, b[i].([]byte))
		case string:
			c = strings.Compare(x, b[i].(string))
		case kv.Tuple:
			c = compareTuples(x, b[i].(kv.Tuple))
		case int, int64:
			c = cmp.Compare(toInt64(x), toInt64(b[i]))
		}
		if c != 0 {
			return c
		}
	}
	return cmp.Compare(len(a), len(b))
}

func FuzzTuple_Order(f *testing.F) {
	f.Add([]byte{2, 1, 3, 'a', 0, 'b'}, []byte{2, 1, 2, 'a', 0})
	f.Add([]byte{1, 3, 1, 0x80}, []byte{1, 3, 2, 0x01, 0x00})
	f.Add([]byte{2, 5, 2, 0, 1, 1}, []byte{2, 5, 1, 0, 0})
	f.Add([]byte{3, 4, 1, 2, 0, 1, 0}, []byte{3, 6, 3, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, da, db []byte) {
		a, _ := genTuple(da, 0)
		b, _ := genTuple(db, 0)
		pa, pb := a.Pack(), b.Pack()
		if got, want := bytes.Compare(pa, pb), compareTuples(a, b); got != want {
			t.Fatalf("order of %#v (%x) and %#v (%x): bytes %d, values %d", a, pa, b, pb, got, want)
		}
		for _, tt := range []struct {
			tuple  kv.Tuple
			packed []byte
		}{{a, pa}, {b, pb}} {
			got, err := kv.Unpack(tt.packed)
			if err != nil {
				t.Fatalf("Unpack(%x) of %#v: %v", tt.packed, tt.tuple, err)
			}
			if compareTuples(got, tt.tuple) != 0 || !bytes.Equal(got.Pack(), tt.packed) {
				t.Fatalf("round trip of %#v gave %#v", tt.tuple, got)
			}
		}
		// Keys strictly inside a tuple's range are exactly its extensions.
		begin, end := a.Range()
		inside := bytes.Compare(begin, pb) <= 0 && bytes.Compare(pb, end) < 0
		extends := len(b) > len(a) && compareTuples(a, b[:len(a)]) == 0
		if inside != extends {
			t.Fatalf("%#v inside range of %#v: %v, extends it: %v", b, a, inside, extends)
		}
	})
}

func FuzzUnpack(f *testing.F) {
	f.Add([]byte("\x05\x01foo\x00\xffbar\x00\x00\xff\x05\x00\x00"))
	f.Add([]byte("\x02state\x00\x15\x07\x13\xfe\x26"))
	f.Add([]byte{0x0c, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte("\x01a\x00\xffb\x00\x01\x00\x01\x02state\x00\x00"))
	f.Add([]byte("\x01a\x00\xff"))
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := kv.Unpack(in)
		// UnpackBytes gives what Unpack gives for a tuple of byte
		// strings, and an error for everything else.
		list, listErr := kv.UnpackBytes(in)
		allBytes := err == nil
		for _, e := range got {
			_, ok := e.([]byte)
			allBytes = allBytes && ok
		}
		if !allBytes {
			if !errors.Is(listErr, kv.ErrBadTuple) {
				t.Fatalf("UnpackBytes(%x) = %q, %v; Unpack gave %#v, %v", in, list, listErr, got, err)
			}
		} else {
			if listErr != nil || len(list) != len(got) {
				t.Fatalf("UnpackBytes(%x) = %q, %v; Unpack gave %#v", in, list, listErr, got)
			}
			for i, e := range got {
				if !bytes.Equal(e.([]byte), list[i]) {
					t.Fatalf("UnpackBytes(%x) element %d = %q, Unpack's %q", in, i, list[i], e)
				}
			}
		}
		if err != nil {
			return
		}
		if !bytes.Equal(got.Pack(), in) {
			t.Fatalf("Unpack(%x) = %#v repacks to %x", in, got, got.Pack())
		}
	})
}

func TestFuzzHelpers_Sorted(t *testing.T) {
	// A deterministic sanity check of the fuzz oracle on hand-picked tuples
	// listed in ascending order.
	ordered := []kv.Tuple{
		{},
		{nil},
		{nil, nil},
		{[]byte{}},
		{[]byte{0}},
		{[]byte{0, 0}},
		{[]byte{1}},
		{""},
		{"a"},
		{"a", nil},
		{"a\x00"},
		{"b"},
		{kv.Tuple{}},
		{kv.Tuple{nil}},
		{kv.Tuple{nil}, nil},
		{kv.Tuple{int64(1)}},
		{int64(math.MinInt64)},
		{-65536},
		{-256},
		{-255},
		{-1},
		{0},
		{1},
		{255},
		{256},
		{int64(math.MaxInt64)},
		{false},
		{true},
	}
	for i := 1; i < len(ordered); i++ {
		assert.Equal(t, -1, compareTuples(ordered[i-1], ordered[i]), "oracle %v < %v", ordered[i-1], ordered[i])
		assert.Equal(t, -1, bytes.Compare(ordered[i-1].Pack(), ordered[i].Pack()), "bytes %v < %v", ordered[i-1], ordered[i])
	}
	packed := make([][]byte, len(ordered))
	for i, tp := range ordered {
		packed[i] = tp.Pack()
	}
	assert.True(t, slices.IsSortedFunc(packed, bytes.Compare))
}

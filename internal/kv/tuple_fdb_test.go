//go:build fdb

package kv_test

import (
	"bytes"
	"testing"

	"github.com/apple/foundationdb/bindings/go/src/fdb/tuple"

	"github.com/codi2/codi2/internal/kv"
)

// toFDB converts a kv.Tuple to the bindings' tuple.Tuple.
func toFDB(t kv.Tuple) tuple.Tuple {
	out := make(tuple.Tuple, len(t))
	for i, e := range t {
		if nested, ok := e.(kv.Tuple); ok {
			out[i] = toFDB(nested)
			continue
		}
		out[i] = e
	}
	return out
}

// FuzzTuple_MatchesBindings checks that Pack writes the same bytes as the
// FoundationDB bindings' tuple layer, and that Unpack reads the bindings'
// encoding back.
func FuzzTuple_MatchesBindings(f *testing.F) {
	f.Add([]byte{4, 1, 3, 'a', 0, 'b', 3, 8, 0x80, 0, 0, 0, 0, 0, 0, 1})
	f.Add([]byte{3, 5, 2, 0, 1, 4, 1, 6})
	f.Fuzz(func(t *testing.T, data []byte) {
		tp, _ := genTuple(data, 0)
		want := toFDB(tp).Pack()
		if got := tp.Pack(); !bytes.Equal(got, want) {
			t.Fatalf("Pack(%#v) = %x, bindings %x", tp, got, want)
		}
		back, err := kv.Unpack(want)
		if err != nil {
			t.Fatalf("Unpack of the bindings' %x: %v", want, err)
		}
		if compareTuples(back, tp) != 0 {
			t.Fatalf("Unpack(%x) = %#v, want %#v", want, back, tp)
		}
	})
}

package jsonscan_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/internal/jsonscan"
)

// whole scans data as one JSON text: a value between white space.
func whole(s *jsonscan.Scanner) bool {
	end, ok := s.Value(s.Space(0), 1)
	return ok && s.Space(end) == len(s.Data)
}

// FuzzValue: without options, a Scanner takes exactly the texts
// encoding/json takes (json.Valid), and with MaxDepth and Strict no more.
func FuzzValue(f *testing.F) {
	for _, s := range []string{
		`{}`, `[]`, `""`, `0`, `-0.5e+3`, `true`, `false`, `null`, ` {"a" : [1, "x", {"b":null}] } `,
		`{"a":1,"a":2}`, `{"\u0061":1,"a":2}`, `"\ud800"`, `"\x"`, "\"\x01\"", "\"\xff\"", `01`, `1.`, `1e`, `-`,
		`[1,]`, `{"a":1,}`, `{"a" 1}`, `[[[[[[]]]]]]`, `tru`, `nul`, `{"a":1} x`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		valid := json.Valid(data)
		require.Equal(t, valid, whole(&jsonscan.Scanner{Data: data}), "%q", data)
		if !valid {
			assert.False(t, whole(&jsonscan.Scanner{Data: data, Strict: true, MaxDepth: 3}), "%q", data)
		}
	})
}

func TestScanner_Value(t *testing.T) {
	tests := []struct {
		in       string
		strict   bool
		maxDepth int
		ok       bool
	}{
		{in: `{"a":1,"a":2}`, ok: true},
		{in: `{"a":1,"a":2}`, strict: true},
		{in: `{"\u0061":1}`, ok: true},
		{in: `{"\u0061":1}`, strict: true},
		{in: `{"a":1,"b":{"a":2}}`, strict: true, ok: true},
		{in: `[[1]]`, maxDepth: 2, ok: true},
		{in: `[[[1]]]`, maxDepth: 2},
		{in: `{"a":{"b":{}}}`, maxDepth: 2},
		{in: `{"a":{"b":{}}}`, maxDepth: 3, ok: true},
	}
	for _, tt := range tests {
		s := jsonscan.Scanner{Data: []byte(tt.in), Strict: tt.strict, MaxDepth: tt.maxDepth}
		assert.Equal(t, tt.ok, whole(&s), "%s strict %v depth %d", tt.in, tt.strict, tt.maxDepth)
	}
}

// A Strict object keeps its first names in an array and the rest in a
// map: a name repeated past the array's size is still found.
func TestScanner_StrictManyNames(t *testing.T) {
	var b strings.Builder
	b.WriteString("{")
	for i := range 40 {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"k%d":1`, i)
	}
	distinct := b.String() + "}"
	require.True(t, whole(&jsonscan.Scanner{Data: []byte(distinct), Strict: true}))
	for _, dup := range []string{`"k0"`, `"k15"`, `"k16"`, `"k39"`} {
		in := distinct[:len(distinct)-1] + "," + dup + ":2}"
		assert.False(t, whole(&jsonscan.Scanner{Data: []byte(in), Strict: true}), dup)
		assert.True(t, whole(&jsonscan.Scanner{Data: []byte(in)}), dup)
	}
}

func TestScanner_Str(t *testing.T) {
	tests := []struct {
		in      string
		end     int
		escaped bool
		ok      bool
	}{
		{`"abc" x`, 5, false, true},
		{`"a\"b"`, 6, true, true},
		{`"\u00e9"`, 8, true, true},
		{`"\u00g9"`, 0, false, false},
		{`"\u00"`, 0, false, false},
		{`"\q"`, 0, false, false},
		{`"\`, 0, false, false},
		{"\"a\nb\"", 0, false, false},
		{`"abc`, 0, false, false},
		{`abc`, 0, false, false},
	}
	for _, tt := range tests {
		s := jsonscan.Scanner{Data: []byte(tt.in)}
		end, escaped, ok := s.Str(0)
		assert.Equal(t, tt.ok, ok, tt.in)
		assert.Equal(t, tt.end, end, tt.in)
		assert.Equal(t, tt.escaped, escaped, tt.in)
	}
	s := jsonscan.Scanner{Data: []byte(`x"plain","esc\n"`)}
	v, end, ok := s.PlainStr(1)
	require.True(t, ok)
	assert.Equal(t, "plain", string(v))
	assert.Equal(t, 8, end)
	_, _, ok = s.PlainStr(9)
	assert.False(t, ok, "a string with an escape is not plain")
}

func TestScanner_Number(t *testing.T) {
	tests := []struct {
		in      string
		end     int
		integer bool
		ok      bool
	}{
		{"0", 1, true, true},
		{"-12,", 3, true, true},
		{"1.5", 3, false, true},
		{"1e9", 3, false, true},
		{"2E-3]", 4, false, true},
		{"01", 1, true, true}, // the number is 0; what follows is the caller's
		{"-", 0, false, false},
		{"1.", 0, false, false},
		{"1e+", 0, false, false},
		{"x", 0, false, false},
	}
	for _, tt := range tests {
		s := jsonscan.Scanner{Data: []byte(tt.in)}
		end, integer, ok := s.Number(0)
		assert.Equal(t, tt.ok, ok, tt.in)
		assert.Equal(t, tt.end, end, tt.in)
		assert.Equal(t, tt.integer, integer, tt.in)
	}
}

func TestScanner_LiteralSpaceAt(t *testing.T) {
	s := jsonscan.Scanner{Data: []byte(" \t\r\ntrue nul")}
	i := s.Space(0)
	assert.Equal(t, 4, i)
	assert.True(t, s.At(i, 't'))
	end, ok := s.Literal(i, "true")
	require.True(t, ok)
	assert.Equal(t, 8, end)
	_, ok = s.Literal(s.Space(end), "null")
	assert.False(t, ok, "cut short")
	assert.False(t, s.At(len(s.Data), 'l'), "past the end")
	assert.Equal(t, len(s.Data), s.Space(len(s.Data)))
	_, ok = s.Value(len(s.Data), 1)
	assert.False(t, ok, "no value past the end")
}

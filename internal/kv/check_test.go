package kv_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/internal/kv"
)

func TestCheckKey(t *testing.T) {
	tests := []struct {
		name    string
		key     []byte
		wantErr error
	}{
		{"one byte", []byte{0x00}, nil},
		{"max size", bytes.Repeat([]byte{'k'}, kv.MaxKeySize), nil},
		{"just below system", []byte{0xfe, 0xff}, nil},
		{"empty", nil, kv.ErrInvalidKey},
		{"too large", bytes.Repeat([]byte{'k'}, kv.MaxKeySize+1), kv.ErrKeyTooLarge},
		{"system key", []byte{0xff}, kv.ErrInvalidKey},
		{"long system key", append([]byte{0xff}, bytes.Repeat([]byte{'k'}, 100)...), kv.ErrInvalidKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := kv.CheckKey(tt.key)
			if tt.wantErr == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tt.wantErr)
		})
	}
}

func TestCheckValue(t *testing.T) {
	require.NoError(t, kv.CheckValue(nil))
	require.NoError(t, kv.CheckValue(make([]byte, kv.MaxValueSize)))
	err := kv.CheckValue(make([]byte, kv.MaxValueSize+1))
	require.ErrorIs(t, err, kv.ErrValueTooLarge)
	assert.ErrorIs(t, err, kv.ErrTooLarge)
	assert.Contains(t, err.Error(), "100001")
}

func TestCheckRange(t *testing.T) {
	tests := []struct {
		name       string
		begin, end []byte
		wantErr    error
	}{
		{"everything", nil, []byte{0xff}, nil},
		{"inverted is valid", []byte("b"), []byte("a"), nil},
		{"max bound", nil, bytes.Repeat([]byte{'k'}, kv.MaxKeySize+1), nil},
		{"bound too large", bytes.Repeat([]byte{'k'}, kv.MaxKeySize+2), nil, kv.ErrKeyTooLarge},
		{"end past user keyspace", nil, []byte{0xff, 0x00}, kv.ErrInvalidKey},
		{"begin past user keyspace", []byte{0xff, 0xff}, []byte{0xff}, kv.ErrInvalidKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := kv.CheckRange(tt.begin, tt.end)
			if tt.wantErr == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tt.wantErr)
		})
	}
}

func TestErrTooLarge_Is(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"key", kv.ErrKeyTooLarge, true},
		{"value", kv.ErrValueTooLarge, true},
		{"txn", kv.ErrTxnTooLarge, true},
		{"wrapped txn", errors.Join(errors.New("boltkv: commit"), kv.ErrTxnTooLarge), true},
		{"not found", kv.ErrNotFound, false},
		{"timeout", kv.ErrTimeout, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, errors.Is(tt.err, kv.ErrTooLarge))
		})
	}
	assert.NotErrorIs(t, kv.ErrKeyTooLarge, kv.ErrValueTooLarge, "limits stay distinct")
	assert.Equal(t, "kv: key too large", kv.ErrKeyTooLarge.Error())
}

func TestWrites_Add(t *testing.T) {
	var w kv.Writes
	require.NoError(t, w.Add("testkv", "set", kv.MaxTxnWriteBytes-10, nil))
	require.NoError(t, w.Add("testkv", "set", 10, nil), "exactly at the limit")
	err := w.Add("testkv", "set", 1, nil)
	require.ErrorIs(t, err, kv.ErrTxnTooLarge)
	require.ErrorIs(t, err, kv.ErrTooLarge)
	assert.Contains(t, err.Error(), "testkv: set: transaction writes")
	assert.Equal(t, err, w.Err(), "the first failure is kept")

	w.Fail(errors.New("later"))
	assert.Equal(t, err, w.Err(), "a later failure does not replace it")

	var v kv.Writes
	bad := kv.CheckKey(nil)
	require.ErrorIs(t, v.Add("testkv", "clear", 0, bad), kv.ErrInvalidKey)
	require.ErrorIs(t, v.Err(), kv.ErrInvalidKey)
	assert.Contains(t, v.Err().Error(), "testkv: clear: empty key")
}

// A write that passes its checks costs no allocation: backends call Add
// for every Set and Clear.
func TestWrites_Add_NoAllocs(t *testing.T) {
	var w kv.Writes
	allocs := testing.AllocsPerRun(100, func() {
		if err := w.Add("testkv", "set", 10, nil); err != nil {
			t.Fatal(err)
		}
	})
	assert.Zero(t, allocs)
}

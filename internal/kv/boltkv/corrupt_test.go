package boltkv_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/internal/kv/boltkv"
)

// bbolt's page header: id (8 bytes), flags (2), count (2), overflow (4);
// pages are the OS page size.
const (
	flagsOffset = 8
	leafFlag    = 0x02
	branchFlag  = 0x01
)

func pageKey(i int) []byte { return kv.Tuple{"k", int64(i)}.Pack() }

// fillStore writes n keys with 100-byte values to a new file and closes it.
func fillStore(t *testing.T, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kv.db")
	s, err := boltkv.Open(path, boltkv.Options{NoSync: true})
	require.NoError(t, err)
	require.NoError(t, s.Update(context.Background(), func(tx kv.Txn) error {
		for i := range n {
			if err := tx.Set(pageKey(i), bytes.Repeat([]byte{'v'}, 100)); err != nil {
				return err
			}
		}
		return nil
	}))
	require.NoError(t, s.Close())
	return path
}

// damagePages overwrites on disk the page type of every page whose type is
// in types and, when key is not nil, that holds key; it returns how many.
func damagePages(t *testing.T, path string, key []byte, types ...uint16) int {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	ps := os.Getpagesize()
	n := 0
	for off := 2 * ps; off+ps <= len(data); off += ps {
		page := data[off : off+ps]
		flags := binary.LittleEndian.Uint16(page[flagsOffset:])
		if !contains(types, flags) || (key != nil && !bytes.Contains(page, key)) {
			continue
		}
		_, err := f.WriteAt([]byte{0x7f, 0}, int64(off+flagsOffset))
		require.NoError(t, err)
		n++
	}
	require.NoError(t, f.Sync())
	return n
}

func contains(s []uint16, v uint16) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestStore_DamagedPage is issue 11's input 7 at the store: a page damaged
// on disk fails the requests that read it with kv.ErrCorrupt, naming the
// file, instead of a bbolt panic that would take the process down; the
// rest of the file still answers.
func TestStore_DamagedPage(t *testing.T) {
	path := fillStore(t, 3000)
	damaged := pageKey(1500)
	require.Equal(t, 1, damagePages(t, path, damaged, leafFlag))

	s, err := boltkv.Open(path, boltkv.Options{})
	require.NoError(t, err, "the damage is in a page the open does not read")
	defer s.Close()
	ctx := context.Background()
	err = s.View(ctx, func(tx kv.ReadTxn) error {
		_, err := tx.Get(damaged)
		return err
	})
	require.ErrorIs(t, err, kv.ErrCorrupt)
	assert.ErrorContains(t, err, path)
	err = s.View(ctx, func(tx kv.ReadTxn) error {
		b, e := kv.Tuple{"k"}.Range()
		_, err := tx.GetRange(b, e, kv.RangeOptions{})
		return err
	})
	require.ErrorIs(t, err, kv.ErrCorrupt)
	err = s.Update(ctx, func(tx kv.Txn) error { return tx.Set(damaged, []byte("x")) })
	require.ErrorIs(t, err, kv.ErrCorrupt)
	err = s.Update(ctx, func(tx kv.Txn) error { return tx.Clear(damaged) })
	require.ErrorIs(t, err, kv.ErrCorrupt)
	b, e := kv.Tuple{"k"}.Range()
	err = s.Update(ctx, func(tx kv.Txn) error { return tx.ClearRange(b, e) })
	require.ErrorIs(t, err, kv.ErrCorrupt)

	// Keys on sound pages are read and written as before.
	err = s.Update(ctx, func(tx kv.Txn) error { return tx.Set(pageKey(1), []byte("new")) })
	require.NoError(t, err)
	require.NoError(t, s.View(ctx, func(tx kv.ReadTxn) error {
		v, err := tx.Get(pageKey(1))
		assert.Equal(t, "new", string(v))
		return err
	}))
}

// TestOpen_DamagedPages: with every branch and leaf page damaged, Open
// fails with kv.ErrCorrupt rather than panicking.
func TestOpen_DamagedPages(t *testing.T) {
	path := fillStore(t, 3000)
	require.Positive(t, damagePages(t, path, nil, leafFlag, branchFlag))
	_, err := boltkv.Open(path, boltkv.Options{})
	require.ErrorIs(t, err, kv.ErrCorrupt)
	assert.ErrorContains(t, err, path)
}

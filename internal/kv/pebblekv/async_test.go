package pebblekv_test

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/vfs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/internal/kv/pebblekv"
)

// gatedFS is a file system whose write-ahead log syncs can be held back
// (hold, then release) or made to fail (failWith).
type gatedFS struct {
	vfs.FS
	mu   sync.Mutex
	gate chan struct{} // non-nil: log syncs wait for it to close
	err  error         // non-nil: log syncs fail with it
}

func (fs *gatedFS) hold() {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.gate = make(chan struct{})
}

func (fs *gatedFS) release() {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	close(fs.gate)
	fs.gate = nil
}

func (fs *gatedFS) failWith(err error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.err = err
}

func (fs *gatedFS) wrap(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil || !strings.HasSuffix(name, ".log") {
		return f, err
	}
	return gatedFile{File: f, fs: fs}, nil
}

func (fs *gatedFS) Create(name string) (vfs.File, error) {
	f, err := fs.FS.Create(name)
	return fs.wrap(name, f, err)
}

func (fs *gatedFS) ReuseForWrite(oldname, newname string) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname)
	return fs.wrap(newname, f, err)
}

type gatedFile struct {
	vfs.File
	fs *gatedFS
}

func (f gatedFile) wait() error {
	f.fs.mu.Lock()
	gate, err := f.fs.gate, f.fs.err
	f.fs.mu.Unlock()
	if gate != nil {
		<-gate
	}
	return err
}

func (f gatedFile) Sync() error {
	if err := f.wait(); err != nil {
		return err
	}
	return f.File.Sync()
}

func (f gatedFile) SyncData() error {
	if err := f.wait(); err != nil {
		return err
	}
	return f.File.SyncData()
}

// While the log's fsync is held back, UpdateAsync returns, its writes are
// visible to a View and to the next UpdateAsync (the writer slot is free),
// and durable does not return; once the fsync happens, every durable
// returns nil.
func TestStore_UpdateAsync_DurableWaitsForFsync(t *testing.T) {
	fs := &gatedFS{FS: vfs.NewMem()}
	s, err := pebblekv.Open("db", pebblekv.Options{FS: fs})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })

	fs.hold()
	d1, err := s.UpdateAsync(t.Context(), func(tx kv.Txn) error { return tx.Set([]byte("a"), []byte("1")) })
	require.NoError(t, err, "UpdateAsync must not wait for the fsync")
	d2, err := s.UpdateAsync(t.Context(), func(tx kv.Txn) error {
		v, err := tx.Get([]byte("a"))
		require.NoError(t, err)
		assert.Equal(t, "1", string(v))
		return tx.Set([]byte("b"), []byte("2"))
	})
	require.NoError(t, err, "the writer slot is free while the fsync is in flight")
	d3, err := s.UpdateAsync(t.Context(), func(tx kv.Txn) error { _, err := tx.Get([]byte("b")); return err })
	require.NoError(t, err, "a transaction that writes nothing")
	require.NoError(t, s.View(t.Context(), func(tx kv.ReadTxn) error {
		kvs, err := tx.GetRange(nil, []byte{0xff}, kv.RangeOptions{})
		assert.Len(t, kvs, 2)
		return err
	}))

	done := make(chan error, 3)
	for _, d := range []func() error{d1, d2, d3} {
		go func() { done <- d() }()
	}
	// A durable that returned before the fsync would show here; the test
	// does not depend on the timing to pass.
	select {
	case err := <-done:
		t.Fatalf("durable returned %v while the log's fsync was held back", err)
	case <-time.After(50 * time.Millisecond):
	}
	fs.release()
	for range 3 {
		require.NoError(t, <-done)
	}
}

// A failed fsync of the log is returned by durable, and by every commit
// after it (pebble keeps the first sync error), Update included; nothing
// later is reported durable.
func TestStore_UpdateAsync_SyncFailure(t *testing.T) {
	fs := &gatedFS{FS: vfs.NewMem()}
	s, err := pebblekv.Open("db", pebblekv.Options{FS: fs})
	require.NoError(t, err)

	eio := errors.New("input/output error")
	fs.failWith(eio)
	d1, err := s.UpdateAsync(t.Context(), func(tx kv.Txn) error { return tx.Set([]byte("a"), []byte("1")) })
	require.NoError(t, err, "applied before the fsync")
	err = d1()
	require.ErrorIs(t, err, eio)
	assert.ErrorContains(t, err, "sync log")

	fs.failWith(nil)
	d2, err := s.UpdateAsync(t.Context(), func(tx kv.Txn) error { return tx.Set([]byte("b"), []byte("2")) })
	if err == nil {
		assert.ErrorIs(t, d2(), eio, "a later commit is not durable either")
	}
	assert.ErrorIs(t, s.Update(t.Context(), func(tx kv.Txn) error { return tx.Set([]byte("c"), []byte("3")) }), eio)
	assert.Error(t, s.Close(), "the log could not be synced")
}

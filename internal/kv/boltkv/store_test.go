package boltkv_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/internal/kv/boltkv"
	"github.com/codi2/codi2/internal/kv/kvtest"
)

func openTemp(t *testing.T, opts boltkv.Options) *boltkv.Store {
	t.Helper()
	s, err := boltkv.Open(filepath.Join(t.TempDir(), "kv.db"), opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestOptions_Validate(t *testing.T) {
	tests := []struct {
		name    string
		opts    boltkv.Options
		wantErr string
	}{
		{"zero", boltkv.Options{}, ""},
		{"all set", boltkv.Options{Timeout: time.Second, TxnTimeout: time.Second, NoSync: true, InitialMmapSize: 1 << 20}, ""},
		{"negative timeout", boltkv.Options{Timeout: -1}, "Timeout"},
		{"negative txn timeout", boltkv.Options{TxnTimeout: -1}, "TxnTimeout"},
		{"negative mmap size", boltkv.Options{InitialMmapSize: -1}, "InitialMmapSize"},
		{"append fill", boltkv.Options{FillPercent: boltkv.AppendFillPercent}, ""},
		{"lowest fill", boltkv.Options{FillPercent: 0.1}, ""},
		{"fill too low", boltkv.Options{FillPercent: 0.05}, "FillPercent 0.05 is outside 0.1 to 1.0"},
		{"fill too high", boltkv.Options{FillPercent: 1.5}, "FillPercent 1.5 is outside"},
		{"negative fill", boltkv.Options{FillPercent: -1}, "FillPercent"},
		{"audit pages", boltkv.Options{PageSize: boltkv.AppendPageSize}, ""},
		{"smallest page", boltkv.Options{PageSize: 4096}, ""},
		{"largest page", boltkv.Options{PageSize: 65536}, ""},
		{"page too small", boltkv.Options{PageSize: 2048}, "PageSize 2048 is not a power of two from 4096 to 65536"},
		{"page too large", boltkv.Options{PageSize: 1 << 17}, "PageSize 131072"},
		{"page not a power of two", boltkv.Options{PageSize: 12288}, "PageSize 12288"},
		{"negative page", boltkv.Options{PageSize: -4096}, "PageSize -4096"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.opts.Validate()
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

func TestOpen_Errors(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.db")
	require.NoError(t, os.WriteFile(garbage, make([]byte, 64<<10), 0o600))
	tests := []struct {
		name    string
		path    string
		opts    boltkv.Options
		wantErr string
	}{
		{"invalid options", filepath.Join(dir, "x.db"), boltkv.Options{Timeout: -1}, "negative Timeout"},
		{"missing directory", filepath.Join(dir, "missing", "kv.db"), boltkv.Options{}, "no such file"},
		{"not a bbolt file", garbage, boltkv.Options{}, garbage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := boltkv.Open(tt.path, tt.opts)
			require.ErrorContains(t, err, tt.wantErr)
			assert.Nil(t, s)
		})
	}
}

// The lock is per open file, so a second Open in the same process conflicts
// just as another process would.
func TestOpen_Locked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kv.db")
	s, err := boltkv.Open(path, boltkv.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })

	other, err := boltkv.Open(path, boltkv.Options{Timeout: 50 * time.Millisecond})
	require.ErrorIs(t, err, boltkv.ErrLocked)
	assert.ErrorContains(t, err, path)
	assert.Nil(t, other)

	require.NoError(t, s.Close())
	again, err := boltkv.Open(path, boltkv.Options{Timeout: 50 * time.Millisecond})
	require.NoError(t, err, "lock released by Close")
	require.NoError(t, again.Close())
}

func TestOpen_Reopen_KeepsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kv.db")
	s, err := boltkv.Open(path, boltkv.Options{})
	require.NoError(t, err)
	assert.Equal(t, path, s.Path())
	require.NoError(t, s.Update(t.Context(), func(tx kv.Txn) error {
		return tx.Set([]byte("k"), []byte("v"))
	}))
	require.NoError(t, s.Close())

	s, err = boltkv.Open(path, boltkv.Options{NoSync: true})
	require.NoError(t, err)
	defer s.Close()
	require.NoError(t, s.View(t.Context(), func(tx kv.ReadTxn) error {
		v, err := tx.Get([]byte("k"))
		require.NoError(t, err)
		assert.Equal(t, "v", string(v))
		return nil
	}))
}

// The embedded backends' shared tests: its own transaction timeout, the
// wait for the writer slot, Close while writers wait, a panicking Update, a
// transaction used after its function.
func TestStore_Embedded(t *testing.T) {
	kvtest.RunEmbedded(t, func(t *testing.T, timeout time.Duration) kv.Store {
		return openTemp(t, boltkv.Options{TxnTimeout: timeout})
	})
}

// appendCommits commits n transactions of 100 keys appended in order with
// 400-byte values (the audit log's records) and returns the Store's page
// writes per commit.
func appendCommits(t *testing.T, s *boltkv.Store, n int) float64 {
	t.Helper()
	value := make([]byte, 400)
	before := s.Stats()
	for i := range n {
		require.NoError(t, s.Update(t.Context(), func(tx kv.Txn) error {
			for j := range 100 {
				if err := tx.Set(kv.Tuple{"log", i*100 + j}.Pack(), value); err != nil {
					return err
				}
			}
			return nil
		}))
	}
	after := s.Stats()
	require.Equal(t, int64(n), after.Commits-before.Commits)
	return float64(after.PageWrites-before.PageWrites) / float64(n)
}

// Pages split 80% full (AppendFillPercent) instead of half full: a commit
// of keys appended in order writes about a third fewer pages, and the file,
// opened again with the default fill, reads the same.
func TestOptions_FillPercent_AppendWritesFewerPages(t *testing.T) {
	dflt := appendCommits(t, openTemp(t, boltkv.Options{NoSync: true}), 20)
	path := filepath.Join(t.TempDir(), "kv.db")
	s, err := boltkv.Open(path, boltkv.Options{NoSync: true, FillPercent: boltkv.AppendFillPercent})
	require.NoError(t, err)
	full := appendCommits(t, s, 20)
	t.Logf("page writes per commit of 100 appended keys: %.1f at the default fill, %.1f at %v", dflt, full, boltkv.AppendFillPercent)
	assert.Less(t, full, 0.75*dflt)
	require.NoError(t, s.Close())

	s, err = boltkv.Open(path, boltkv.Options{})
	require.NoError(t, err)
	defer s.Close()
	require.NoError(t, s.View(t.Context(), func(tx kv.ReadTxn) error {
		begin, end := kv.Tuple{"log"}.Range()
		kvs, err := tx.GetRange(begin, end, kv.RangeOptions{})
		require.NoError(t, err)
		assert.Len(t, kvs, 2000)
		return nil
	}))
	assert.Zero(t, s.Stats().Commits, "counted since Open")
}

// A file created with AppendPageSize keeps it: appending the same keys
// takes about a quarter of the page writes of the OS page size, and an Open
// with another PageSize, or none, reads the file's own size from its meta
// page and finds every key (bbolt's Options.PageSize applies at creation
// only).
func TestOptions_PageSize_FixedAtCreation(t *testing.T) {
	small := appendCommits(t, openTemp(t, boltkv.Options{NoSync: true, FillPercent: boltkv.AppendFillPercent, PageSize: 4096}), 20)
	path := filepath.Join(t.TempDir(), "kv.db")
	s, err := boltkv.Open(path, boltkv.Options{NoSync: true, FillPercent: boltkv.AppendFillPercent, PageSize: boltkv.AppendPageSize})
	require.NoError(t, err)
	large := appendCommits(t, s, 20)
	t.Logf("page writes per commit of 100 appended keys: %.1f with 4 KiB pages, %.1f with %d-byte pages", small, large, boltkv.AppendPageSize)
	assert.Less(t, large, 0.5*small)
	require.NoError(t, s.Close())

	for _, reopen := range []int{0, 4096, 65536} {
		s, err = boltkv.Open(path, boltkv.Options{PageSize: reopen})
		require.NoError(t, err, "reopened with PageSize %d", reopen)
		assert.Equal(t, boltkv.AppendPageSize, s.PageSize(), "the page size the file was created with")
		require.NoError(t, s.Update(t.Context(), func(tx kv.Txn) error {
			return tx.Set(kv.Tuple{"log", "after", int64(reopen)}.Pack(), []byte("v"))
		}))
		require.NoError(t, s.View(t.Context(), func(tx kv.ReadTxn) error {
			begin, end := kv.Tuple{"log"}.Range()
			kvs, err := tx.GetRange(begin, end, kv.RangeOptions{})
			require.NoError(t, err)
			assert.GreaterOrEqual(t, len(kvs), 2001)
			return nil
		}))
		require.NoError(t, s.Close())
	}
}

//go:build fdb

package fdbkv_test

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/internal/kv/fdbkv"
	"github.com/codi2/codi2/internal/kv/kvtest"
)

// openStore opens the cluster named by FDB_CLUSTER_FILE, skipping the test
// when it is unset, and empties the user keyspace before and after: the
// tests own the whole database, so never point them at a cluster with data
// you want to keep.
func openStore(t *testing.T, opts fdbkv.Options) kv.Store {
	t.Helper()
	opts.ClusterFile = os.Getenv("FDB_CLUSTER_FILE")
	if opts.ClusterFile == "" {
		t.Skip("FDB_CLUSTER_FILE not set; see deploy/fdb/README.md")
	}
	s, err := fdbkv.Open(opts)
	require.NoError(t, err)
	clearAll := func() error {
		return s.Update(context.Background(), func(tx kv.Txn) error {
			return tx.ClearRange(nil, []byte{0xff})
		})
	}
	require.NoError(t, clearAll())
	t.Cleanup(func() {
		if err := clearAll(); err != nil && !errors.Is(err, kv.ErrClosed) {
			t.Errorf("clear database: %v", err)
		}
		if err := s.Close(); err != nil && !errors.Is(err, kv.ErrClosed) {
			t.Errorf("close store: %v", err)
		}
	})
	return s
}

func TestStore_Conformance(t *testing.T) {
	kvtest.Run(t, func(t *testing.T) kv.Store { return openStore(t, fdbkv.Options{}) })
}

func TestOptions_Validate(t *testing.T) {
	tests := []struct {
		name    string
		opts    fdbkv.Options
		wantErr bool
	}{
		{"zero", fdbkv.Options{}, false},
		{"negative timeout", fdbkv.Options{TxnTimeout: -1}, true},
		{"negative retry limit", fdbkv.Options{RetryLimit: -1}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.opts.Validate()
			if tt.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
		})
	}
}

// A transaction whose read is overwritten by a concurrent commit conflicts.
// FoundationDB retries it (the conformance suite's concurrent counter covers
// that); with RetryLimit 1 the second conflict surfaces as kv.ErrConflict.
func TestStore_Update_ConflictAfterRetryLimit(t *testing.T) {
	s := openStore(t, fdbkv.Options{RetryLimit: 1})
	key := []byte("conflict")
	attempts := 0
	err := s.Update(t.Context(), func(tx kv.Txn) error {
		attempts++
		if _, err := tx.Get(key); err != nil && !errors.Is(err, kv.ErrNotFound) {
			return err
		}
		// Another transaction changes what this one read. (Nesting is safe
		// on fdbkv, which holds no lock while fn runs; not on boltkv.)
		if err := s.Update(context.Background(), func(other kv.Txn) error {
			return other.Set(key, []byte{byte(attempts)})
		}); err != nil {
			return err
		}
		return tx.Set(key, []byte("loser"))
	})
	require.ErrorIs(t, err, kv.ErrConflict)
	require.Equal(t, 2, attempts, "one try and one retry")
}

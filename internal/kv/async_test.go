package kv_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/internal/kv/kvtest"
)

// A store without a split commit (bbolt) commits in UpdateAsync itself:
// the writes are there before durable is called, and an error of fn comes
// back unchanged with nothing written.
func TestUpdateAsync_FallsBackToUpdate(t *testing.T) {
	s := kvtest.NewBolt(t)
	_, isAsync := s.(kv.AsyncStore)
	require.False(t, isAsync, "the fallback needs a store without UpdateAsync")
	key := kv.Tuple{"k"}.Pack()

	durable, err := kv.UpdateAsync(context.Background(), s, func(tx kv.Txn) error { return tx.Set(key, []byte("v")) })
	require.NoError(t, err)
	require.NoError(t, s.View(context.Background(), func(tx kv.ReadTxn) error {
		v, err := tx.Get(key)
		require.Equal(t, "v", string(v))
		return err
	}))
	require.NoError(t, durable())

	boom := errors.New("boom")
	durable, err = kv.UpdateAsync(context.Background(), s, func(tx kv.Txn) error {
		_ = tx.Set(key, []byte("w"))
		return boom
	})
	require.ErrorIs(t, err, boom)
	require.Nil(t, durable)
	require.NoError(t, s.View(context.Background(), func(tx kv.ReadTxn) error {
		v, err := tx.Get(key)
		require.Equal(t, "v", string(v), "a failed fn must leave nothing")
		return err
	}))
}

package pebblekv_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/vfs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/internal/kv/pebblekv"
)

var lastKey = kv.Tuple{"last"}.Pack()

// TestStore_PowerLoss commits transactions with Update, with UpdateAsync
// whose durable is called at once, later, or never, and cuts the power at
// a random point: from then on the file system drops every fsync
// (vfs.NewStrictMem), the store is closed, and everything not fsynced is
// discarded before the store is opened again. Each transaction i writes
// its own key and sets "last" to i. After the loss, every transaction
// whose Update or durable returned nil before the cut is there, and what
// is there is a prefix of the commit order: transactions 1..k, nothing
// after k, and "last" = k. Several rounds run on the same file system, each
// continuing after what the last one kept.
func TestStore_PowerLoss(t *testing.T) {
	fs := vfs.NewStrictMem()
	const dir = "db"
	kept := 0
	for round := range 5 {
		s, err := pebblekv.Open(dir, pebblekv.Options{FS: fs})
		require.NoError(t, err)
		require.Equal(t, kept, verifyPrefix(t, s), "round %d: the store as reopened", round)

		const txns = 200
		cut := kept + 1 + rand.IntN(txns)
		confirmed := kept // the last transaction confirmed durable before the cut
		var later []func() error
		laterFirst := 0 // the transaction of later[0]
		for i := kept + 1; i <= kept+txns; i++ {
			if i == cut {
				// Confirmations from here on prove nothing.
				fs.SetIgnoreSyncs(true)
			}
			fn := func(tx kv.Txn) error {
				if err := tx.Set(kv.Tuple{"txn", int64(i)}.Pack(), []byte(fmt.Sprint(i))); err != nil {
					return err
				}
				return tx.Set(lastKey, kv.Tuple{int64(i)}.Pack())
			}
			switch rand.IntN(4) {
			case 0:
				require.NoError(t, s.Update(t.Context(), fn))
				if i < cut {
					confirmed = i
				}
			case 1:
				durable, err := s.UpdateAsync(t.Context(), fn)
				require.NoError(t, err)
				require.NoError(t, durable())
				if i < cut {
					confirmed = i
				}
			case 2:
				durable, err := s.UpdateAsync(t.Context(), fn)
				require.NoError(t, err)
				if len(later) == 0 {
					laterFirst = i
				}
				later = append(later, durable)
				if len(later) == 8 || i == cut-1 {
					// The last one first: it vouches for the others.
					require.NoError(t, later[len(later)-1]())
					for _, d := range later {
						require.NoError(t, d())
					}
					if i < cut {
						confirmed = laterFirst + len(later) - 1
					}
					later = later[:0]
				}
			default:
				_, err := s.UpdateAsync(t.Context(), fn)
				require.NoError(t, err)
			}
		}
		require.NoError(t, s.Close())
		fs.ResetToSyncedState()
		fs.SetIgnoreSyncs(false)

		s, err = pebblekv.Open(dir, pebblekv.Options{FS: fs})
		require.NoError(t, err)
		kept = verifyPrefix(t, s)
		require.NoError(t, s.Close())
		assert.GreaterOrEqual(t, kept, confirmed, "round %d: a transaction confirmed durable was lost", round)
		assert.Less(t, kept, cut, "round %d: a transaction after the cut survived the loss of its fsync", round)
		t.Logf("round %d: cut at %d, %d confirmed, %d kept", round, cut, confirmed, kept)
	}
}

// verifyPrefix checks that the store holds transactions 1..k and nothing
// else, with "last" = k, and returns k.
func verifyPrefix(t *testing.T, s *pebblekv.Store) int {
	t.Helper()
	k := 0
	require.NoError(t, s.View(t.Context(), func(tx kv.ReadTxn) error {
		begin, end := kv.Tuple{"txn"}.Range()
		kvs, err := tx.GetRange(begin, end, kv.RangeOptions{})
		require.NoError(t, err)
		for i, p := range kvs {
			tp, err := kv.Unpack(p.Key)
			require.NoError(t, err)
			require.Equal(t, int64(i+1), tp[1], "transaction %d is missing but a later one is there", i+1)
			require.Equal(t, fmt.Sprint(i+1), string(p.Value))
		}
		k = len(kvs)
		v, err := tx.Get(lastKey)
		if k == 0 {
			require.ErrorIs(t, err, kv.ErrNotFound)
			return nil
		}
		require.NoError(t, err)
		tp, err := kv.Unpack(v)
		require.NoError(t, err)
		require.Equal(t, int64(k), tp[0], "last")
		return nil
	}))
	return k
}

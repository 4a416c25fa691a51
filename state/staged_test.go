package state

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/internal/kv/boltkv"
)

// A stagedTxn reads like the transaction it stages for would read had its
// writes been made (Get, and GetRange with every limit and order), flush
// makes exactly them, and discard leaves the transaction as it was:
// random writes over a store holding keys already, checked against the
// same writes made directly in a second store. The same holds for a
// stagedTxn over a batch layer (another stagedTxn with writes of its
// own), whose flush merges into that layer.
func TestStagedTxn_ReadsLikeTheWritesMade(t *testing.T) {
	open := func(name string) kv.Store {
		s, err := boltkv.Open(filepath.Join(t.TempDir(), name), boltkv.Options{NoSync: true})
		require.NoError(t, err)
		t.Cleanup(func() { s.Close() })
		return s
	}
	ctx := context.Background()
	key := func(r *rand.Rand) []byte { return fmt.Appendf(nil, "k%02d", r.IntN(30)) }
	for round := range 40 {
		r := rand.New(rand.NewPCG(uint64(round), 7))
		staged, direct := open("staged.db"), open("direct.db")
		// The same keys in both before the round.
		for _, s := range []kv.Store{staged, direct} {
			require.NoError(t, s.Update(ctx, func(tx kv.Txn) error {
				for i := range 30 {
					if i%3 != 0 {
						if err := tx.Set(fmt.Appendf(nil, "k%02d", i), fmt.Appendf(nil, "old%d", i)); err != nil {
							return err
						}
					}
				}
				return nil
			}))
		}
		keep := round%4 != 3
		// Every other round stages over a batch layer holding writes of
		// its own: reads go through both, flush merges into it, and the
		// batch layer's flush makes both layers' writes.
		layered := round%2 == 0
		require.NoError(t, staged.Update(ctx, func(tx kv.Txn) error {
			return direct.Update(ctx, func(dtx kv.Txn) error {
				batch := newStagedTxn(tx)
				s := batch
				if layered {
					for step := range 20 {
						k := key(r)
						if r.IntN(3) == 0 {
							require.NoError(t, batch.Clear(k))
							require.NoError(t, dtx.Clear(k))
							continue
						}
						v := fmt.Appendf(nil, "b%d-%d", round, step)
						require.NoError(t, batch.Set(k, v))
						require.NoError(t, dtx.Set(k, v))
					}
					s = newStagedTxn(batch)
					keep = true // a discarded layer over it: TestBatchLayer_SameAsOneCommandPerTxn
				}
				for step := range 60 {
					k := key(r)
					switch r.IntN(3) {
					case 0:
						v := fmt.Appendf(nil, "v%d-%d", round, step)
						require.NoError(t, s.Set(k, v))
						require.NoError(t, dtx.Set(k, v))
					case 1:
						require.NoError(t, s.Clear(k))
						require.NoError(t, dtx.Clear(k))
					default:
						require.NoError(t, s.Set(k, []byte{}))
						require.NoError(t, dtx.Set(k, []byte{}))
					}
					got, gerr := s.Get(k)
					want, werr := dtx.Get(k)
					assert.Equal(t, werr, gerr)
					assert.Equal(t, want, got, "Get %s", k)
					lo, hi := key(r), key(r)
					opts := kv.RangeOptions{Limit: r.IntN(6), Reverse: r.IntN(2) == 0}
					gotR, err := s.GetRange(lo, hi, opts)
					require.NoError(t, err)
					wantR, err := dtx.GetRange(lo, hi, opts)
					require.NoError(t, err)
					if len(wantR) == 0 {
						assert.Empty(t, gotR)
					} else {
						assert.Equal(t, wantR, gotR, "GetRange %s %s %+v", lo, hi, opts)
					}
				}
				if keep {
					if err := s.flush(); err != nil {
						return err
					}
					return batch.flush()
				}
				s.discard()
				return s.flush()
			})
		}))
		all := func(s kv.Store) []kv.KeyValue {
			var kvs []kv.KeyValue
			require.NoError(t, s.View(ctx, func(tx kv.ReadTxn) error {
				var err error
				kvs, err = tx.GetRange([]byte("k"), []byte("l"), kv.RangeOptions{})
				return err
			}))
			return kvs
		}
		if keep {
			assert.Equal(t, all(direct), all(staged), "round %d: flushed", round)
			continue
		}
		var initial []kv.KeyValue
		for i := range 30 {
			if i%3 != 0 {
				initial = append(initial, kv.KeyValue{Key: fmt.Appendf(nil, "k%02d", i), Value: fmt.Appendf(nil, "old%d", i)})
			}
		}
		assert.Equal(t, initial, all(staged), "round %d: discarded", round)
	}
}

// A stagedTxn refuses ClearRange, and keys and values no backend takes
// where they are written, not at flush.
func TestStagedTxn_Refuses(t *testing.T) {
	store, err := boltkv.Open(filepath.Join(t.TempDir(), "s.db"), boltkv.Options{NoSync: true})
	require.NoError(t, err)
	defer store.Close()
	require.NoError(t, store.Update(context.Background(), func(tx kv.Txn) error {
		s := newStagedTxn(tx)
		require.Error(t, s.ClearRange([]byte("a"), []byte("c")))
		require.ErrorIs(t, s.Set(nil, []byte("v")), kv.ErrInvalidKey)
		require.ErrorIs(t, s.Clear(nil), kv.ErrInvalidKey)
		require.ErrorIs(t, s.Set([]byte("k"), make([]byte, kv.MaxValueSize+1)), kv.ErrTooLarge)
		return nil
	}))
}

// A child layer writes into its batch layer's map: discarding it puts
// back exactly what the batch layer had staged (values, removals, fresh
// entries and what they keep decoded), and a grandchild flushed into it
// is discarded with it. Random writes of every kind over a batch layer
// holding writes of every kind, checked against a copy of its map.
func TestStagedTxn_DiscardPutsBackTheBatchLayer(t *testing.T) {
	store, err := boltkv.Open(filepath.Join(t.TempDir(), "s.db"), boltkv.Options{NoSync: true})
	require.NoError(t, err)
	defer store.Close()
	rec := &Record{Kind: "task", ID: "T"}
	stage := func(r *rand.Rand, s *stagedTxn, n int) {
		for step := range n {
			k := fmt.Appendf(nil, "k%02d", r.IntN(20))
			switch r.IntN(5) {
			case 4:
				require.NoError(t, s.setRecord(k, stagedWrite{value: []byte("d"), rec: rec}))
			case 0:
				require.NoError(t, s.Set(k, fmt.Appendf(nil, "v%d", step)))
			case 1:
				require.NoError(t, s.Clear(k))
			case 2:
				_, err := s.setEntry(k)
				require.NoError(t, err)
			default:
				require.NoError(t, s.setOwned(k, stagedWrite{value: []byte("r"), rec: rec, entries: [][]byte{k}}))
			}
		}
	}
	for round := range 30 {
		r := rand.New(rand.NewPCG(uint64(round), 11))
		require.NoError(t, store.Update(context.Background(), func(tx kv.Txn) error {
			batch := newStagedTxn(tx)
			stage(r, batch, 15)
			before := maps.Clone(batch.writes)
			child := newStagedTxn(batch)
			stage(r, child, 30)
			if round%2 == 0 {
				grand := newStagedTxn(child)
				stage(r, grand, 20)
				require.NoError(t, grand.flush())
				stage(r, child, 10)
			}
			child.discard()
			require.Equal(t, before, batch.writes, "round %d", round)
			// A child flushed keeps its writes in the batch layer, and
			// leaves nothing to undo.
			child = newStagedTxn(batch)
			stage(r, child, 30)
			after := maps.Clone(batch.writes)
			require.NoError(t, child.flush())
			child.discard()
			require.Equal(t, after, batch.writes, "round %d: flushed", round)
			batch.discard()
			return nil
		}))
	}
}

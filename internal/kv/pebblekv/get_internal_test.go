package pebblekv

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/cockroachdb/pebble"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/internal/kv"
)

// dedupeKey is a key shaped like the audit log's Nats-Msg-Id dedupe keys
// of a v1 import: one prefix, ascending offsets.
func dedupeKey(i int) []byte {
	return kv.Tuple{"audit-msgid-src", "v1-import", "v1-4d8d0b0cf6b916b7-" + strconv.Itoa(i*211)}.Pack()
}

// fillCompacted writes n dedupe keys in transactions of 1,000 and compacts
// them into the last level, where a v1 import's older keys end up.
func fillCompacted(tb testing.TB, s *Store, n int) {
	tb.Helper()
	ctx := context.Background()
	for lo := 0; lo < n; lo += 1000 {
		require.NoError(tb, s.Update(ctx, func(tx kv.Txn) error {
			for i := lo; i < min(lo+1000, n); i++ {
				if err := tx.Set(dedupeKey(i), []byte(strconv.Itoa(i))); err != nil {
					return err
				}
			}
			return nil
		}))
	}
	require.NoError(tb, s.db.Compact([]byte{0}, []byte{0xff}, false))
}

// BenchmarkGet is a transaction's point reads in a store holding a
// million keys compacted to the last level, 256 per transaction,
// ascending like a bulk's ids: "missing" is the audit log's dedupe lookup
// of a new id, "missing-then-set" the same with the id written after each
// lookup (as the log does), "held" a read of a key the store holds.
func BenchmarkGet(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "pebble"), Options{})
	require.NoError(b, err)
	defer s.Close()
	const held = 1_000_000
	fillCompacted(b, s, held)
	for _, mode := range []string{"missing", "missing-then-set", "held"} {
		b.Run(mode, func(b *testing.B) {
			next := held
			if mode == "held" {
				next = 0
			}
			for b.Loop() {
				require.NoError(b, s.Update(context.Background(), func(tx kv.Txn) error {
					for range 256 {
						k := dedupeKey(next % (2 * held))
						next++
						_, err := tx.Get(k)
						if mode == "held" {
							if err != nil {
								return err
							}
							continue
						}
						if !errors.Is(err, kv.ErrNotFound) {
							return fmt.Errorf("get %q: %v, want not found", k, err)
						}
						if mode == "missing-then-set" {
							if err := tx.Set(k, []byte("1")); err != nil {
								return err
							}
						}
					}
					return nil
				}))
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*256), "ns/get")
		})
	}
}

// A transaction's Get reads what the store and its own writes hold: random
// Sets, Clears, ClearRanges and Gets in transactions (some failing, so
// rolled back), against a map, with the data flushed and compacted between
// rounds so that reads cross the memtable and every level. Gets of keys
// the transaction wrote go through the batch, others through the
// transaction's iterator; a ClearRange sends every later Get through the
// batch.
func TestTxnGet_MatchesModel(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "pebble"), Options{MemTableSize: 1 << 20})
	require.NoError(t, err)
	defer s.Close()
	rng := rand.New(rand.NewPCG(7, 8))
	key := func() []byte { return []byte(fmt.Sprintf("k%03d", rng.IntN(300))) }
	model := map[string]string{}
	ctx := context.Background()
	errRollback := errors.New("rolled back")
	var reads, hits int
	for round := range 60 {
		next := maps.Clone(model)
		fail := rng.IntN(5) == 0
		err := s.Update(ctx, func(tx kv.Txn) error {
			for range 200 {
				k := key()
				switch op := rng.IntN(10); {
				case op < 4:
					v := fmt.Sprintf("v%d-%d", round, rng.IntN(1000))
					require.NoError(t, tx.Set(k, []byte(v)))
					next[string(k)] = v
				case op < 6:
					require.NoError(t, tx.Clear(k))
					delete(next, string(k))
				case op < 7 && rng.IntN(10) == 0:
					end := append(slices.Clone(k), 0xff)
					require.NoError(t, tx.ClearRange(k, end))
					for m := range next {
						if m >= string(k) && m < string(end) {
							delete(next, m)
						}
					}
				default:
					got, err := tx.Get(k)
					want, ok := next[string(k)]
					reads++
					if !ok {
						require.ErrorIs(t, err, kv.ErrNotFound, "round %d: get %s", round, k)
						continue
					}
					hits++
					require.NoError(t, err, "round %d: get %s", round, k)
					require.Equal(t, want, string(got), "round %d: get %s", round, k)
				}
			}
			if fail {
				return errRollback
			}
			return nil
		})
		if fail {
			require.ErrorIs(t, err, errRollback)
		} else {
			require.NoError(t, err)
			model = next
		}
		switch round % 10 {
		case 3:
			require.NoError(t, s.db.Flush())
		case 7:
			require.NoError(t, s.db.Compact([]byte("k"), []byte("l"), false))
		}
		require.NoError(t, s.View(ctx, func(tx kv.ReadTxn) error {
			kvs, err := tx.GetRange([]byte("k"), []byte("l"), kv.RangeOptions{})
			require.NoError(t, err)
			got := map[string]string{}
			for _, p := range kvs {
				got[string(p.Key)] = string(p.Value)
			}
			require.Equal(t, model, got, "round %d", round)
			return nil
		}))
	}
	assert.Greater(t, hits, 500)
	assert.Greater(t, reads-hits, 500)
}

// A database written with pebble's default comparer (as every pebblekv
// store was before comparer) opens, and its keys read, found and missing,
// from every level.
func TestOpen_DefaultComparerDatabase(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pebble")
	db, err := pebble.Open(dir, &pebble.Options{FormatMajorVersion: pebble.FormatNewest})
	require.NoError(t, err)
	for i := range 100 {
		require.NoError(t, db.Set(dedupeKey(i), []byte(strconv.Itoa(i)), pebble.Sync))
		if i == 49 {
			require.NoError(t, db.Compact([]byte{0}, []byte{0xff}, false))
		}
	}
	require.NoError(t, db.Close())

	s, err := Open(dir, Options{})
	require.NoError(t, err)
	defer s.Close()
	require.NoError(t, s.Update(context.Background(), func(tx kv.Txn) error {
		for i := range 100 {
			v, err := tx.Get(dedupeKey(i))
			require.NoError(t, err, i)
			require.Equal(t, strconv.Itoa(i), string(v))
			_, err = tx.Get(dedupeKey(i + 1000))
			require.ErrorIs(t, err, kv.ErrNotFound)
		}
		return nil
	}))
}

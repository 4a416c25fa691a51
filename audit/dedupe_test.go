package audit

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/internal/kv/kvtest"
)

// getPerEvent is how apply found duplicates before duplicates: one Get per
// event as it appends, seeing the keys the batch wrote before it (Set here,
// in a transaction the caller rolls back).
func getPerEvent(t *testing.T, s *Service, tx kv.Txn, evs []*event, applied uint64) []bool {
	dup := make([]bool, len(evs))
	for i, e := range evs {
		if e.msgKey == nil || e.streamSeq <= applied && !e.force {
			continue
		}
		v, err := getOptional(tx, e.msgKey)
		require.NoError(t, err)
		if v == nil && s.legacyMsgIDs {
			v, err = legacyDuplicate(tx, e.source, e.msgID)
			require.NoError(t, err)
		}
		if v != nil {
			dup[i] = true
			continue
		}
		require.NoError(t, tx.Set(e.msgKey, []byte("1")))
	}
	return dup
}

var errRollBack = errors.New("roll back")

// TestService_Duplicates_SameAsGetPerEvent: over a growing log, random
// batches (ids repeated inside a batch and across batches, the same id from
// other sources, ids counting up and random ones, long hashed ids, bulk
// messages, events at or below the watermark, a forced one), first in the
// scoped layout, then with the older keys in the legacy layout, get the
// answers one Get per event gave, and apply appends what it did.
func TestService_Duplicates_SameAsGetPerEvent(t *testing.T) {
	store := kvtest.NewBolt(t)
	s := &Service{store: store, log: zerolog.Nop()}
	rng := rand.New(rand.NewPCG(7, 11))
	sources := []string{"agent-1", "agent-2", "codi-state"}
	id := func() string {
		switch r := rng.IntN(20); {
		case r == 0:
			return ""
		case r == 1:
			return strings.Repeat("L", maxMsgIDKey) + strconv.Itoa(rng.IntN(5))
		case r < 5:
			return fmt.Sprintf("%016x", rng.Uint64())
		default:
			return "e-" + strconv.Itoa(rng.IntN(6000))
		}
	}
	seq, at := uint64(0), time.Unix(1_700_000_000, 0)
	newOne := func() *event {
		seq++
		source := sources[rng.IntN(len(sources))]
		var e event
		if rng.IntN(10) == 0 {
			bulk, err := NewBulk(source)
			require.NoError(t, err)
			for range 1 + rng.IntN(40) {
				require.NoError(t, bulk.Add("file", id(), []byte(`{"a":1}`)))
			}
			m := bulk.Msg()
			e = newEvent(seq, at, m.Subject, m.Header, m.Data)
			require.NotNil(t, e.bulk)
		} else {
			hdr := nats.Header{}
			if v := id(); v != "" {
				hdr.Set(jetstream.MsgIDHeader, v)
			}
			e = newEvent(seq, at, "codi.audit.log."+source+".file", hdr, []byte(`{"a":1}`))
		}
		if rng.IntN(50) == 0 {
			e.force = true
		}
		return &e
	}
	checked := 0
	for round := range 60 {
		if round == 40 {
			toLegacyMsgIDs(t, store)
			s.legacyMsgIDs = true
		}
		applied := s.committed().applied
		batch := make([]*event, 1+rng.IntN(400))
		for i := range batch {
			batch[i] = newOne()
			if rng.IntN(10) == 0 {
				batch[i].streamSeq = applied - uint64(rng.IntN(int(min(applied, 5))+1)) // already applied
			}
		}
		evs := expand(batch)
		err := store.Update(context.Background(), func(tx kv.Txn) error {
			got, err := s.duplicates(tx, evs, applied)
			require.NoError(t, err)
			want := getPerEvent(t, s, tx, evs, applied)
			require.Equal(t, want, got, "round %d", round)
			for _, d := range want {
				if d {
					checked++
				}
			}
			return errRollBack
		})
		require.ErrorIs(t, err, errRollBack)
		m, err := s.apply(batch, seq, false)
		require.NoError(t, err)
		s.setMeta(m)
	}
	require.Greater(t, checked, 1000, "duplicates found")
	require.True(t, s.legacyMsgIDs)
}

// TestExistingKeys_ReadsFollowTheKeys: keys that count up are answered by a
// few range reads whatever their number, keys spread among many by a Get
// each (with a range read every pointReads keys, in case they come
// together again), and both answers are the store's.
func TestExistingKeys_ReadsFollowTheKeys(t *testing.T) {
	store := kvtest.NewBolt(t)
	key := func(i int) []byte { return kv.Tuple{"k", i}.Pack() }
	require.NoError(t, store.Update(context.Background(), func(tx kv.Txn) error {
		for i := 0; i < 20_000; i += 2 {
			require.NoError(t, tx.Set(key(i), []byte("v")))
		}
		return nil
	}))
	tests := []struct {
		name     string
		keys     []int // sorted
		maxReads int
	}{
		{"counting up", seqInts(10_000, 12_000, 1), 6},
		{"spread out", seqInts(1, 20_000, 97), 3 + 207/pointReads + 1}, // 207 keys
		{"past the end", seqInts(19_990, 25_000, 1), 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys := make([][]byte, len(tt.keys))
			for i, k := range tt.keys {
				keys[i] = key(k)
			}
			counter := &countingTxn{}
			require.NoError(t, store.View(context.Background(), func(tx kv.ReadTxn) error {
				counter.ReadTxn = tx
				found, err := existingKeys(counter, keys)
				require.NoError(t, err)
				for i, k := range tt.keys {
					require.Equal(t, k%2 == 0 && k < 20_000, found[i], "key %d", k)
				}
				return nil
			}))
			require.LessOrEqual(t, counter.reads, tt.maxReads)
		})
	}
}

func seqInts(from, to, step int) []int {
	var out []int
	for i := from; i < to; i += step {
		out = append(out, i)
	}
	return out
}

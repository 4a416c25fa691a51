package state

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/internal/kv/kvtest"
	"github.com/codi2/codi2/subjects"
)

// Planning and applying a multi-record command shaped as the v1 import's
// (benchImportTxn: 62 task merges and a checkpoint) through a batch layer,
// as loop.commit does, stays within its allocation budget: the command's
// own layer writes into the batch layer (no map of its own), index
// entries of unchanged fields are shared, subjects are built once per
// run, outbox entries and audit records are packed without boxing.
// main before issue 18's session 8 took about 3,470 allocations per
// command here. The layer is not flushed: the index upkeep it defers to
// its flush is counted by TestApplyAllocs_ImportBatch.
func TestApplyAllocs_ImportCommand(t *testing.T) {
	store := kvtest.NewBolt(t)
	msgs := importCommands(t, 30)
	seq := 0
	require.NoError(t, store.Update(context.Background(), func(stx kv.Txn) error {
		tx := newStagedTxn(stx)
		apply := func() {
			applyNext(t, tx, msgs, &seq)
		}
		for range 5 {
			apply() // the records exist and are staged: the import's steady state
		}
		allocs := testing.AllocsPerRun(20, apply)
		t.Logf("%.0f allocations per command", allocs)
		require.Less(t, allocs, 3000.0)
		tx.discard()
		return nil
	}))
}

// The same commands in batches of 10 through a batch layer that is
// flushed, as loop.commit has them: the index upkeep a batch layer does
// at its flush (once per record of the batch, not once per operation) is
// counted with the commands. main before issue 18's session 9, whose
// upkeep ran at every operation, took about 3,250 allocations per command
// here (2,630 after).
func TestApplyAllocs_ImportBatch(t *testing.T) {
	const perBatch, runs = 10, 10
	store := kvtest.NewBolt(t)
	msgs := importCommands(t, perBatch*(runs+2))
	seq := 0
	require.NoError(t, store.Update(context.Background(), func(stx kv.Txn) error {
		batch := func() {
			tx := newStagedTxn(stx)
			tx.reserve(batchWrites * perBatch)
			for range perBatch {
				applyNext(t, tx, msgs, &seq)
			}
			require.NoError(t, tx.flush())
		}
		batch() // the records exist: the import's steady state
		allocs := testing.AllocsPerRun(runs, batch) / perBatch
		t.Logf("%.0f allocations per command", allocs)
		require.Less(t, allocs, 2900.0)
		return nil
	}))
}

// importCommands is n multi-record commands shaped as the v1 import's
// (benchImportTxn), in stream order from seq 1, a millisecond apart.
func importCommands(t *testing.T, n int) []inMsg {
	subj, err := subjects.StateCmd(KindTxn, "v1-f-1", "codi-import")
	require.NoError(t, err)
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	msgs := make([]inMsg, n)
	for i := range msgs {
		msgs[i] = inMsg{seq: uint64(i + 1), time: t0.Add(time.Duration(i) * time.Millisecond), subject: subj, data: benchImportTxn(i)}
	}
	return msgs
}

// applyNext plans and applies msgs[*next] in tx, as loop.commit does, and
// moves *next on; the command must apply.
func applyNext(t *testing.T, tx *stagedTxn, msgs []inMsg, next *int) {
	im := &msgs[*next]
	*next++
	p, err := planCommand(tx, im, im.seq-1, "g1")
	require.NoError(t, err)
	require.Equal(t, StatusApplied, p.outcomes[p.own].status)
	require.NoError(t, applyPlan(tx, &p))
}

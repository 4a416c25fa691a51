package audit

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/internal/kv/kvtest"
	"github.com/codi2/codi2/internal/proctest"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func retentionEvents(t *testing.T, h *harness) []retentionRun {
	t.Helper()
	var runs []retentionRun
	for _, r := range h.all(Query{Source: RetentionSource, Category: RetentionCategory}) {
		var run retentionRun
		require.NoError(t, json.Unmarshal(r.Data, &run))
		assert.Equal(t, "codi-audit-retention-"+itoa(run.ToSeq), r.MsgID)
		runs = append(runs, run)
	}
	return runs
}

func itoa(u uint64) string { b, _ := json.Marshal(u); return string(b) }

// TestService_Retention_MaxCount removes the oldest records in small
// transactions, records the run, and keeps verify green.
func TestService_Retention_MaxCount(t *testing.T) {
	h := newHarness(t, Config{Retention: Retention{MaxCount: 10, CheckInterval: 10 * time.Millisecond, Batch: 7}})
	acks := h.logN(40, "agent-1", "x")
	h.waitCommitted(acks[39].Sequence)
	// Settled: within the limit, retention idle, and the log unchanged
	// since the last look (a run's event is appended after its removals).
	var prev Status
	require.Eventually(t, func() bool {
		st := h.svc.Status()
		settled := st == prev && st.Count <= 10 && st.Seq > 40 && h.svc.retentionIdle()
		prev = st
		return settled
	}, 10*time.Second, 20*time.Millisecond, "retention did not settle: %+v", h.svc.Status())

	st := h.svc.Status()
	recs := h.all(Query{})
	require.Len(t, recs, int(st.Count))
	assert.Equal(t, st.FirstSeq, recs[0].Seq)
	assertChain(t, recs, st.FirstSeq, recs[0].Prev)
	res := h.verify(VerifyRequest{})
	assert.True(t, res.OK, "%+v", res)
	assert.Equal(t, st.Count, res.Count)
	assert.Equal(t, st.Head, res.Head)
	assert.Equal(t, res, h.verify(VerifyRequest{FromSeq: 1}), "from before the first kept record")

	runs := retentionEvents(t, h)
	require.NotEmpty(t, runs)
	last := runs[len(runs)-1]
	assert.Equal(t, uint64(10), last.MaxCount)
	assert.Equal(t, last.ToSeq+1, last.FirstSeq)
	assert.LessOrEqual(t, last.FirstSeq, st.FirstSeq)
	// Every removed record is reported once: the runs still in the log
	// (a later run may remove an earlier run's event) cover one range
	// without gaps or overlap, ending where the log starts, and the first
	// of them starts at 1 unless its predecessors' events are gone too.
	var removed uint64
	for i, r := range runs {
		removed += r.Removed
		assert.Equal(t, r.ToSeq-r.FromSeq+1, r.Removed, "run %d", i)
		if i > 0 {
			assert.Equal(t, runs[i-1].ToSeq+1, r.FromSeq, "run %d starts where run %d ended", i, i-1)
		}
	}
	assert.Equal(t, st.FirstSeq-runs[0].FromSeq, removed)
	if runs[0].FromSeq > 1 {
		assert.Less(t, runs[0].FromSeq, st.FirstSeq, "an earlier run's event was removed by a later run")
	}

	// The removed records' msg-id entries are gone with them, and so are
	// the index blocks that held only removed records: what is left of
	// each index is one entry per kept record plus, at most, the removed
	// part of the one block it starts in.
	require.NoError(t, h.store.View(context.Background(), func(tx kv.ReadTxn) error {
		withID := 0
		for _, r := range recs {
			if r.MsgID != "" {
				withID++
			}
		}
		b, e := kv.Tuple{nsMsgID}.Range()
		kvs, err := tx.GetRange(b, e, kv.RangeOptions{})
		require.NoError(t, err)
		assert.Len(t, kvs, withID, nsMsgID)
		for _, ns := range []string{nsByTime, nsBySource, nsByCategory, nsBySC} {
			kept := indexEntries(t, tx, ns, func(seq uint64) bool { return seq >= st.FirstSeq })
			assert.Equal(t, int(st.Count), kept, ns)
		}
		return nil
	}))
	// Queries by time still start at the first kept record.
	assert.Len(t, h.all(Query{From: time.Unix(0, 0)}), int(st.Count))
}

// TestService_Retention_MaxAge removes every record older than MaxAge.
func TestService_Retention_MaxAge(t *testing.T) {
	h := newHarness(t, Config{Retention: Retention{MaxAge: 200 * time.Millisecond, CheckInterval: 10 * time.Millisecond}})
	acks := h.logN(5, "agent-1", "x")
	h.waitCommitted(acks[4].Sequence)
	require.Eventually(t, func() bool {
		st := h.svc.Status()
		return st.FirstSeq > 5 && st.Seq > 5 && h.svc.retentionIdle()
	}, 10*time.Second, 5*time.Millisecond, "records not removed: %+v", h.svc.Status())
	// Stop, so that the retention event itself does not age out while we
	// look.
	require.NoError(t, h.stop())
	svcStatus := h.svc.Status()
	h.cfg.Retention = Retention{}
	h.start()
	for _, r := range h.all(Query{}) {
		assert.Equal(t, RetentionCategory, r.Category, "only retention events are left")
	}
	res := h.verify(VerifyRequest{})
	assert.True(t, res.OK, "%+v", res)
	assert.Equal(t, svcStatus.Head, res.Head)
	runs := retentionEvents(t, h)
	require.NotEmpty(t, runs)
	assert.Equal(t, "200ms", runs[0].MaxAge)
	assert.Equal(t, uint64(1), runs[0].FromSeq)
}

// TestService_Retention_ResumesAfterRestart leaves a finished run whose
// event was never appended, as after a crash right after the removal: the
// next run publishes it, and it is recorded once.
func TestService_Retention_ResumesAfterRestart(t *testing.T) {
	h := newHarness(t, Config{})
	acks := h.logN(5, "agent-1", "x")
	h.waitCommitted(acks[4].Sequence)
	require.NoError(t, h.stop())
	// A run that removed nothing yet and has its target at 3.
	run := retentionRun{FromSeq: 1, Prev: GenesisPrev, Target: 3}
	require.NoError(t, h.store.Update(context.Background(), func(tx kv.Txn) error {
		w := writer{tx: tx}
		w.setJSON(keyRetention, run)
		return w.err
	}))
	h.start()
	require.Eventually(t, func() bool {
		st := h.svc.Status()
		return st.FirstSeq == 3 && st.Seq == 6
	}, 10*time.Second, 5*time.Millisecond, "run not resumed: %+v", h.svc.Status())
	runs := retentionEvents(t, h)
	require.Len(t, runs, 1)
	assert.Equal(t, uint64(2), runs[0].Removed)
	assert.True(t, h.verify(VerifyRequest{}).OK)

	// A finished run whose event was never published: the next start
	// publishes it, and it is appended once.
	require.NoError(t, h.stop())
	done := retentionRun{Removed: 0, FromSeq: 3, ToSeq: 2, FirstSeq: 3, Prev: runs[0].Prev, Target: 3, Done: true, MsgID: "codi-audit-retention-2"}
	require.NoError(t, h.store.Update(context.Background(), func(tx kv.Txn) error {
		w := writer{tx: tx}
		w.setJSON(keyRetention, done)
		return w.err
	}))
	h.start()
	require.Eventually(t, h.svc.retentionIdle, 10*time.Second, 5*time.Millisecond)
	assert.Len(t, retentionEvents(t, h), 1, "same Nats-Msg-Id: recorded once")
	assert.Equal(t, "", retentionMsgID([]byte("{")))
}

func TestRetention_Target(t *testing.T) {
	h := newHarness(t, Config{Retention: Retention{MaxCount: 3, CheckInterval: time.Hour}})
	acks := h.logN(5, "agent-1", "x")
	h.waitCommitted(acks[4].Sequence)
	got, err := h.svc.retentionTarget(context.Background())
	require.NoError(t, err)
	assert.Equal(t, uint64(4), got, "keep 2 records, the event makes 3")
}

// TestService_Retention_MissingRecord starts retention on a store that lost
// its oldest record: retention fails and says so, the service keeps
// appending, and verify names the missing record.
func TestService_Retention_MissingRecord(t *testing.T) {
	var logs proctest.Buffer
	h := newHarnessWith(t, Config{}, kvtest.NewBolt(t), zerolog.New(&logs))
	acks := h.logN(5, "agent-1", "x")
	h.waitCommitted(acks[4].Sequence)
	require.NoError(t, h.stop())
	require.NoError(t, h.store.Update(context.Background(), func(tx kv.Txn) error { return tx.Clear(recordKey(1)) }))

	h.cfg.Retention = Retention{MaxCount: 2, CheckInterval: 10 * time.Millisecond}
	h.start()
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "record 1 is missing") },
		10*time.Second, 5*time.Millisecond)
	more := h.logN(1, "agent-1", "x")
	h.waitCommitted(more[0].Sequence)
	res := h.verify(VerifyRequest{})
	assert.False(t, res.OK)
	assert.Equal(t, uint64(1), res.BadSeq)
}

// indexEntries counts the entries of every block of index ns that keep
// says to, and fails the test on a block with no entry to keep.
func indexEntries(t *testing.T, tx kv.ReadTxn, ns string, keep func(seq uint64) bool) int {
	t.Helper()
	b, e := kv.Tuple{ns}.Range()
	kvs, err := tx.GetRange(b, e, kv.RangeOptions{})
	require.NoError(t, err)
	n := 0
	for _, kv := range kvs {
		kept := 0
		require.NoError(t, blockEntries(kv.Key, kv.Value, func(_ int64, seq uint64) bool {
			if keep(seq) {
				kept++
			}
			return true
		}))
		assert.NotZero(t, kept, "%s block %q holds only removed records", ns, kv.Key)
		n += kept
	}
	return n
}

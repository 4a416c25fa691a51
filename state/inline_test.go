package state_test

import (
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/state"
)

// With Config.AppendAudit every outcome's audit event (applied and
// rejected alike) is written in the transaction that applies the command,
// and nothing is published to CODI_AUDIT (issue 16, the single commit
// path's prototype). Each record is dated with the stored time of the
// command it answers, not the clock of the transaction, so that applying
// the stream again writes the same chain.
func TestService_AppendAudit(t *testing.T) {
	e := newEnv(t)
	cfg := fastConfig()
	var mu sync.Mutex
	dated := map[string]time.Time{}
	cfg.AppendAudit = func(tx kv.Txn) state.AuditAppender {
		return &testAppender{tx: tx, append: func(msgID string, at time.Time) {
			mu.Lock()
			dated[msgID] = at
			mu.Unlock()
		}}
	}
	e.start(cfg)
	c := e.client("agent-1")
	ev, err := c.Apply(ctxT(t), "task", "t1", state.Command{Op: state.OpPut, Fields: map[string]any{"status": "open"}})
	require.NoError(t, err)
	bad, err := c.Apply(ctxT(t), "task", "t1", state.Command{Op: state.OpPut, ExpectRev: state.Expect(0)})
	require.ErrorIs(t, err, state.ErrConflict)

	got := map[string]string{}
	require.NoError(t, e.store.View(ctxT(t), func(tx kv.ReadTxn) error {
		b, end := kv.Tuple{"test-audit"}.Range()
		kvs, err := tx.GetRange(b, end, kv.RangeOptions{})
		for _, p := range kvs {
			tup, err := kv.Unpack(p.Key)
			require.NoError(t, err)
			got[tup[1].(string)] = string(p.Value)
		}
		return err
	}))
	require.Len(t, got, 2)
	assert.Contains(t, got[e.cmdID(ev.Seq)], "codi.audit.log.codi-state.")
	assert.Contains(t, got[e.cmdID(bad.Seq)], `"rejected"`)
	assert.Empty(t, e.audits(), "nothing is published to CODI_AUDIT")

	stream, err := e.js.Stream(ctxT(t), bus.StreamState)
	require.NoError(t, err)
	mu.Lock()
	defer mu.Unlock()
	for _, seq := range []uint64{ev.Seq, bad.Seq} {
		m, err := stream.GetMsg(ctxT(t), seq)
		require.NoError(t, err)
		assert.True(t, m.Time.Equal(dated[e.cmdID(seq)]), "seq %s: dated %s, stored %s", strconv.FormatUint(seq, 10), dated[e.cmdID(seq)], m.Time)
	}
}

// testAppender writes each record at ("test-audit", msgID) when flushed.
type testAppender struct {
	tx      kv.Txn
	append  func(msgID string, at time.Time)
	pending []kv.KeyValue
	flushed *atomic.Int64
}

func (a *testAppender) Append(subject, msgID string, data []byte, at time.Time) error {
	if a.append != nil {
		a.append(msgID, at)
	}
	a.pending = append(a.pending, kv.KeyValue{Key: kv.Tuple{"test-audit", msgID}.Pack(), Value: append([]byte(subject+" "), data...)})
	return nil
}

func (a *testAppender) Flush() error {
	for _, p := range a.pending {
		if err := a.tx.Set(p.Key, p.Value); err != nil {
			return err
		}
	}
	if a.flushed != nil && len(a.pending) > 0 {
		a.flushed.Add(1)
	}
	a.pending = nil
	return nil
}

// A batch's outcomes go through one appender, flushed once before the
// batch commits: 200 commands stored while the service was down cost a few
// flushes, not 200, and every record is written.
func TestService_AppendAudit_OneAppenderPerBatch(t *testing.T) {
	e := newEnv(t)
	const n = 200
	last := e.merges("task", "t1", 1, n)
	cfg := fastConfig()
	cfg.MaxBatch = 100
	var made, flushed atomic.Int64
	cfg.AppendAudit = func(tx kv.Txn) state.AuditAppender {
		made.Add(1)
		return &testAppender{tx: tx, flushed: &flushed}
	}
	e.start(cfg)
	e.waitApplied(last)
	records := 0
	require.NoError(t, e.store.View(ctxT(t), func(tx kv.ReadTxn) error {
		b, end := kv.Tuple{"test-audit"}.Range()
		kvs, err := tx.GetRange(b, end, kv.RangeOptions{})
		records = len(kvs)
		return err
	}))
	assert.Equal(t, n, records, "one record per command")
	assert.Positive(t, flushed.Load())
	assert.LessOrEqual(t, flushed.Load(), int64(n/10), "flushes for %d commands in batches of up to %d", n, cfg.MaxBatch)
}

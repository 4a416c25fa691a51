package state_test

import (
	"strconv"
	"sync"
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
	cfg.AppendAudit = func(tx kv.Txn, subject, msgID string, data []byte, at time.Time) error {
		mu.Lock()
		dated[msgID] = at
		mu.Unlock()
		return tx.Set(kv.Tuple{"test-audit", msgID}.Pack(), append([]byte(subject+" "), data...))
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

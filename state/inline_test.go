package state_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/state"
	"time"
)

// With Config.AppendAudit every outcome's audit event (applied and
// rejected alike) is written in the transaction that applies the command,
// and nothing is published to CODI_AUDIT (issue 16, the single commit
// path's prototype).
func TestService_AppendAudit(t *testing.T) {
	e := newEnv(t)
	cfg := fastConfig()
	cfg.AppendAudit = func(tx kv.Txn, subject, msgID string, data []byte, _ time.Time) error {
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
}

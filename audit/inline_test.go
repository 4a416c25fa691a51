package audit

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/internal/kv"
)

// AppendInTxn chains a record after the log's head inside the caller's
// transaction; its Nats-Msg-Id is taken, so a second append and a copy
// that comes through CODI_AUDIT later are skipped (issue 16, the single
// commit path's prototype).
func TestAppendInTxn(t *testing.T) {
	h := newHarness(t, Config{})
	acks := h.logN(2, "agent-1", "x")
	h.waitCommitted(acks[1].Sequence)
	ctx := context.Background()
	subj := "codi.audit.log.codi-state.task"
	require.NoError(t, h.store.Update(ctx, func(tx kv.Txn) error {
		if err := AppendInTxn(tx, subj, "state-7", []byte(`{"a":1}`), time.Unix(0, 0)); err != nil {
			return err
		}
		return AppendInTxn(tx, subj, "state-7", []byte(`{"a":2}`), time.Now())
	}))
	ack, err := h.client.Log(ctx, "codi-state", "task", []byte(`{"a":3}`), WithMsgID("state-7"))
	require.NoError(t, err)
	more := h.logN(1, "agent-1", "x")
	h.waitCommitted(max(ack.Sequence, more[0].Sequence))

	recs := h.wholeLog(4)
	assert.Equal(t, "state-7", recs[2].MsgID)
	assert.Equal(t, "codi-state", recs[2].Source)
	assert.JSONEq(t, `{"a":1}`, string(recs[2].Data))
	assert.False(t, recs[2].Time.Before(recs[1].Time), "never dated before the record it follows")
	res := h.verify(VerifyRequest{})
	assert.True(t, res.OK, "%+v", res)
	assert.Equal(t, uint64(4), res.Count)

	require.NoError(t, h.store.Close())
	assert.ErrorIs(t, h.store.Update(ctx, func(tx kv.Txn) error {
		return AppendInTxn(tx, subj, "", nil, time.Now())
	}), kv.ErrClosed)
}

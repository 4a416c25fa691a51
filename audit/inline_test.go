package audit

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/internal/kv/kvtest"
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

// An Appender writes the records AppendInTxn would, call for call (the
// same chain, the same answers to queries by source, category and time),
// but each index block and the head once per Flush instead of once per
// record.
func TestAppender_AsAppendInTxn(t *testing.T) {
	type ev struct {
		subject, msgID, data string
		at                   time.Time
	}
	base := time.Unix(1_700_000_000, 0)
	var evs []ev
	for i := range 60 {
		src := []string{"codi-state", "agent-1", "v1-import"}[i%3]
		cat := []string{"task", "note"}[i%2]
		id := fmt.Sprintf("m-%d", i)
		if i%7 == 6 {
			id = fmt.Sprintf("m-%d", i-3) // the same source's id again: skipped
		}
		if i%11 == 10 {
			id = "" // no Msg-Id
		}
		// Times go back now and then: a record is never dated before the
		// one it follows.
		at := base.Add(time.Duration(i*37%50) * time.Millisecond)
		evs = append(evs, ev{"codi.audit.log." + src + "." + cat, id, fmt.Sprintf(`{"i":%d}`, i), at})
	}
	run := func(batch bool) (*harness, int) {
		h := newHarness(t, Config{SharedLog: true})
		ctx := context.Background()
		require.NoError(t, h.store.Update(ctx, func(tx kv.Txn) error {
			if !batch {
				for _, e := range evs {
					if err := AppendInTxn(tx, e.subject, e.msgID, []byte(e.data), e.at); err != nil {
						return err
					}
				}
				return nil
			}
			ap := NewAppender(tx)
			for i, e := range evs {
				if err := ap.Append(e.subject, e.msgID, []byte(e.data), e.at); err != nil {
					return err
				}
				if i == 29 {
					require.NoError(t, ap.Flush()) // two flushes in one transaction
				}
			}
			return ap.Flush()
		}))
		keys := 0
		require.NoError(t, h.store.View(ctx, func(tx kv.ReadTxn) error {
			pairs, err := tx.GetRange([]byte{}, []byte{0xff}, kv.RangeOptions{})
			keys = len(pairs)
			return err
		}))
		return h, keys
	}
	one, oneKeys := run(false)
	many, manyKeys := run(true)
	n, seen := 0, map[string]bool{}
	for _, e := range evs {
		if k := e.subject[:len("codi.audit.log.")+3] + e.msgID; e.msgID == "" || !seen[k] {
			seen[k] = true
			n++
		}
	}
	require.Less(t, n, len(evs), "the batch has duplicates")
	want, got := one.all(Query{}), many.all(Query{})
	require.Equal(t, n, len(want))
	require.Equal(t, n, len(got))
	for i := range want {
		assert.Equal(t, want[i].Seq, got[i].Seq)
		assert.Equal(t, want[i].Hash, got[i].Hash, "record %d", i)
		assert.True(t, want[i].Time.Equal(got[i].Time), "record %d", i)
		assert.Equal(t, want[i].MsgID, got[i].MsgID)
	}
	for _, q := range []Query{{Source: "agent-1"}, {Category: "note"}, {Source: "v1-import", Category: "task"},
		{From: base.Add(30 * time.Millisecond), To: base.Add(45 * time.Millisecond)}} {
		a, b := one.all(q), many.all(q)
		require.Equal(t, len(a), len(b), "%+v", q)
		for i := range a {
			assert.Equal(t, a[i].Seq, b[i].Seq, "%+v", q)
		}
		assert.NotEmpty(t, a, "%+v", q)
	}
	res := many.verify(VerifyRequest{})
	assert.True(t, res.OK, "%+v", res)
	assert.Less(t, manyKeys, oneKeys-2*n, "index blocks and head written once per flush")
}

// An Appender's record costs the allocations of bbolt's two Puts (the
// record and the dedupe key: bbolt copies each key and makes a cursor that
// grows its stack) and one of its own, the record's body; the Nats-Msg-Id
// no longer goes through a message header, and the chain's hash and the
// seq are kept in the Appender's buffers.
func TestAppender_Append_Allocs(t *testing.T) {
	store := kvtest.NewBolt(t)
	ids := make([]string, 300)
	for i := range ids {
		ids[i] = fmt.Sprintf("state-%d", i)
	}
	payload := []byte(`{"seq":7,"status":"applied","kind":"task","id":"ADR-007"}`)
	var perAppend, perPut float64
	require.NoError(t, store.Update(context.Background(), func(tx kv.Txn) error {
		ap := NewAppender(tx)
		n := 0
		perAppend = testing.AllocsPerRun(200, func() {
			require.NoError(t, ap.Append("codi.audit.log.codi-state.task", ids[n], payload, time.Unix(1_700_000_000, 0)))
			n++
		})
		prefix, key := kv.Tuple{"k"}.Pack(), []byte(nil)
		i := int64(0)
		perPut = testing.AllocsPerRun(200, func() {
			i++
			key = kv.AppendInt(append(key[:0], prefix...), i)
			require.NoError(t, tx.Set(key, payload))
		})
		return ap.Flush()
	}))
	t.Logf("allocations per Append %.1f, per bbolt Set %.1f", perAppend, perPut)
	assert.LessOrEqual(t, perAppend, 2*perPut+1)
}

package state_test

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/state"
)

// A multi-record command applies all its operations in one transaction,
// each with its own event and audit record, plus one summary event.
func TestTxn_AllApplied(t *testing.T) {
	e := newEnv(t)
	w := e.watchEvents()
	e.start(fastConfig())
	c := e.client("agent-2")
	ctx := ctxT(t)

	sum, err := c.Txn(ctx, []state.TxnOp{
		{Kind: "task", ID: "ADR-028", Command: state.Command{Op: state.OpPut, Fields: map[string]any{"holder": "agent-2"}, ExpectRev: state.Expect(0), TTL: time.Minute}},
		{Kind: "note", ID: "n1", Command: state.Command{Op: state.OpMerge, Fields: map[string]any{"a": 1}}},
		{Kind: "note", ID: "n1", Command: state.Command{Op: state.OpMerge, Fields: map[string]any{"b": 2}, ExpectRev: state.Expect(1)}},
	})
	require.NoError(t, err)
	assert.Equal(t, state.StatusApplied, sum.Status)
	assert.Equal(t, state.OpTxn, sum.Op)
	require.Len(t, sum.Ops, 3)
	assert.Equal(t, "task", sum.Ops[0].Kind)
	assert.Equal(t, uint64(1), sum.Ops[0].Rev)
	assert.Equal(t, uint64(2), sum.Ops[2].Rev, "the third operation sees the second's write")
	assert.JSONEq(t, `{"a":1,"b":2}`, string(mustJSON(t, sum.Ops[2].Record.Fields)))

	// Each record has its own applied event with the command's seq.
	require.Eventually(t, func() bool { return len(eventsOn(w, "codi.state.evt.note.n1")) == 2 }, 5*time.Second, time.Millisecond)
	for _, ev := range append(eventsOn(w, "codi.state.evt.task.ADR-028"), eventsOn(w, "codi.state.evt.note.n1")...) {
		assert.Equal(t, sum.Seq, ev.Seq)
		assert.Equal(t, state.StatusApplied, ev.Status)
	}
	// One audit record per operation, ids <command id>-<n>, carrying the txn.
	require.Eventually(t, func() bool { _, ok := e.auditByID()[e.cmdID(sum.Seq)+"-3"]; return ok }, 5*time.Second, 10*time.Millisecond)
	audits := e.auditByID()
	for i := 1; i <= 3; i++ {
		a, ok := audits[fmt.Sprintf("%s-%d", e.cmdID(sum.Seq), i)]
		require.True(t, ok, "audit of op %d", i)
		assert.Equal(t, "applied", a.body["status"])
		assert.NotEmpty(t, a.body["txn"])
	}
	_, summaryAudited := audits[e.cmdID(sum.Seq)]
	assert.False(t, summaryAudited, "the summary has no audit record of its own")
}

// One rejected operation rejects them all: nothing is written, the failing
// one carries its reason, the others "aborted".
func TestTxn_AllOrNone(t *testing.T) {
	e := newEnv(t)
	w := e.watchEvents()
	e.start(fastConfig())
	ctx := ctxT(t)
	a1, a2 := e.client("agent-1"), e.client("agent-2")
	held, err := a1.Claim(ctx, "task", "T-2", time.Minute, nil)
	require.NoError(t, err)

	sum, err := a2.Txn(ctx, []state.TxnOp{
		{Kind: "task", ID: "T-1", Command: state.Command{Op: state.OpPut, Fields: map[string]any{"holder": "agent-2"}, ExpectRev: state.Expect(0)}},
		{Kind: "task", ID: "T-2", Command: state.Command{Op: state.OpPut, Fields: map[string]any{"holder": "agent-2"}, ExpectRev: state.Expect(0)}},
		{Kind: "task", ID: "T-3", Command: state.Command{Op: state.OpPut, Fields: map[string]any{}}},
	})
	var ce *state.ConflictError
	require.ErrorAs(t, err, &ce)
	require.ErrorIs(t, err, state.ErrConflict)
	assert.Equal(t, "agent-1", ce.Event.Holder)
	assert.Equal(t, held.Rev, ce.Event.CurrentRev)
	assert.Contains(t, err.Error(), "task/T-2 is held by agent-1 at rev 1 until ")
	assert.Equal(t, state.StatusRejected, sum.Status)
	assert.Equal(t, state.ReasonConflict, sum.Reason)
	require.Len(t, sum.Ops, 3)
	assert.Equal(t, state.ReasonAborted, sum.Ops[0].Reason)
	assert.Equal(t, state.ReasonConflict, sum.Ops[1].Reason)
	assert.Equal(t, state.ReasonAborted, sum.Ops[2].Reason)
	assert.Equal(t, "op 2 of 3 (task/T-2) was rejected: conflict", sum.Ops[2].Detail)

	for _, id := range []string{"T-1", "T-3"} {
		_, err := a2.Get(ctx, "task", id, sum.Seq)
		require.ErrorIs(t, err, state.ErrNotFound, "%s was taken back", id)
	}
	got, err := a2.Get(ctx, "task", "T-2", sum.Seq)
	require.NoError(t, err)
	assert.Equal(t, held, got)
	require.Eventually(t, func() bool { return len(eventsOn(w, "codi.state.evt.task.T-3")) == 1 }, 5*time.Second, time.Millisecond)
	assert.Equal(t, state.ReasonAborted, eventsOn(w, "codi.state.evt.task.T-3")[0].Reason)
	require.Eventually(t, func() bool { _, ok := e.auditByID()[e.cmdID(sum.Seq)+"-3"]; return ok }, 5*time.Second, 10*time.Millisecond)
	assert.Equal(t, "aborted", e.auditByID()[e.cmdID(sum.Seq)+"-1"].body["reason"])

	// The next command goes on as if the rejected one had not been.
	rec, err := a2.Claim(ctx, "task", "T-1", time.Minute, nil)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), rec.Rev)
}

// Malformed multi-record commands are refused with a bad_request event on
// the summary subject naming the problem, and nothing is written.
func TestTxn_BadInput(t *testing.T) {
	e := newEnv(t)
	w := e.watchEvents()
	e.start(fastConfig())
	ops65 := `{"ops":[` + strings65() + `]}`
	tests := []struct {
		name, payload, detail string
	}{
		{"not json", `{`, "invalid JSON"},
		{"no ops", `{}`, "ops is required"},
		{"empty ops", `{"ops":[]}`, "ops is required"},
		{"too many", ops65, "65 ops, at most 64"},
		{"unknown member", `{"ops":[],"x":1}`, `unknown member "x"`},
		{"op without kind", `{"ops":[{"id":"a","op":"delete"}]}`, "op 1: kind and id are required"},
		{"bad kind", `{"ops":[{"kind":"Task","id":"a","op":"delete"}]}`, "op 1: "},
		{"bad id", `{"ops":[{"kind":"task","id":"a.b","op":"delete"}]}`, "op 1: id: "},
		{"non-canonical id", `{"ops":[{"kind":"task","id":"%61","op":"delete"}]}`, "op 1: id: "},
		{"bad command", `{"ops":[{"kind":"task","id":"a","op":"put"}]}`, "op 1: put needs fields"},
		{"unknown op member", `{"ops":[{"kind":"task","id":"a","op":"put","fields":{},"y":1}]}`, `op 1: unknown member "y"`},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			txid := fmt.Sprintf("bad-%d", i)
			seq := e.publish(cmdSubject(t, "txn", txid, "agent-1"), tt.payload)
			ev := w.waitSeq(t, seq)
			assert.Equal(t, "codi.state.evt.txn."+txid, ev.subject)
			assert.Equal(t, state.StatusRejected, ev.ev.Status)
			assert.Equal(t, state.ReasonBadRequest, ev.ev.Reason)
			assert.Contains(t, ev.ev.Detail, tt.detail)
		})
	}
	// A nested rejection in the second op rejects the first too.
	seq := e.publish(cmdSubject(t, "txn", "nested", "agent-1"),
		`{"ops":[{"kind":"task","id":"a","op":"put","fields":{}},{"kind":"txn","id":"b","op":"put","fields":{}}]}`)
	require.Eventually(t, func() bool { return len(eventsOn(w, "codi.state.evt.txn.nested")) == 1 }, 5*time.Second, time.Millisecond)
	sum := eventsOn(w, "codi.state.evt.txn.nested")[0]
	assert.Equal(t, seq, sum.Seq)
	assert.Equal(t, state.ReasonBadRequest, sum.Reason)
	assert.Contains(t, sum.Detail, "op 2: kind txn is reserved for multi-record commands themselves")
	assert.Empty(t, eventsOn(w, "codi.state.evt.txn.b"), "an operation of kind txn never speaks on another command's summary subject")
	// A plain command sent to a txn subject is told what the subject is for.
	seq = e.publish(cmdSubject(t, "txn", "plain", "agent-1"), `{"op":"put","fields":{}}`)
	assert.Contains(t, w.waitSeq(t, seq).ev.Detail, `carries {"ops":[…]}, not a command`)
	_, err := e.client("agent-1").Get(ctxT(t), "task", "a", seq)
	require.ErrorIs(t, err, state.ErrNotFound)

	// The client refuses what it cannot send.
	_, err = e.client("agent-1").Txn(ctxT(t), nil)
	require.ErrorIs(t, err, state.ErrBadRequest)
}

func strings65() string {
	s := ""
	for i := range 65 {
		if i > 0 {
			s += ","
		}
		s += fmt.Sprintf(`{"kind":"task","id":"t%d","op":"delete"}`, i)
	}
	return s
}

// A multi-record command too large for the rest of a batch is taken back
// and applied in the next one, whole.
func TestTxn_BatchCut(t *testing.T) {
	e := newEnv(t)
	cfg := fastConfig()
	cfg.MaxBatchBytes = 400000
	e.start(cfg)
	ctx := ctxT(t)
	c := e.client("agent-1")
	big := make([]byte, 90_000)
	for i := range big {
		big[i] = 'x'
	}
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Go(func() {
			_, err := c.Txn(ctx, []state.TxnOp{
				{Kind: "doc", ID: fmt.Sprintf("a%d", i), Command: state.Command{Op: state.OpPut, Fields: map[string]any{"v": string(big)}}},
				{Kind: "doc", ID: fmt.Sprintf("b%d", i), Command: state.Command{Op: state.OpPut, Fields: map[string]any{"v": string(big)}}},
			})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	for i := range 20 {
		for _, id := range []string{fmt.Sprintf("a%d", i), fmt.Sprintf("b%d", i)} {
			r, err := c.Get(ctx, "doc", id, 0)
			require.NoError(t, err, id)
			assert.Equal(t, uint64(1), r.Rev, id)
		}
	}
}

func eventsOn(w *events, subject string) []state.Event {
	var out []state.Event
	for _, e := range w.all() {
		if e.subject == subject {
			out = append(out, e.ev)
		}
	}
	return out
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

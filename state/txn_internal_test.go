package state

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/internal/kv/kvtest"
	"github.com/codi2/codi2/internal/strictjson"
	"github.com/codi2/codi2/subjects"
)

// FuzzDecodeTxn checks that the multi-record command decoder never panics,
// and that what it accepts is 1 to MaxTxnOps valid operations whose kinds
// and ids are tokens, and that the client's encoding of them decodes to the
// same operations.
func FuzzDecodeTxn(f *testing.F) {
	for _, s := range []string{
		`{"ops":[{"kind":"task","id":"T-1","op":"put","fields":{"holder":"a"},"expect_rev":0,"ttl_ms":1000,"bind":true}]}`,
		`{"ops":[{"kind":"reservation","id":"p%2Ea%2Esrc/%2A%2A","op":"delete"},{"kind":"agent","id":"a","op":"merge","fields":{}}]}`,
		`{"ops":[]}`, `{}`, `{"ops":[1]}`, `{"ops":[{"kind":"task","id":"a.b","op":"delete"}]}`, `{"ops":null}`,
		`{"ops":[{"kind":"task","id":"x","op":"delete","bind":false}]}`, `{"ops":[{"kind":"task","kind":"t","id":"x","op":"delete"}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ops, err := decodeTxn(data)
		if err != nil {
			return
		}
		require.NoError(t, strictjson.Check(data, strictjson.MaxDepth))
		require.NotEmpty(t, ops)
		require.LessOrEqual(t, len(ops), MaxTxnOps)
		wire := make([]TxnOp, len(ops))
		for i, op := range ops {
			require.NotEmpty(t, op.kind)
			require.NotEmpty(t, op.id)
			cmd := Command{Op: op.cmd.op, ExpectRev: op.cmd.expectRev, Bind: op.cmd.bind}
			if op.cmd.fields != nil {
				cmd.Fields = map[string]any{}
				for k, v := range op.cmd.fields {
					cmd.Fields[k] = v
				}
			}
			if op.cmd.ttl != nil {
				if *op.cmd.ttl == 0 {
					cmd.NoLease = true
				} else {
					cmd.TTL = *op.cmd.ttl
				}
			}
			wire[i] = TxnOp{Kind: op.kind, ID: op.id, Command: cmd}
		}
		again, err := json.Marshal(struct {
			Ops []TxnOp `json:"ops"`
		}{wire})
		require.NoError(t, err)
		back, err := decodeTxn(again)
		require.NoError(t, err, "%s", again)
		require.Len(t, back, len(ops))
		for i := range ops {
			assert.Equal(t, ops[i].kind, back[i].kind)
			assert.Equal(t, ops[i].id, back[i].id)
			assert.Equal(t, ops[i].cmd.op, back[i].cmd.op)
			assert.Equal(t, ops[i].cmd.bind, back[i].cmd.bind)
			assert.Equal(t, ops[i].cmd.expectRev, back[i].cmd.expectRev)
		}
	})
}

func TestTxnOp_MarshalJSON(t *testing.T) {
	b, err := json.Marshal(TxnOp{Kind: "task", ID: "T", Command: Command{Op: OpMerge, Fields: map[string]any{"a": 1}, ExpectRev: Expect(2),
		TTL: time.Second, Bind: Bound()}})
	require.NoError(t, err)
	assert.JSONEq(t, `{"kind":"task","id":"T","op":"merge","fields":{"a":1},"expect_rev":2,"ttl_ms":1000,"bind":true}`, string(b))
	_, err = json.Marshal(TxnOp{Kind: "task", ID: "T", Command: Command{Op: OpPut, Fields: map[string]any{"f": func() {}}}})
	require.Error(t, err)
}

// marshalTxn gives the bytes json.Marshal gives for {"ops":[…]}, HTML
// characters, unicode and every member included, and names the operation
// that does not encode.
func TestMarshalTxn_AsJSONMarshal(t *testing.T) {
	ops := []TxnOp{
		{Kind: "task", ID: "T<1>", Command: Command{Op: OpMerge, Fields: map[string]any{"a": 1, "b&c": "x<y>\u2028\u00e9", "n": nil}, ExpectRev: Expect(2), TTL: time.Second, Bind: Bound()}},
		{Kind: "reservation", ID: "p.a.b", Command: Command{Op: OpDelete}},
		{Kind: "task", ID: "T2", Command: Command{Op: OpPut, Fields: map[string]any{"nested": map[string]any{"z": []any{1.5, true}}}, Bind: Unbound()}},
	}
	got, err := marshalTxn(ops)
	require.NoError(t, err)
	want, err := json.Marshal(struct {
		Ops []TxnOp `json:"ops"`
	}{ops})
	require.NoError(t, err)
	assert.Equal(t, string(want), string(got))
	_, err = marshalTxn([]TxnOp{ops[0], {Kind: "task", ID: "T", Command: Command{Op: OpPut, Fields: map[string]any{"f": func() {}}}}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "op 2 (task/T)")
}

func TestConflictError_Text(t *testing.T) {
	exp := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		ev   Event
		want string
	}{
		{Event{Kind: "task", ID: "T", Holder: "agent-1", CurrentRev: 3, ExpiresAt: &exp}, "state: conflict: task/T is held by agent-1 at rev 3 until 2026-11-30T12:00:00Z"},
		{Event{Kind: "task", ID: "T", Holder: "agent-1", CurrentRev: 3}, "state: conflict: task/T is held by agent-1 at rev 3 without expiry"},
		{Event{Kind: "task", ID: "T", Seq: 9, CurrentRev: 0}, "state: conflict: task/T: seq 9: current rev 0"},
		{Event{Kind: "reservation", ID: "r", Detail: "a overlaps b", Overlap: &Overlap{Rev: 2, ExpiresAt: &exp}},
			"state: conflict: reservation/r: a overlaps b, rev 2, until 2026-11-30T12:00:00Z"},
	}
	for _, tt := range tests {
		err := &ConflictError{Event: tt.ev}
		assert.Equal(t, tt.want, err.Error())
		assert.True(t, errors.Is(err, ErrConflict))
	}
	// txnErr: the first non-aborted operation's error, or the payload's.
	sum := Event{Status: StatusRejected, Ops: []Event{{Reason: ReasonAborted}, {Kind: "k", ID: "i", Status: StatusRejected, Reason: ReasonBadRequest, Detail: "bad"}}}
	err := sum.txnErr(nil)
	require.ErrorIs(t, err, ErrBadRequest)
	assert.True(t, strings.HasPrefix(err.Error(), "k/i: "), err.Error())
	err = Event{Status: StatusRejected, Reason: ReasonBadRequest, Detail: "no ops"}.txnErr(nil)
	require.ErrorIs(t, err, ErrBadRequest)
	require.NoError(t, Event{Status: StatusApplied}.txnErr(nil))
}

// A summary too large to publish leaves the records out; its operations'
// own events still carry them.
func TestTxnSummary_Large(t *testing.T) {
	big := strings.Repeat("x", 90_000)
	var ops []outcome
	for i := range 4 {
		rec := Record{Kind: "doc", ID: string(rune('a' + i)), Rev: 1, Fields: map[string]json.RawMessage{"v": json.RawMessage(`"` + big + `"`)}}
		ev := Event{Seq: 5, Status: StatusApplied, Rev: 1, Actor: "a", Op: OpPut, Record: &rec}
		ops = append(ops, newOutcome(5, "doc", rec.ID, ev, "id"))
	}
	o := txnSummary(&inMsg{seq: 5}, "tx", "a", StatusApplied, ops)
	assert.Less(t, len(o.evt), maxSummaryBytes)
	var ev Event
	require.NoError(t, json.Unmarshal(o.evt, &ev))
	require.Len(t, ev.Ops, 4)
	assert.Nil(t, ev.Ops[0].Record)
	assert.Equal(t, uint64(1), ev.Ops[0].Rev)
	assert.True(t, o.summary)
	assert.Equal(t, "codi.state.evt.txn.tx", o.evtSubject)
}

func TestReleaseMsgID(t *testing.T) {
	assert.Equal(t, "state-release-task.T.3", releaseMsgID("", "task", "T", 3))
	assert.Equal(t, "state-release-g1-task.T.3", releaseMsgID("g1", "task", "T", 3))
	assert.Equal(t, "state-g1-7-2", txnMsgID("g1", 7, 1))
}

// TestAppliedSummarySplice: the summary event of an applied multi-record
// command, built by splicing its operations' events, is byte for byte the
// one decoding and encoding them gives, with records (puts, merges of a
// stored record, leases, bindings, escaped characters, a delete) and
// without (a summary above maxSummaryBytes).
func TestAppliedSummarySplice(t *testing.T) {
	store := kvtest.NewBolt(t)
	t0 := time.Date(2026, 11, 30, 18, 0, 0, 123456789, time.UTC)
	big := strings.Repeat("x", 5000)
	for i, data := range []string{
		`{"ops":[{"kind":"task","id":"T-1","op":"put","fields":{"a":"<b>&","n":1.50,"o":{"z":[1, 2],"a":null}},"ttl_ms":60000,"bind":true},` +
			`{"kind":"file","id":"src/main%2Ego","op":"merge","fields":{"holder":"agent-1","e":"\u00e9\u2028"}}]}`,
		`{"ops":[{"kind":"task","id":"T-1","op":"merge","fields":{"a":null,"m":true},"expect_rev":1},` +
			`{"kind":"file","id":"src/main%2Ego","op":"delete"},{"kind":"task","id":"T-2","op":"put","fields":{}}]}`,
		`{"ops":[` + strings.Repeat(`{"kind":"task","id":"T-3","op":"merge","fields":{"big":"`+big+`"}},`, 59) +
			`{"kind":"task","id":"T-4","op":"merge","fields":{"big":"` + big + `"}}]}`,
	} {
		subj, err := subjects.StateCmd(KindTxn, "X-1", "agent-1")
		require.NoError(t, err)
		im := &inMsg{seq: uint64(i + 1), time: t0.Add(time.Duration(i) * time.Second), subject: subj, data: []byte(data)}
		require.NoError(t, store.Update(context.Background(), func(tx kv.Txn) error {
			p, err := planCommand(tx, im, uint64(i), "g1")
			require.NoError(t, err)
			sum := p.outcomes[len(p.outcomes)-1]
			require.True(t, sum.summary)
			require.Equal(t, StatusApplied, sum.status, string(sum.evt))
			ops := p.outcomes[:len(p.outcomes)-1]
			want := txnSummaryDecoded(im, "X-1", "agent-1", StatusApplied, ops)
			require.Equal(t, string(want.evt), string(sum.evt))
			require.Equal(t, i < 2, appliedSummary(im.seq, "agent-1", ops) != nil, "spliced")
			return applyPlan(tx, &p)
		}))
	}
}

// An operation's audit record is encoded once, the multi-record command
// named in it when the operation was applied: the bytes of the record
// encoded with every member it has.
func TestNewOpOutcome_AuditRecord(t *testing.T) {
	in := opInput{kind: "task", id: "T-1", actor: "agent-1", msgID: "m-1", txn: "X-1"}
	applied := Event{Seq: 7, Status: StatusApplied, Rev: 3, Actor: "agent-1", Op: OpMerge}
	assert.Equal(t, string(mustJSON(auditRecord{Seq: 7, Status: StatusApplied, Kind: "task", ID: "T-1", Actor: "agent-1", Op: OpMerge, Rev: 3, Txn: "X-1"})),
		string(newOpOutcome(7, in, applied).audit.data))
	single := in
	single.txn = ""
	assert.Equal(t, string(mustJSON(auditRecord{Seq: 7, Status: StatusApplied, Kind: "task", ID: "T-1", Actor: "agent-1", Op: OpMerge, Rev: 3})),
		string(newOpOutcome(7, single, applied).audit.data))
	rejected := Event{Seq: 7, Status: StatusRejected, Reason: ReasonConflict, CurrentRev: 2, Actor: "agent-1", Op: OpMerge}
	assert.Equal(t, string(mustJSON(auditRecord{Seq: 7, Status: StatusRejected, Kind: "task", ID: "T-1", Actor: "agent-1", Op: OpMerge, Rev: 2, Reason: ReasonConflict})),
		string(newOpOutcome(7, in, rejected).audit.data))
}

// The operations of a multi-record command, applied or aborted, have the
// event and audit subjects a command on their record has, though a run
// of operations on one kind or record builds them once.
func TestPlanTxn_OperationSubjects(t *testing.T) {
	store := kvtest.NewBolt(t)
	for _, last := range []string{`{"kind":"task","id":"B","op":"merge","fields":{"n":5}}`, `{"kind":"task","id":"B","op":"delete","expect_rev":9}`} {
		data := `{"ops":[{"kind":"task","id":"A","op":"merge","fields":{"n":1}},{"kind":"task","id":"A","op":"merge","fields":{"n":2}},` +
			`{"kind":"task","id":"B","op":"merge","fields":{"n":3}},{"kind":"cp","id":"B","op":"merge","fields":{"n":4}},` + last + `]}`
		subj, err := subjects.StateCmd(KindTxn, "X", "agent-1")
		require.NoError(t, err)
		require.NoError(t, store.Update(context.Background(), func(tx kv.Txn) error {
			p, err := planCommand(tx, &inMsg{seq: 3, time: time.Now().UTC(), subject: subj, data: []byte(data)}, 2, "g1")
			require.NoError(t, err)
			require.Len(t, p.outcomes, 6)
			for i, o := range p.outcomes[:5] {
				want := newTxnOutcome(3, o.kind, o.id, Event{}, "id", "")
				assert.Equal(t, want.evtSubject, o.evtSubject, "op %d", i+1)
				assert.Equal(t, want.audit.subject, o.audit.subject, "op %d", i+1)
				assert.Equal(t, txnMsgID("g1", 3, i), o.audit.msgID, "op %d", i+1)
			}
			p.discard()
			return nil
		}))
	}
}

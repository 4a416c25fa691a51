package state_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/audit"
	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/bus/bustest"
	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/internal/kv/kvtest"
	"github.com/codi2/codi2/state"
)

// runAudit runs the audit service on its own store beside the test's state
// service until the test ends.
func (e *env) runAudit() *audit.Client {
	e.t.Helper()
	nc := bustest.Connect(e.t, e.b)
	svc, err := audit.New(audit.Config{}, nc, kvtest.NewBolt(e.t), bustest.Logger(e.t))
	require.NoError(e.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	e.t.Cleanup(func() {
		cancel()
		assert.NoError(e.t, <-done)
	})
	select {
	case <-svc.Ready():
	case err := <-done:
		require.NoError(e.t, err)
	}
	c, err := audit.NewClient(e.nc)
	require.NoError(e.t, err)
	return c
}

// TestService_Audit_MsgIDAimedByAnotherSource is issue 11's input 6: an
// agent publishes an audit event with the Nats-Msg-Id the state service will
// give the next command's record. Neither JetStream's duplicate window (the
// whole stream's) nor the log's dedupe may erase the state service's record:
// both records are in the log, each with its id. (The state service's
// outcomes go in bulk messages, whose entries' ids JetStream never sees;
// the log deduplicates per source.)
func TestService_Audit_MsgIDAimedByAnotherSource(t *testing.T) {
	e := newEnv(t)
	e.start(fastConfig())
	log := e.runAudit()
	e.waitApplied(e.merges("task", "t1", 1, 2))

	aimed := e.cmdID(3)
	_, err := log.Log(context.Background(), "agent-9", "note", []byte(`{}`), audit.WithMsgID(aimed))
	require.NoError(t, err)
	seq := e.merges("task", "t1", 3, 1)
	require.Equal(t, uint64(3), seq)
	e.waitApplied(seq)

	var recs []audit.Record
	require.Eventually(t, func() bool {
		res, err := log.Query(context.Background(), audit.Query{Source: "codi-state"})
		recs = res.Records
		return err == nil && len(recs) == 3
	}, 10*time.Second, 10*time.Millisecond, "the state service's records: %v", recs)
	assert.Equal(t, aimed, recs[2].MsgID)
	var body struct{ Seq uint64 }
	require.NoError(t, json.Unmarshal(recs[2].Data, &body))
	assert.Equal(t, uint64(3), body.Seq)
	res, err := log.Query(context.Background(), audit.Query{Source: "agent-9"})
	require.NoError(t, err)
	require.Len(t, res.Records, 1, "the agent's own event is kept too")
	assert.Equal(t, aimed, res.Records[0].MsgID)
	v, err := log.Verify(context.Background(), audit.VerifyRequest{})
	require.NoError(t, err)
	assert.True(t, v.OK)
}

// TestService_Run_RecordsMissingCommands is issue 11's input 5 on
// CODI_STATE: commands purged from the stream, or deleted by sequence,
// before the service applied them are recorded, each range as one audit
// event naming it (codi.audit.log.codi-state.lost) written in the
// transaction that moves the watermark past them, never skipped in silence.
func TestService_Run_RecordsMissingCommands(t *testing.T) {
	e := newEnv(t)
	r := e.start(fastConfig())
	e.waitApplied(e.merges("task", "t1", 1, 3))
	r.stop(t)

	ctx := ctxT(t)
	stream, err := e.js.Stream(ctx, bus.StreamState)
	require.NoError(t, err)
	e.merges("task", "t2", 1, 5)                                                          // seqs 4-8
	require.NoError(t, stream.Purge(ctx, jetstream.WithPurgeSequence(6)))                 // removes 1-5
	require.NoError(t, stream.DeleteMsg(ctx, 7))                                          // and 7
	last := e.publish(cmdSubject(t, "task", "t3", "agent-1"), `{"op":"put","fields":{}}`) // 9
	e.start(fastConfig())
	e.waitApplied(last)

	var lost []state.Lost
	require.Eventually(t, func() bool {
		lost = lost[:0]
		for _, a := range e.audits() {
			if a.subject == "codi.audit.log.codi-state.lost" {
				var l state.Lost
				b, _ := json.Marshal(a.body)
				require.NoError(t, json.Unmarshal(b, &l))
				lost = append(lost, l)
			}
		}
		return len(lost) == 2
	}, 10*time.Second, 10*time.Millisecond)
	assert.Equal(t, []state.Lost{
		{Stream: bus.StreamState, FirstSeq: 4, LastSeq: 5, Count: 2},
		{Stream: bus.StreamState, FirstSeq: 7, LastSeq: 7, Count: 1},
	}, lost)
	_, err = e.client("observer").Get(ctx, "task", "t3", 0)
	assert.NoError(t, err, "the commands after the holes are applied")
}

// A store that applied commands before generations were kept goes on with
// the ids its outbox and the audit log already hold, state-<seq>.
func TestService_LegacyStoreKeepsIDs(t *testing.T) {
	e := newEnv(t)
	r := e.start(fastConfig())
	e.waitApplied(e.merges("task", "t1", 1, 2))
	r.stop(t)
	require.NoError(t, e.store.Update(ctxT(t), func(tx kv.Txn) error {
		return tx.Clear(kv.Tuple{"meta", "generation", bus.StreamState}.Pack())
	}))
	e.start(fastConfig())
	e.waitApplied(e.merges("task", "t1", 3, 1))
	require.Eventually(t, func() bool { _, ok := e.auditByID()["state-3"]; return ok }, 10*time.Second, 10*time.Millisecond)
}

// A leased record whose stored bytes are corrupt is not expired (its lease
// cannot be read): the sweep drops its index entry and goes on, and the
// record keeps failing loudly.
func TestService_CorruptLeasedRecord(t *testing.T) {
	e := newEnv(t)
	r := e.start(fastConfig())
	c := e.client("agent-1")
	ctx := ctxT(t)
	_, err := c.Claim(ctx, "task", "t1", 300*time.Millisecond, map[string]any{"marker": "zqzqzqzq"})
	require.NoError(t, err)
	r.stop(t)
	e.reopenStore(func(path string) { flipAll(t, path, []byte("zqzqzqzq")) })
	e.start(fastConfig())
	require.Eventually(t, func() bool {
		n := -1
		_ = e.store.View(ctx, func(tx kv.ReadTxn) error {
			b, end := kv.Tuple{"lease"}.Range()
			kvs, err := tx.GetRange(b, end, kv.RangeOptions{})
			n = len(kvs)
			return err
		})
		return n == 0
	}, 10*time.Second, 10*time.Millisecond, "the lease index entry is dropped")
	_, err = c.Get(ctx, "task", "t1", 0)
	assert.ErrorContains(t, err, "task/t1")
	_, err = c.Status(ctx)
	assert.NoError(t, err, "the service goes on")
}

// While CODI_STATE cannot be created again (another stream took its
// subjects), the service says so through Problem, for readiness, and keeps
// trying; once it can, it carries on.
func TestService_Run_StreamCannotBeRecreated(t *testing.T) {
	e := newEnv(t)
	r := e.start(fastConfig())
	e.waitApplied(e.merges("task", "t1", 1, 2))
	ctx := ctxT(t)
	require.NoError(t, e.js.DeleteStream(ctx, bus.StreamState))
	_, err := e.js.CreateStream(ctx, jetstream.StreamConfig{Name: "SQUAT", Subjects: []string{"codi.state.cmd.>"}})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return r.svc.Problem() != nil }, 10*time.Second, 10*time.Millisecond)
	assert.ErrorContains(t, r.svc.Problem(), bus.StreamState)

	require.NoError(t, e.js.DeleteStream(ctx, "SQUAT"))
	require.Eventually(t, func() bool { return r.svc.Problem() == nil }, 20*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool {
		_, err := e.js.Publish(ctx, cmdSubject(t, "task", "t1", "agent-1"), []byte(`{"op":"merge","fields":{"k":3},"expect_rev":2}`))
		return err == nil
	}, 10*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool {
		rec, err := e.client("observer").Get(ctx, "task", "t1", 0)
		return err == nil && rec.Rev == 3
	}, 10*time.Second, 10*time.Millisecond)
}

// Commands purged from the stream's end while the service was behind are
// never delivered: the idle loop notices that the stream holds nothing
// after the watermark although its last sequence is past it, records the
// range in the audit log and moves the watermark to the stream's end, so a
// get with min_seq at a lost command does not wait in vain.
func TestService_Run_RecordsPurgedTail(t *testing.T) {
	e := newEnv(t)
	r := e.start(fastConfig())
	e.waitApplied(e.merges("task", "t1", 1, 2))
	r.stop(t)
	last := e.merges("task", "t1", 3, 3) // seqs 3-5
	ctx := ctxT(t)
	stream, err := e.js.Stream(ctx, bus.StreamState)
	require.NoError(t, err)
	require.NoError(t, stream.Purge(ctx))

	e.start(fastConfig())
	e.waitApplied(last)
	var lost []map[string]any
	require.Eventually(t, func() bool {
		lost = lost[:0]
		for _, a := range e.audits() {
			if a.subject == "codi.audit.log.codi-state.lost" {
				lost = append(lost, a.body)
			}
		}
		return len(lost) == 1
	}, 10*time.Second, 10*time.Millisecond)
	assert.Equal(t, map[string]any{"stream": "CODI_STATE", "first_seq": 3.0, "last_seq": 5.0, "count": 3.0}, lost[0])
	assert.Equal(t, uint64(2), e.rev("task", "t1"))
}

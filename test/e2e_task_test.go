package test

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The test in this file speaks to codi2 with nothing but nats.go and JSON,
// subject by subject as CONTRACT.md writes them, to prove the wire contract
// that agents in any language rely on.

// stateEvent is an event on codi.state.evt.<kind>.<id>.
type stateEvent struct {
	Seq        uint64       `json:"seq"`
	Status     string       `json:"status"`
	Rev        uint64       `json:"rev"`
	Actor      string       `json:"actor"`
	Op         string       `json:"op"`
	Reason     string       `json:"reason"`
	CurrentRev *uint64      `json:"current_rev"`
	Record     *stateRecord `json:"record"`
}

// stateRecord is a record as get answers it.
type stateRecord struct {
	Kind      string            `json:"kind"`
	ID        string            `json:"id"`
	Rev       uint64            `json:"rev"`
	Fields    map[string]string `json:"fields"`
	UpdatedBy string            `json:"updated_by"`
	UpdatedAt time.Time         `json:"updated_at"`
	ExpiresAt *time.Time        `json:"expires_at"`
	Seq       uint64            `json:"seq"`
}

// auditRecord is a stored audit record as codi.audit.query answers it.
type auditRecord struct {
	Seq      uint64          `json:"seq"`
	Time     time.Time       `json:"time"`
	Subject  string          `json:"subject"`
	Source   string          `json:"source"`
	Category string          `json:"category"`
	MsgID    string          `json:"msg_id"`
	Data     json.RawMessage `json:"data"`
	Prev     string          `json:"prev"`
	Hash     string          `json:"hash"`
}

type auditPage struct {
	Records      []auditRecord `json:"records"`
	NextAfterSeq uint64        `json:"next_after_seq"`
}

func nextEvent(ctx context.Context, t *testing.T, sub *nats.Subscription) stateEvent {
	t.Helper()
	m, err := sub.NextMsgWithContext(ctx)
	require.NoError(t, err, "state event")
	var ev stateEvent
	require.NoError(t, json.Unmarshal(m.Data, &ev), "%s", m.Data)
	return ev
}

// TestE2E_TaskAssignment_WireContract walks ADR-028's task assignment over
// the wire: the orchestrator assigns ADR-028 to agent-1 by a durable
// message, agent-1 (offline when it was sent) catches up and claims the task
// through the state store with expect_rev while agent-2 loses the race, the
// orchestrator audits the assignment, and a dashboard asks the audit log for
// the last hour and checks the hash chain.
func TestE2E_TaskAssignment_WireContract(t *testing.T) {
	srv := startCodi2(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	orch := connect(t, srv.URL, "orchestrator")
	agent1 := connect(t, srv.URL, "agent-1")
	agent2 := connect(t, srv.URL, "agent-2")
	dash := connect(t, srv.URL, "dashboard")
	js := func(nc *nats.Conn) jetstream.JetStream {
		j, err := jetstream.New(nc)
		require.NoError(t, err)
		return j
	}
	ojs, a1js, a2js := js(orch), js(agent1), js(agent2)

	// 1. The orchestrator assigns the task: a durable message, stored once
	// however often it is retried with the same Nats-Msg-Id.
	assign := &nats.Msg{Subject: "codi.msg.agent-1.orchestrator.task.assign",
		Data: []byte(`{"task":"ADR-028"}`), Header: nats.Header{}}
	assign.Header.Set("Nats-Msg-Id", "assign-ADR-028")
	ack, err := ojs.PublishMsg(ctx, assign)
	require.NoError(t, err)
	assert.Equal(t, "CODI_MSG", ack.Stream)
	assert.False(t, ack.Duplicate)
	retry, err := ojs.PublishMsg(ctx, assign)
	require.NoError(t, err)
	assert.True(t, retry.Duplicate, "a retried send is stored once")
	assert.Equal(t, ack.Sequence, retry.Sequence)

	// 2. agent-1 was offline: its durable consumer catches up.
	cons, err := a1js.CreateOrUpdateConsumer(ctx, "CODI_MSG", jetstream.ConsumerConfig{
		Durable:        "agent-1",
		FilterSubjects: []string{"codi.msg.agent-1.>", "codi.msg.all.>"},
		AckPolicy:      jetstream.AckExplicitPolicy,
	})
	require.NoError(t, err)
	batch, err := cons.Fetch(10, jetstream.FetchMaxWait(2*time.Second))
	require.NoError(t, err)
	var inbox []jetstream.Msg
	for m := range batch.Messages() {
		inbox = append(inbox, m)
		require.NoError(t, m.DoubleAck(ctx))
	}
	require.NoError(t, batch.Error())
	require.Len(t, inbox, 1, "the assignment, once")
	assert.Equal(t, "codi.msg.agent-1.orchestrator.task.assign", inbox[0].Subject())
	assert.JSONEq(t, `{"task":"ADR-028"}`, string(inbox[0].Data()))

	// 3. agent-1 claims the task: expect_rev 0 means "only if nobody has".
	evts, err := dash.SubscribeSync("codi.state.evt.task.ADR-028")
	require.NoError(t, err)
	require.NoError(t, dash.Flush())
	claim1, err := a1js.Publish(ctx, "codi.state.cmd.task.ADR-028.agent-1",
		[]byte(`{"op":"merge","fields":{"status":"in_progress","assignee":"agent-1"},"expect_rev":0}`))
	require.NoError(t, err)
	assert.Equal(t, "CODI_STATE", claim1.Stream)
	ev := nextEvent(ctx, t, evts)
	assert.Equal(t, claim1.Sequence, ev.Seq)
	assert.Equal(t, "applied", ev.Status)
	assert.Equal(t, uint64(1), ev.Rev)
	assert.Equal(t, "agent-1", ev.Actor)
	assert.Equal(t, "merge", ev.Op)
	require.NotNil(t, ev.Record)
	assert.Equal(t, "agent-1", ev.Record.Fields["assignee"])

	// 4. agent-2 tries the same claim and loses, told the current revision.
	claim2, err := a2js.Publish(ctx, "codi.state.cmd.task.ADR-028.agent-2",
		[]byte(`{"op":"merge","fields":{"status":"in_progress","assignee":"agent-2"},"expect_rev":0}`))
	require.NoError(t, err)
	ev = nextEvent(ctx, t, evts)
	assert.Equal(t, claim2.Sequence, ev.Seq)
	assert.Equal(t, "rejected", ev.Status)
	assert.Equal(t, "conflict", ev.Reason)
	assert.Equal(t, "agent-2", ev.Actor)
	require.NotNil(t, ev.CurrentRev)
	assert.Equal(t, uint64(1), *ev.CurrentRev)

	// 5. Anyone reads the current state, at least as new as a PubAck.
	var rec stateRecord
	requestJSON(ctx, t, dash, "codi.state.get.task.ADR-028", map[string]uint64{"min_seq": claim2.Sequence}, &rec)
	assert.Equal(t, "task", rec.Kind)
	assert.Equal(t, "ADR-028", rec.ID)
	assert.Equal(t, uint64(1), rec.Rev)
	assert.Equal(t, claim1.Sequence, rec.Seq)
	assert.Equal(t, "agent-1", rec.UpdatedBy)
	assert.Equal(t, map[string]string{"status": "in_progress", "assignee": "agent-1"}, rec.Fields)
	assert.Nil(t, rec.ExpiresAt)
	missing, err := dash.RequestWithContext(ctx, "codi.state.get.task.ADR-999", nil)
	require.NoError(t, err)
	assert.Equal(t, "404", missing.Header.Get("Nats-Service-Error-Code"))

	// 6. The orchestrator audits the assignment and waits for the commit
	// watermark to pass its PubAck: the event is durable in the log.
	committed, err := dash.SubscribeSync("codi.audit.committed")
	require.NoError(t, err)
	require.NoError(t, dash.Flush())
	audit := &nats.Msg{Subject: "codi.audit.log.orchestrator.task.assign",
		Data: []byte(`{"task":"ADR-028","to":"agent-1"}`), Header: nats.Header{}}
	audit.Header.Set("Nats-Msg-Id", "audit-assign-ADR-028")
	aack, err := ojs.PublishMsg(ctx, audit)
	require.NoError(t, err)
	assert.Equal(t, "CODI_AUDIT", aack.Stream)
	var status struct {
		StreamSeq uint64 `json:"stream_seq"`
		Seq       uint64 `json:"seq"`
	}
	requestJSON(ctx, t, dash, "codi.audit.status", nil, &status)
	for status.StreamSeq < aack.Sequence {
		m, err := committed.NextMsgWithContext(ctx)
		require.NoError(t, err, "watermark reaching %d", aack.Sequence)
		require.NoError(t, json.Unmarshal(m.Data, &status))
	}

	// 7. A dashboard asks what was assigned in the last hour.
	now := time.Now().UTC()
	var page auditPage
	requestJSON(ctx, t, dash, "codi.audit.query", map[string]any{
		"from": now.Add(-time.Hour).Format(time.RFC3339), "to": now.Add(time.Minute).Format(time.RFC3339),
		"source": "orchestrator", "category": "task",
	}, &page)
	require.Len(t, page.Records, 1)
	r := page.Records[0]
	assert.Equal(t, "codi.audit.log.orchestrator.task.assign", r.Subject)
	assert.Equal(t, "orchestrator", r.Source)
	assert.Equal(t, "task", r.Category)
	assert.Equal(t, "audit-assign-ADR-028", r.MsgID)
	assert.JSONEq(t, `{"task":"ADR-028","to":"agent-1"}`, string(r.Data))
	assert.WithinDuration(t, now, r.Time, time.Minute)
	assert.Len(t, r.Hash, 64)
	assert.Len(t, r.Prev, 64)
	assert.Zero(t, page.NextAfterSeq)

	// 8. The state service audited both claims itself, once each, with
	// Nats-Msg-Id state-<generation>-<seq>, the generation being
	// CODI_STATE's creation time in Unix nanoseconds.
	stateStream, err := ojs.Stream(ctx, "CODI_STATE")
	require.NoError(t, err)
	gen := strconv.FormatInt(stateStream.CachedInfo().Created.UnixNano(), 10)
	want := map[string]bool{"state-" + gen + "-" + u64(claim1.Sequence): true, "state-" + gen + "-" + u64(claim2.Sequence): true}
	require.Eventually(t, func() bool {
		var p auditPage
		if tryRequestJSON(ctx, dash, "codi.audit.query", map[string]any{
			"from": now.Add(-time.Hour).Format(time.RFC3339), "source": "codi-state"}, &p) != nil {
			return false
		}
		got := map[string]bool{}
		for _, r := range p.Records {
			if r.Category == "state" {
				got[r.MsgID] = true
			}
		}
		return len(p.Records) == 2 && assert.ObjectsAreEqual(want, got)
	}, 10*time.Second, 20*time.Millisecond, "codi-state audited each command once")

	// 9. The hash chain holds over the whole log.
	var verify struct {
		OK    bool   `json:"ok"`
		Count uint64 `json:"count"`
		Head  string `json:"head"`
	}
	requestJSON(ctx, t, dash, "codi.audit.verify", map[string]any{}, &verify)
	assert.True(t, verify.OK)
	assert.GreaterOrEqual(t, verify.Count, uint64(3))
	assert.Len(t, verify.Head, 64)
}

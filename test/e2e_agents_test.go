package test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/codi2/codi2/audit"
	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/state"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// taskEvent is the payload of the task audit events in this test.
type taskEvent struct {
	Task  string `json:"task"`
	Event string `json:"event"`
	Agent string `json:"agent"`
}

// agentLog is what one agent saw and did. It is written by the agent's
// Receive handler, one message at a time, and read after Receive returns.
type agentLog struct {
	received map[string]int // task -> deliveries of its assignment
	won      []string
	lost     []string
	errs     []error
}

// TestE2E_FiveAgents_NoLostOrDuplicatedEvents runs ADR-028's scenario with
// five agents at once, each on its own connection with the platform's
// clients: the orchestrator broadcasts tasks and audits each assignment;
// every agent receives every assignment through its durable consumer and
// races to claim it with expect_rev 0; the winner audits the claim and
// completes the task with expect_rev 1. Afterwards a dashboard reads the
// last hour of the audit log. Every message is delivered exactly once to
// every agent, every task is claimed exactly once, and every event is in
// the log exactly once, with the hash chain intact.
func TestE2E_FiveAgents_NoLostOrDuplicatedEvents(t *testing.T) {
	srv := startCodi2(t)
	fiveAgents(t, func(t *testing.T, name string) *nats.Conn { return connect(t, srv.URL, name) })
}

// fiveAgents runs the scenario of TestE2E_FiveAgents_NoLostOrDuplicatedEvents
// with connections from dial: agent-1 … agent-5, orchestrator and
// dashboard (which only reads).
func fiveAgents(t *testing.T, dial func(t *testing.T, name string) *nats.Conn) {
	const agents, tasks = 5, 20
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	started := time.Now().UTC()
	taskID := func(i int) string { return fmt.Sprintf("ADR-%03d", 100+i) }

	// The agents start first and wait for work.
	logs := make([]*agentLog, agents)
	runCtx, stopAgents := context.WithCancel(ctx)
	defer stopAgents()
	var wg sync.WaitGroup
	var handled atomic.Int64 // assignments fully handled, over all agents
	receiveErrs := make([]error, agents)
	for i := range agents {
		id := fmt.Sprintf("agent-%d", i+1)
		nc := dial(t, id)
		ag, err := bus.NewAgent(id, nc)
		require.NoError(t, err)
		sc, err := state.NewClient(nc, id)
		require.NoError(t, err)
		ac, err := audit.NewClient(nc)
		require.NoError(t, err)
		l := &agentLog{received: map[string]int{}}
		logs[i] = l
		wg.Go(func() {
			receiveErrs[i] = ag.Receive(runCtx, bus.ReceiveConfig{}, func(ctx context.Context, m bus.Message) error {
				var a struct {
					Task string `json:"task"`
				}
				if m.Type != "task.assign" || json.Unmarshal(m.Data, &a) != nil {
					l.errs = append(l.errs, fmt.Errorf("unexpected message %s %q", m.Subject, m.Data))
					return nil
				}
				l.received[a.Task]++
				if l.received[a.Task] > 1 {
					return nil // a redelivery after the ack was lost: already handled
				}
				err := claim(ctx, l, sc, ac, id, a.Task)
				handled.Add(1)
				return err
			})
		})
	}

	// The orchestrator assigns every task to everyone and audits it.
	onc := dial(t, "orchestrator")
	orch, err := bus.NewAgent("orchestrator", onc)
	require.NoError(t, err)
	oac, err := audit.NewClient(onc)
	require.NoError(t, err)
	for i := range tasks {
		body, _ := json.Marshal(map[string]string{"task": taskID(i)})
		_, err := orch.Broadcast(ctx, "task.assign", body, bus.WithMsgID("assign-"+taskID(i)))
		require.NoError(t, err)
		ev, _ := json.Marshal(taskEvent{Task: taskID(i), Event: "assigned", Agent: "all"})
		_, err = oac.LogAndWait(ctx, "orchestrator", "task", ev, audit.WithMsgID("assigned-"+taskID(i)))
		require.NoError(t, err)
	}

	// Wait until every agent has handled every assignment, and every task
	// is done as a dashboard sees it.
	require.Eventually(t, func() bool { return handled.Load() == agents*tasks },
		60*time.Second, 10*time.Millisecond, "every agent handles every assignment")
	dnc := dial(t, "dashboard")
	dstate, err := state.NewClient(dnc, "dashboard")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		res, err := dstate.List(ctx, "task", state.ListOptions{Limit: 1000})
		if err != nil || len(res.Records) != tasks {
			return false
		}
		for _, r := range res.Records {
			var s string
			if r.Field("status", &s) != nil || s != "done" {
				return false
			}
		}
		return true
	}, 10*time.Second, 20*time.Millisecond, "every task done")
	stopAgents()
	wg.Wait()

	// Messages: every agent got every assignment exactly once.
	winners := map[string]string{}
	for i, l := range logs {
		id := fmt.Sprintf("agent-%d", i+1)
		require.NoError(t, receiveErrs[i])
		assert.Empty(t, l.errs, id)
		assert.Len(t, l.received, tasks, "%s received every task", id)
		for task, n := range l.received {
			assert.Equal(t, 1, n, "%s got %s once", id, task)
		}
		assert.Len(t, append(append([]string{}, l.won...), l.lost...), tasks, "%s tried every task once", id)
		for _, task := range l.won {
			assert.NotContains(t, winners, task, "%s claimed twice", task)
			winners[task] = id
		}
	}
	assert.Len(t, winners, tasks, "every task claimed by exactly one agent")

	// State: each task went through exactly two revisions, by its winner.
	for i := range tasks {
		rec, err := dstate.Get(ctx, "task", taskID(i), 0)
		require.NoError(t, err)
		var assignee string
		require.NoError(t, rec.Field("assignee", &assignee))
		assert.Equal(t, winners[taskID(i)], assignee, taskID(i))
		assert.Equal(t, uint64(2), rec.Rev, taskID(i))
		assert.Equal(t, winners[taskID(i)], rec.UpdatedBy)
	}

	// Audit: the dashboard reads the last hour, page by page. Wait until
	// the state service's own audit records are in too: per task one
	// applied claim, agents-1 rejected ones and one applied completion.
	dau, err := audit.NewClient(dnc)
	require.NoError(t, err)
	wantState := tasks * (agents + 1)
	var all []audit.Record
	require.Eventually(t, func() bool {
		var err error
		all, err = readAll(ctx, dau, audit.Query{From: started.Add(-time.Hour), To: time.Now().Add(time.Minute)})
		if err != nil {
			return false
		}
		n := 0
		for _, r := range all {
			if r.Source == state.Actor {
				n++
			}
		}
		return n >= wantState
	}, 30*time.Second, 50*time.Millisecond, "the state service's audit records arrive")

	seqs := map[uint64]bool{}
	msgIDs := map[string]int{}
	events := map[string]int{} // "<task> <event>" -> count
	stateEvents := 0
	for _, r := range all {
		assert.False(t, seqs[r.Seq], "seq %d once", r.Seq)
		seqs[r.Seq] = true
		msgIDs[r.MsgID]++
		switch r.Source {
		case state.Actor:
			stateEvents++
		default:
			var ev taskEvent
			require.NoError(t, json.Unmarshal(r.Data, &ev))
			events[ev.Task+" "+ev.Event]++
			if ev.Event != "assigned" {
				assert.Equal(t, winners[ev.Task], r.Source, "%s %s audited by its winner", ev.Task, ev.Event)
			}
		}
	}
	for id, n := range msgIDs {
		assert.Equal(t, 1, n, "msg id %q once in the log", id)
	}
	assert.Equal(t, wantState, stateEvents, "every state command audited exactly once")
	for i := range tasks {
		for _, e := range []string{"assigned", "claimed", "completed"} {
			assert.Equal(t, 1, events[taskID(i)+" "+e], "%s %s in the log once", taskID(i), e)
		}
	}
	assert.Len(t, events, 3*tasks)

	st, err := dau.Status(ctx)
	require.NoError(t, err)
	assert.Equal(t, uint64(len(all)), st.Count, "the dashboard saw the whole log")
	v, err := dau.Verify(ctx, audit.VerifyRequest{})
	require.NoError(t, err)
	assert.True(t, v.OK, "hash chain: %+v", v)
	assert.Equal(t, st.Count, v.Count)
	t.Logf("%d agents, %d tasks: %d audit records, every message, claim and event exactly once", agents, tasks, len(all))
}

// claim is one agent's handling of an assignment: claim the task with
// expect_rev 0; the winner audits the claim, completes the task with
// expect_rev 1 and audits that. Losing the race is normal.
func claim(ctx context.Context, l *agentLog, sc *state.Client, ac *audit.Client, me, task string) error {
	ev, err := sc.Apply(ctx, "task", task, state.Command{Op: state.OpMerge,
		Fields: map[string]any{"status": "in_progress", "assignee": me}, ExpectRev: state.Expect(0)})
	switch {
	case errors.Is(err, state.ErrConflict):
		l.lost = append(l.lost, task)
		return nil
	case err != nil:
		l.errs = append(l.errs, fmt.Errorf("claim %s: %w", task, err))
		return nil
	}
	l.won = append(l.won, task)
	logEvent := func(what string) {
		data, _ := json.Marshal(taskEvent{Task: task, Event: what, Agent: me})
		if _, err := ac.LogAndWait(ctx, me, "task", data, audit.WithMsgID(what+"-"+task)); err != nil {
			l.errs = append(l.errs, fmt.Errorf("audit %s %s: %w", what, task, err))
		}
	}
	logEvent("claimed")
	if _, err := sc.Apply(ctx, "task", task, state.Command{Op: state.OpMerge,
		Fields: map[string]any{"status": "done"}, ExpectRev: state.Expect(ev.Rev)}); err != nil {
		l.errs = append(l.errs, fmt.Errorf("complete %s: %w", task, err))
		return nil
	}
	logEvent("completed")
	return nil
}

// readAll pages through every record q selects.
func readAll(ctx context.Context, c *audit.Client, q audit.Query) ([]audit.Record, error) {
	var out []audit.Record
	for {
		res, err := c.Query(ctx, q)
		if err != nil {
			return nil, err
		}
		out = append(out, res.Records...)
		if res.NextAfterSeq == 0 {
			return out, nil
		}
		q.AfterSeq = res.NextAfterSeq
	}
}

package state_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/state"
)

// When an agent's presence lapses, everything bound to it is released in
// the same transaction: reservations removed, claims kept without holder
// or lease; each with its release event and audit record. What is not
// bound stays.
func TestPresence_LapseReleasesBound(t *testing.T) {
	e := newEnv(t)
	w := e.watchEvents()
	e.start(fastConfig())
	ctx := ctxT(t)
	a2, a3 := e.client("agent-2"), e.client("agent-3")

	pres, err := a2.Heartbeat(ctx, 300*time.Millisecond, map[string]any{"host": "h1", "task": "ADR-028"})
	require.NoError(t, err)
	assert.Equal(t, "agent", pres.Kind)
	sum, err := a2.Txn(ctx, []state.TxnOp{
		{Kind: "task", ID: "ADR-028", Command: state.Command{Op: state.OpPut, Fields: map[string]any{"holder": "agent-2", "status": "in_progress"},
			ExpectRev: state.Expect(0), TTL: time.Hour, Bind: state.Bound()}},
	})
	require.NoError(t, err)
	assert.Equal(t, "agent-2", sum.Ops[0].Record.BoundTo)
	_, err = a2.Reserve(ctx, project, []string{"src/**"}, state.ReserveOptions{TTL: time.Hour, Bind: true})
	require.NoError(t, err)
	unbound, err := a2.Claim(ctx, "task", "other", time.Hour, nil)
	require.NoError(t, err)

	// agent-3 is refused while agent-2 is present...
	_, err = a3.Reserve(ctx, project, []string{"src/main.go"}, state.ReserveOptions{TTL: time.Minute})
	require.ErrorIs(t, err, state.ErrConflict)
	// ...and wins once the presence (300 ms) lapsed, long before the
	// reservation's own hour.
	start := time.Now()
	require.Eventually(t, func() bool {
		_, err := a3.Reserve(ctx, project, []string{"src/main.go"}, state.ReserveOptions{TTL: time.Minute})
		return err == nil
	}, 10*time.Second, 20*time.Millisecond)
	assert.Less(t, time.Since(start), 10*time.Second)

	task, err := a3.Get(ctx, "task", "ADR-028", 0)
	require.NoError(t, err)
	assert.Equal(t, "", task.Holder(), "released")
	assert.Nil(t, task.ExpiresAt)
	assert.Empty(t, task.BoundTo)
	assert.Equal(t, state.Actor, task.UpdatedBy)
	var status string
	require.NoError(t, task.Field("status", &status))
	assert.Equal(t, "in_progress", status, "the record's other fields are kept")
	_, err = a3.Get(ctx, "agent", "agent-2", 0)
	require.ErrorIs(t, err, state.ErrNotFound)
	still, err := a3.Get(ctx, "task", "other", 0)
	require.NoError(t, err)
	assert.Equal(t, unbound.Rev, still.Rev, "an unbound claim is not touched")

	require.Eventually(t, func() bool { return len(eventsOn(w, "codi.state.evt.task.ADR-028")) == 2 }, 5*time.Second, time.Millisecond)
	rel := eventsOn(w, "codi.state.evt.task.ADR-028")[1]
	assert.Equal(t, state.OpRelease, rel.Op)
	assert.Equal(t, state.Actor, rel.Actor)
	id, _ := state.ReservationID(project, "agent-2", "src/**")
	require.Eventually(t, func() bool {
		_, ok := e.auditByID()["state-release-"+e.generation()+"-reservation."+id+".2"]
		return ok
	}, 5*time.Second, 10*time.Millisecond)
	assert.Equal(t, "release", e.auditByID()["state-release-"+e.generation()+"-task.ADR-028.2"].body["op"])
}

// Signing off (deleting the presence) releases at once; a presence is
// written only by its agent; a release unbinds.
func TestPresence_SignOffAndRules(t *testing.T) {
	e := newEnv(t)
	w := e.watchEvents()
	e.start(fastConfig())
	ctx := ctxT(t)
	a2 := e.client("agent-2")
	_, err := a2.Heartbeat(ctx, time.Hour, nil)
	require.NoError(t, err)
	_, err = a2.Heartbeat(ctx, 0, nil)
	require.ErrorIs(t, err, state.ErrBadRequest)
	_, err = a2.Reserve(ctx, project, []string{"a/**"}, state.ReserveOptions{TTL: time.Hour, Bind: true})
	require.NoError(t, err)
	// A bound claim that was released (bind false) is no longer released
	// with the presence.
	sum, err := a2.Txn(ctx, []state.TxnOp{{Kind: "task", ID: "T", Command: state.Command{Op: state.OpPut,
		Fields: map[string]any{"holder": "agent-2"}, TTL: time.Hour, Bind: state.Bound()}}})
	require.NoError(t, err)
	rel, err := a2.Apply(ctx, "task", "T", state.Command{Op: state.OpMerge, Fields: map[string]any{"holder": nil},
		ExpectRev: state.Expect(sum.Ops[0].Rev), NoLease: true, Bind: state.Unbound()})
	require.NoError(t, err)
	assert.Empty(t, rel.Record.BoundTo)

	require.NoError(t, a2.SignOff(ctx))
	held, err := a2.Reservations(ctx, project, "", "")
	require.NoError(t, err)
	assert.Empty(t, held)
	task, err := a2.Get(ctx, "task", "T", 0)
	require.NoError(t, err)
	assert.Equal(t, rel.Record.Rev, task.Rev, "unbound before the presence ended")
	err = a2.SignOff(ctx)
	require.ErrorIs(t, err, state.ErrNotFound, "no presence to end")
	assert.Contains(t, err.Error(), "agent-2 has no live presence")

	for _, tt := range []struct{ name, id, actor, payload, detail string }{
		{"another agent's presence", "agent-2", "agent-3", `{"op":"merge","fields":{}}`, "only it may write it"},
		{"bound presence", "agent-3", "agent-3", `{"op":"merge","fields":{},"bind":true}`, "cannot be bound"},
		{"delete with bind", "x", "agent-3", `{"op":"delete","bind":false}`, "no bind"},
	} {
		seq := e.publish(cmdSubject(t, state.KindAgent, tt.id, tt.actor), tt.payload)
		ev := w.waitSeq(t, seq)
		assert.Equal(t, state.ReasonBadRequest, ev.ev.Reason, tt.name)
		assert.Contains(t, ev.ev.Detail, tt.detail, tt.name)
	}
	// Only a record's holder may bind it (a breaker's input: agent-2 bound
	// agent-3's claim to its own presence, then signed off, releasing it).
	vt, err := e.client("agent-3").Claim(ctx, "task", "VT", time.Hour, nil)
	require.NoError(t, err)
	_, err = a2.Apply(ctx, "task", "VT", state.Command{Op: state.OpMerge, Bind: state.Bound()})
	require.ErrorIs(t, err, state.ErrBadRequest)
	assert.Contains(t, err.Error(), "task/VT is held by agent-3: only its holder may bind it")
	// Re-claiming with Bind false unbinds what a bound claim left.
	bound, err := e.client("agent-3").ClaimWith(ctx, "task", "VT", state.ClaimOptions{TTL: time.Hour, Bind: true})
	require.NoError(t, err)
	assert.Equal(t, "agent-3", bound.BoundTo)
	unbound, err := e.client("agent-3").ClaimWith(ctx, "task", "VT", state.ClaimOptions{TTL: time.Hour})
	require.NoError(t, err)
	assert.Empty(t, unbound.BoundTo)
	assert.Equal(t, vt.Rev+2, unbound.Rev)

	// Another agent cannot end agent-3's presence.
	_, err = e.client("agent-3").Heartbeat(ctx, time.Hour, nil)
	require.NoError(t, err)
	seq := e.publish(cmdSubject(t, state.KindAgent, "agent-3", "agent-2"), `{"op":"delete"}`)
	ev := w.waitSeq(t, seq)
	assert.Equal(t, state.ReasonBadRequest, ev.ev.Reason)
	assert.Contains(t, ev.ev.Detail, "belongs to agent-3")
}

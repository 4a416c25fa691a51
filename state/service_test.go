package state_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/state"
	"github.com/codi2/codi2/subjects"
)

func TestClient_Apply_Put(t *testing.T) {
	e := newEnv(t)
	e.start(fastConfig())
	c := e.client("agent-1")
	ctx := ctxT(t)

	ev, err := c.Apply(ctx, "task", "ADR-028", state.Command{Op: state.OpPut, Fields: map[string]any{"status": "open", "n": 1}})
	require.NoError(t, err)
	assert.Equal(t, state.StatusApplied, ev.Status)
	assert.Equal(t, uint64(1), ev.Rev)
	assert.Equal(t, "agent-1", ev.Actor)
	assert.Equal(t, state.OpPut, ev.Op)
	require.NotNil(t, ev.Record)
	assert.Equal(t, "task", ev.Record.Kind)
	assert.Equal(t, "ADR-028", ev.Record.ID)
	assert.Equal(t, ev.Seq, ev.Record.Seq)
	assert.Nil(t, ev.Record.ExpiresAt)
	assert.JSONEq(t, `"open"`, string(ev.Record.Fields["status"]))

	// put replaces every field.
	ev, err = c.Apply(ctx, "task", "ADR-028", state.Command{Op: state.OpPut, Fields: map[string]any{"status": "done"}})
	require.NoError(t, err)
	assert.Equal(t, uint64(2), ev.Rev)

	rec, err := c.Get(ctx, "task", "ADR-028", ev.Seq)
	require.NoError(t, err)
	assert.Equal(t, uint64(2), rec.Rev)
	assert.Equal(t, map[string]json.RawMessage{"status": json.RawMessage(`"done"`)}, rec.Fields)
	assert.Equal(t, "agent-1", rec.UpdatedBy)
	assert.Equal(t, ev.Seq, rec.Seq)
	assert.WithinDuration(t, time.Now(), rec.UpdatedAt, 10*time.Second)
	assert.Equal(t, time.UTC, rec.UpdatedAt.Location())
}

func TestClient_Apply_Merge(t *testing.T) {
	e := newEnv(t)
	e.start(fastConfig())
	c := e.client("agent-1")
	ctx := ctxT(t)

	// merge on a missing record creates it.
	ev, err := c.Apply(ctx, "task", "t1", state.Command{Op: state.OpMerge, Fields: map[string]any{"a": 1, "b": "x"}})
	require.NoError(t, err)
	assert.Equal(t, uint64(1), ev.Rev)

	// null removes a field, others are kept or set.
	ev, err = c.Apply(ctx, "task", "t1", state.Command{Op: state.OpMerge, Fields: map[string]any{"b": nil, "c": []int{1, 2}}})
	require.NoError(t, err)
	assert.Equal(t, uint64(2), ev.Rev)
	assert.Equal(t, map[string]json.RawMessage{"a": json.RawMessage(`1`), "c": json.RawMessage(`[1,2]`)}, ev.Record.Fields)

	var n int
	require.NoError(t, ev.Record.Field("a", &n))
	assert.Equal(t, 1, n)
	assert.ErrorIs(t, ev.Record.Field("b", &n), state.ErrNotFound)
}

func TestClient_Apply_Delete(t *testing.T) {
	e := newEnv(t)
	e.start(fastConfig())
	c := e.client("agent-1")
	ctx := ctxT(t)

	_, err := c.Apply(ctx, "file", "src/main%2Ego", state.Command{Op: state.OpPut, Fields: map[string]any{"owner": "agent-1"}})
	require.NoError(t, err)
	ev, err := c.Apply(ctx, "file", "src/main%2Ego", state.Command{Op: state.OpDelete})
	require.NoError(t, err)
	assert.Equal(t, state.StatusApplied, ev.Status)
	assert.Equal(t, uint64(2), ev.Rev)
	assert.Nil(t, ev.Record)

	_, err = c.Get(ctx, "file", "src/main%2Ego", ev.Seq)
	require.ErrorIs(t, err, state.ErrNotFound)

	// Deleting what does not exist is a conflict with current_rev 0.
	ev, err = c.Apply(ctx, "file", "src/main%2Ego", state.Command{Op: state.OpDelete})
	require.ErrorIs(t, err, state.ErrConflict)
	assert.Equal(t, state.ReasonConflict, ev.Reason)
	assert.Equal(t, uint64(0), ev.CurrentRev)
}

func TestClient_Apply_ExpectRevConflict(t *testing.T) {
	e := newEnv(t)
	w := e.watchEvents()
	e.start(fastConfig())
	c := e.client("agent-1")
	ctx := ctxT(t)

	_, err := c.Apply(ctx, "task", "t1", state.Command{Op: state.OpPut, ExpectRev: state.Expect(0)})
	require.NoError(t, err)
	_, err = c.Apply(ctx, "task", "t1", state.Command{Op: state.OpMerge, Fields: map[string]any{"x": 1}, ExpectRev: state.Expect(1)})
	require.NoError(t, err)

	tests := []struct {
		name    string
		cmd     state.Command
		wantErr error
		wantCur uint64
	}{
		{"stale rev", state.Command{Op: state.OpMerge, ExpectRev: state.Expect(1)}, state.ErrConflict, 2},
		{"exists", state.Command{Op: state.OpPut, ExpectRev: state.Expect(0)}, state.ErrConflict, 2},
		{"future rev", state.Command{Op: state.OpDelete, ExpectRev: state.Expect(9)}, state.ErrConflict, 2},
		{"current rev", state.Command{Op: state.OpMerge, Fields: map[string]any{"y": 2}, ExpectRev: state.Expect(2)}, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := c.Apply(ctx, "task", "t1", tt.cmd)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				assert.Equal(t, state.StatusRejected, ev.Status)
				assert.Equal(t, tt.wantCur, ev.CurrentRev)
				// The wire event has current_rev and no record.
				got := w.waitSeq(t, ev.Seq)
				assert.Equal(t, float64(tt.wantCur), got.raw["current_rev"])
				assert.Equal(t, "conflict", got.raw["reason"])
				assert.NotContains(t, got.raw, "record")
				return
			}
			require.NoError(t, err)
		})
	}
	rec, err := c.Get(ctx, "task", "t1", 0)
	require.NoError(t, err)
	assert.Equal(t, uint64(3), rec.Rev)
}

// Five agents race to claim one task with expect_rev 0: exactly one wins.
func TestClient_Claim_Race(t *testing.T) {
	e := newEnv(t)
	cfg := fastConfig()
	cfg.MaxBatchWait = 2 * time.Millisecond // claims arriving together share a batch
	e.start(cfg)
	const agents, rounds = 5, 60
	clients := make([]*state.Client, agents)
	for i := range clients {
		clients[i] = e.client(fmt.Sprintf("agent-%d", i))
	}
	ctx := ctxT(t)
	for r := 0; r < rounds; r++ {
		id := fmt.Sprintf("task-%d", r)
		errs := make(chan error, agents)
		revs := make(chan uint64, agents)
		start := make(chan struct{})
		for _, c := range clients {
			go func() {
				<-start
				rec, err := c.Claim(ctx, "task", id, time.Minute, map[string]any{"owner": c.Agent()})
				errs <- err
				revs <- rec.Rev
			}()
		}
		close(start)
		won, lost := 0, 0
		for range agents {
			err := <-errs
			switch {
			case err == nil:
				won++
			case assert.ErrorIs(t, err, state.ErrConflict):
				lost++
			}
			if rev := <-revs; rev != 0 {
				assert.Equal(t, uint64(1), rev)
			}
		}
		require.Equal(t, 1, won, "round %d", r)
		require.Equal(t, agents-1, lost, "round %d", r)
	}
}

// A claim is one command without a read: five agents race for a new
// record, each sends one command and reads nothing, and each loser's
// HeldError names the winner as the event named it. A claim on a released
// record takes a second command (the merge at the revision the conflict
// named), and a claim on one's own lease renews it the same way.
func TestClient_Claim_OneCommandNoRead(t *testing.T) {
	e := newEnv(t)
	e.start(fastConfig())
	ctx := ctxT(t)
	const id = "T-race"
	evtSubj, err := subjects.StateEvt("task", id)
	require.NoError(t, err)
	getSubj, err := subjects.StateGet("task", id)
	require.NoError(t, err)
	var gets, evts atomic.Int64
	gsub, err := e.nc.Subscribe(getSubj, func(*nats.Msg) { gets.Add(1) })
	require.NoError(t, err)
	t.Cleanup(func() { _ = gsub.Unsubscribe() })
	esub, err := e.nc.Subscribe(evtSubj, func(*nats.Msg) { evts.Add(1) })
	require.NoError(t, err)
	t.Cleanup(func() { _ = esub.Unsubscribe() })
	require.NoError(t, e.nc.Flush())
	// waitEvents waits until n events of the record were seen in all, and
	// checks that no more came.
	waitEvents := func(n int64) {
		t.Helper()
		require.Eventually(t, func() bool { return evts.Load() >= n }, 5*time.Second, time.Millisecond)
		require.NoError(t, e.nc.Flush())
		assert.Equal(t, n, evts.Load(), "events of %s", id)
	}

	const agents = 5
	type result struct {
		rec state.Record
		err error
	}
	results := make(chan result, agents)
	start := make(chan struct{})
	clients := make(map[string]*state.Client, agents)
	for i := range agents {
		c := e.client(fmt.Sprintf("agent-%d", i))
		clients[c.Agent()] = c
		go func() {
			<-start
			rec, err := c.Claim(ctx, "task", id, time.Minute, map[string]any{"status": "in_progress"})
			results <- result{rec, err}
		}()
	}
	close(start)
	var won state.Record
	var held []*state.HeldError
	for range agents {
		r := <-results
		var h *state.HeldError
		switch {
		case r.err == nil:
			won = r.rec
		case errors.As(r.err, &h):
			held = append(held, h)
		default:
			t.Fatalf("claim: %v", r.err)
		}
	}
	require.NotEmpty(t, won.Holder(), "nobody won")
	require.Len(t, held, agents-1)
	for _, h := range held {
		assert.ErrorIs(t, h, state.ErrConflict)
		assert.Equal(t, won.Holder(), h.Record.Holder())
		assert.Equal(t, won.Rev, h.Record.Rev)
		assert.Equal(t, won.UpdatedBy, h.Record.UpdatedBy)
		require.NotNil(t, h.Record.ExpiresAt)
		assert.True(t, won.ExpiresAt.Equal(*h.Record.ExpiresAt))
		assert.Equal(t, "task", h.Record.Kind)
		assert.Equal(t, id, h.Record.ID)
	}
	waitEvents(agents) // one command each
	assert.Zero(t, gets.Load(), "claims read the record")

	// Released, the record is taken at its revision: by another client a
	// lost create, then the merge, keeping the fields.
	winner := clients[won.Holder()]
	rel, err := winner.Release(ctx, "task", id, won.Rev)
	require.NoError(t, err)
	waitEvents(agents + 1)
	require.Eventually(t, func() bool { return gets.Load() == 1 }, 5*time.Second, time.Millisecond, "release reads the record once")
	other := e.client("agent-next")
	rec, err := other.Claim(ctx, "task", id, time.Minute, nil)
	require.NoError(t, err)
	assert.Equal(t, rel.Rev+1, rec.Rev)
	assert.Equal(t, "agent-next", rec.Holder())
	assert.JSONEq(t, `"in_progress"`, string(rec.Fields["status"]))
	waitEvents(agents + 3)

	// Claimed again by the client that holds it: renewed, one revision
	// on, in one command (the merge at the revision it claimed).
	again, err := other.Claim(ctx, "task", id, 2*time.Minute, nil)
	require.NoError(t, err)
	assert.Equal(t, rec.Rev+1, again.Rev)
	assert.True(t, again.ExpiresAt.After(*rec.ExpiresAt))
	waitEvents(agents + 4)

	// Released and claimed again by the same client: one command.
	rel, err = other.Release(ctx, "task", id, again.Rev)
	require.NoError(t, err)
	waitEvents(agents + 5)
	back, err := other.Claim(ctx, "task", id, time.Minute, nil)
	require.NoError(t, err)
	assert.Equal(t, rel.Rev+1, back.Rev)
	waitEvents(agents + 6)

	// A stale hint costs one conflict: the first winner's client still
	// remembers the revision it released at, the record moved on since.
	took, err := winner.Claim(ctx, "task", id, time.Minute, nil)
	var h *state.HeldError
	require.ErrorAs(t, err, &h, "held by agent-next: %+v", took)
	assert.Equal(t, "agent-next", h.Record.Holder())
	assert.Equal(t, back.Rev, h.Record.Rev)
	waitEvents(agents + 7)
	assert.Equal(t, int64(2), gets.Load(), "only the releases read the record")
}

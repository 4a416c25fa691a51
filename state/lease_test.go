package state_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/state"
	"github.com/codi2/codi2/subjects"
)

func TestService_Lease_Expires(t *testing.T) {
	e := newEnv(t)
	w := e.watchEvents()
	e.start(fastConfig())
	c := e.client("agent-1")
	ctx := ctxT(t)

	rec, err := c.Claim(ctx, "task", "t1", 100*time.Millisecond, map[string]any{"owner": "agent-1"})
	require.NoError(t, err)
	require.NotNil(t, rec.ExpiresAt)
	assert.Equal(t, rec.UpdatedAt.Add(100*time.Millisecond), *rec.ExpiresAt)

	require.Eventually(t, func() bool {
		_, err := c.Get(ctx, "task", "t1", 0)
		return err != nil
	}, 5*time.Second, 5*time.Millisecond)
	_, err = c.Get(ctx, "task", "t1", 0)
	require.ErrorIs(t, err, state.ErrNotFound)

	var exp recvEvent
	require.Eventually(t, func() bool {
		for _, ev := range w.all() {
			if ev.ev.Op == state.OpExpire {
				exp = ev
				return true
			}
		}
		return false
	}, 5*time.Second, time.Millisecond)
	assert.Equal(t, "codi.state.evt.task.t1", exp.subject)
	assert.Equal(t, state.StatusApplied, exp.ev.Status)
	assert.Equal(t, state.Actor, exp.ev.Actor)
	assert.Equal(t, uint64(2), exp.ev.Rev)

	// The expiry is audited once, with its own Msg-Id.
	require.Eventually(t, func() bool {
		_, ok := e.auditByID()["state-expire-"+e.generation()+"-task.t1.2"]
		return ok
	}, 5*time.Second, 10*time.Millisecond)
	a := e.auditByID()["state-expire-"+e.generation()+"-task.t1.2"]
	assert.Equal(t, "expire", a.body["op"])
	assert.Equal(t, "codi-state", a.body["actor"])
	assert.Equal(t, "codi.audit.log.codi-state.state.task", a.subject)

	// A new claim after the expiry continues the revisions.
	rec, err = c.Claim(ctx, "task", "t1", time.Minute, nil)
	require.NoError(t, err)
	assert.Equal(t, uint64(3), rec.Rev)
}

func TestClient_Refresh_KeepsLease(t *testing.T) {
	e := newEnv(t)
	e.start(fastConfig())
	c := e.client("agent-1")
	ctx := ctxT(t)

	held, err := c.Claim(ctx, "task", "held", 100*time.Millisecond, map[string]any{"owner": "agent-1"})
	require.NoError(t, err)
	refreshed, err := c.Refresh(ctx, "task", "held", held.Rev, time.Hour)
	require.NoError(t, err)
	assert.Equal(t, held.Rev+1, refreshed.Rev)
	assert.Equal(t, held.Fields, refreshed.Fields)
	require.NotNil(t, refreshed.ExpiresAt)
	assert.True(t, refreshed.ExpiresAt.After(held.ExpiresAt.Add(30*time.Minute)))

	// A lease claimed later with a short ttl expires; the refreshed one stays.
	_, err = c.Claim(ctx, "task", "control", 150*time.Millisecond, nil)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err := c.Get(ctx, "task", "control", 0)
		return err != nil
	}, 5*time.Second, 5*time.Millisecond)
	got, err := c.Get(ctx, "task", "held", 0)
	require.NoError(t, err)
	assert.Equal(t, refreshed.Rev, got.Rev)

	// Refresh with a stale rev fails: the holder lost it.
	_, err = c.Refresh(ctx, "task", "held", held.Rev, time.Hour)
	require.ErrorIs(t, err, state.ErrConflict)
	_, err = c.Refresh(ctx, "task", "held", got.Rev, 0)
	require.ErrorIs(t, err, state.ErrBadRequest)

	// Release with the current rev ends the lease and keeps the record; a
	// second release with that rev conflicts; anyone may claim it again.
	other := e.client("agent-2")
	_, err = other.Release(ctx, "task", "held", got.Rev)
	var heldErr *state.HeldError
	require.ErrorAs(t, err, &heldErr, "only the holder releases")
	_, err = other.Refresh(ctx, "task", "held", got.Rev, time.Hour)
	require.ErrorAs(t, err, &heldErr, "only the holder renews")
	assert.Equal(t, "agent-1", heldErr.Record.Holder())
	released, err := c.Release(ctx, "task", "held", got.Rev)
	require.NoError(t, err)
	assert.Nil(t, released.ExpiresAt)
	assert.Empty(t, released.Holder())
	assert.Equal(t, got.Fields["owner"], released.Fields["owner"], "the other fields stay")
	assert.NotContains(t, released.Fields, state.HolderField)
	_, err = c.Release(ctx, "task", "held", released.Rev)
	require.ErrorIs(t, err, state.ErrNoLease)
	_, err = c.Refresh(ctx, "task", "held", released.Rev, time.Hour)
	require.ErrorIs(t, err, state.ErrNoLease, "nothing to renew: claim it")
	reclaimed, err := other.Claim(ctx, "task", "held", time.Hour, map[string]any{"assignee": "agent-2"})
	require.NoError(t, err)
	assert.Equal(t, "agent-2", reclaimed.UpdatedBy)
	assert.NotNil(t, reclaimed.ExpiresAt)
	assert.Equal(t, "agent-2", reclaimed.Holder())
	// The conflict event itself names who has the record.
	ev, err := c.Apply(ctx, "task", "held", state.Command{Op: state.OpMerge, ExpectRev: state.Expect(0)})
	require.ErrorIs(t, err, state.ErrConflict)
	assert.Equal(t, "agent-2", ev.Holder)
	assert.Equal(t, "agent-2", ev.UpdatedBy)
	require.NotNil(t, ev.ExpiresAt)
	assert.Equal(t, reclaimed.ExpiresAt.UTC(), ev.ExpiresAt.UTC())
	again, err := other.Claim(ctx, "task", "held", 2*time.Hour, nil)
	require.NoError(t, err, "the holder's own claim renews it")
	assert.Equal(t, reclaimed.Rev+1, again.Rev)
	reclaimed = again
	_, err = c.Claim(ctx, "task", "held", time.Hour, nil)
	require.ErrorAs(t, err, &heldErr)
	require.ErrorIs(t, err, state.ErrConflict)
	assert.Equal(t, "agent-2", heldErr.Record.UpdatedBy)
	assert.Contains(t, err.Error(), "held by agent-2")
	require.NoError(t, other.Delete(ctx, "task", "held", reclaimed.Rev))
	_, err = c.Get(ctx, "task", "held", 0)
	require.ErrorIs(t, err, state.ErrNotFound)
	// What a user reads: what was not found, not the request behind it
	// ("state: not found: codi.state.get.task.held: 404 task held not
	// found" before).
	assert.Equal(t, "state: task held not found", err.Error())
}

func TestClient_Apply_RevGrowsAcrossDeleteAndRecreate(t *testing.T) {
	e := newEnv(t)
	e.start(fastConfig())
	c := e.client("agent-1")
	ctx := ctxT(t)

	var revs []uint64
	for i := 0; i < 3; i++ {
		rec, err := c.Claim(ctx, "task", "t1", time.Hour, map[string]any{"round": i})
		require.NoError(t, err)
		revs = append(revs, rec.Rev)
		require.NoError(t, c.Delete(ctx, "task", "t1", rec.Rev))
	}
	assert.Equal(t, []uint64{1, 3, 5}, revs)

	// A put without expect_rev on a tombstone also continues.
	ev, err := c.Apply(ctx, "task", "t1", state.Command{Op: state.OpPut})
	require.NoError(t, err)
	assert.Equal(t, uint64(7), ev.Rev)
	assert.Empty(t, ev.Record.Fields)
}

// A merge without ttl_ms keeps the lease; ttl_ms 0 removes it; a put
// without ttl_ms has none.
func TestClient_Apply_LeaseFields(t *testing.T) {
	e := newEnv(t)
	e.start(fastConfig())
	c := e.client("agent-1")
	ctx := ctxT(t)

	rec, err := c.Claim(ctx, "task", "t1", time.Hour, nil)
	require.NoError(t, err)
	ev, err := c.Apply(ctx, "task", "t1", state.Command{Op: state.OpMerge, Fields: map[string]any{"a": 1}})
	require.NoError(t, err)
	assert.Equal(t, rec.ExpiresAt, ev.Record.ExpiresAt)

	seq := e.publish(cmdSubject(t, "task", "t1", "agent-1"), `{"op":"merge","ttl_ms":0}`)
	got, err := c.Get(ctx, "task", "t1", seq)
	require.NoError(t, err)
	assert.Nil(t, got.ExpiresAt)

	_, err = c.Claim(ctx, "task", "t2", time.Hour, nil)
	require.NoError(t, err)
	ev, err = c.Apply(ctx, "task", "t2", state.Command{Op: state.OpPut})
	require.NoError(t, err)
	assert.Nil(t, ev.Record.ExpiresAt)
}

// A command stored after a lease ended sees the record expired, even if the
// service had not swept it yet (here: it was not running).
func TestService_Lease_ExpiresBeforeLaterCommand(t *testing.T) {
	e := newEnv(t)
	w := e.watchEvents()
	subj := cmdSubject(t, "task", "t1", "agent-1")
	first := e.publish(subj, `{"op":"put","fields":{},"expect_rev":0,"ttl_ms":20}`)
	// Let the lease end between the two stored times.
	time.Sleep(40 * time.Millisecond)
	second := e.publish(cmdSubject(t, "task", "t1", "agent-2"), `{"op":"put","expect_rev":0,"fields":{"owner":"agent-2"}}`)
	e.start(fastConfig())
	e.waitApplied(second)

	assert.Equal(t, uint64(1), w.waitSeq(t, first).ev.Rev)
	got := w.waitSeq(t, second)
	assert.Equal(t, state.StatusApplied, got.ev.Status)
	assert.Equal(t, uint64(3), got.ev.Rev)
	var expired []recvEvent
	for _, ev := range w.all() {
		if ev.ev.Op == state.OpExpire {
			expired = append(expired, ev)
		}
	}
	require.Len(t, expired, 1)
	assert.Equal(t, uint64(2), expired[0].ev.Rev)
	assert.Equal(t, first, expired[0].ev.Seq)

	rec, err := e.client("x").Get(context.Background(), "task", "t1", 0)
	require.NoError(t, err)
	assert.Equal(t, "agent-2", rec.UpdatedBy)
}

// While a refresh stored before the lease's end is still in the stream (the
// consumer is paused), the sweep does not expire the lease; once delivered,
// the refresh applies.
func TestService_Lease_SweepWaitsForStoredCommands(t *testing.T) {
	e := newEnv(t)
	w := e.watchEvents()
	e.start(fastConfig())
	c := e.client("agent-1")
	ctx := ctxT(t)
	rec, err := c.Claim(ctx, "task", "t1", 200*time.Millisecond, nil)
	require.NoError(t, err)

	// Deliveries stop until well after the lease's end, while sweeps are due.
	_, err = e.js.PauseConsumer(ctx, bus.StreamState, state.DefaultConsumer, rec.ExpiresAt.Add(300*time.Millisecond))
	require.NoError(t, err)
	refresh := e.publish(cmdSubject(t, "task", "t1", "agent-1"), fmt.Sprintf(`{"op":"merge","expect_rev":%d,"ttl_ms":3600000}`, rec.Rev))
	require.True(t, time.Now().Before(*rec.ExpiresAt), "the refresh was stored in time")

	got := w.waitSeq(t, refresh)
	assert.Equal(t, state.StatusApplied, got.ev.Status)
	assert.Equal(t, rec.Rev+1, got.ev.Rev)
	for _, ev := range w.all() {
		assert.NotEqual(t, state.OpExpire, ev.ev.Op)
	}
}

// Leases that end together are expired in bounded slices with the waiting
// commands applied between them, so a claim does not wait for every expiry
// (issue 12, input 8). The leases here are all due when the service
// starts, behind a command stored after they ended, as in a busy system; a
// claim sent once the first expiries are out must come before most of them.
func TestService_Lease_ExpiresInSlices(t *testing.T) {
	const leases = 3000
	e := newEnv(t)
	cfg := fastConfig()
	r := e.start(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Long enough that no lease ends before the service stops, even on a
	// loaded machine or under the race detector (3 s was not): this test
	// counts every expiry after the restart.
	const ttl = 8 * time.Second
	start := time.Now()
	futs := make([]jetstream.PubAckFuture, 0, leases)
	for i := range leases {
		f, err := e.js.PublishAsync(cmdSubject(t, "lease", fmt.Sprintf("l%d", i), "agent-1"),
			fmt.Appendf(nil, `{"op":"put","fields":{},"ttl_ms":%d}`, ttl.Milliseconds()))
		require.NoError(t, err)
		futs = append(futs, f)
	}
	var last uint64
	for _, f := range futs {
		select {
		case ack := <-f.Ok():
			last = max(last, ack.Sequence)
		case err := <-f.Err():
			require.NoError(t, err)
		case <-ctx.Done():
			t.Fatal("no PubAck")
		}
	}
	e.waitApplied(last)
	r.stop(t)
	require.Less(t, time.Since(start), ttl, "the leases were made and the service stopped before the first lease ended")
	due := time.Now().Add(ttl)
	require.Eventually(t, func() bool { return time.Now().After(due) }, 2*ttl, 10*time.Millisecond)
	// A command stored after the leases ended: once it is applied, every
	// lease is due without waiting for the stream, as in a busy system.
	e.publish(cmdSubject(t, "task", "other", "agent-3"), `{"op":"put","fields":{}}`)

	var (
		mu       sync.Mutex
		expired  int
		atClaim  = -1
		firstOut = make(chan struct{})
		once     sync.Once
	)
	sub, err := e.nc.Subscribe(subjects.StateEvtWildcard, func(m *nats.Msg) {
		var ev state.Event
		if json.Unmarshal(m.Data, &ev) != nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		switch {
		case ev.Op == state.OpExpire:
			expired++
			once.Do(func() { close(firstOut) })
		case ev.Actor == "agent-2":
			atClaim = expired
		}
	})
	require.NoError(t, err)
	defer sub.Unsubscribe()
	require.NoError(t, e.nc.Flush())
	e.start(cfg)
	select {
	case <-firstOut:
	case <-ctx.Done():
		t.Fatal("no expiry")
	}
	mu.Lock()
	before := expired
	mu.Unlock()
	claim := e.publish(cmdSubject(t, "task", "probe", "agent-2"), `{"op":"put","fields":{},"expect_rev":0}`)
	e.waitApplied(claim)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return atClaim >= 0
	}, 10*time.Second, 5*time.Millisecond, "no event for the claim")
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return expired == leases
	}, 10*time.Second, 5*time.Millisecond, "not every lease expired")
	mu.Lock()
	defer mu.Unlock()
	t.Logf("expiries: %d before the claim was sent, %d before it was applied", before, atClaim)
	assert.Less(t, atClaim-before, leases/2, "the claim waited for most of the expiries")
	assert.Less(t, atClaim, leases, "the claim was applied before the last expiry")
}

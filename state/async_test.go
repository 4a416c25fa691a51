package state_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/state"
	"github.com/codi2/codi2/subjects"
)

// heldStore is a real bbolt store whose commits are split the way a
// write-ahead log splits them (kv.AsyncStore): UpdateAsync commits, and
// its durable function then waits until the test lets the "fsync" end,
// with the error the test gives. It injects the one fault a split commit
// adds: a transaction applied and seen, not yet durable.
// Until armed, durable reports nil at once.
type heldStore struct {
	kv.Store
	armed   atomic.Bool
	release chan error // one value per durable call once armed; closed: nil
}

func (h *heldStore) UpdateAsync(ctx context.Context, fn func(tx kv.Txn) error) (func() error, error) {
	if err := h.Store.Update(ctx, fn); err != nil {
		return nil, err
	}
	if !h.armed.Load() {
		return func() error { return nil }, nil
	}
	return func() error { return <-h.release }, nil
}

// On a store with a split commit the state service answers a command once
// its transaction is applied, before it is durable, and only then moves
// the committed watermark and acks the command (README, durability): the
// outcome is decided, because commands apply in stream order.
func TestService_AnswersBeforeDurable(t *testing.T) {
	e := newEnv(t)
	store := &heldStore{Store: e.store, release: make(chan error)}
	e.startOn(store, fastConfig())
	store.armed.Store(true)
	c := e.client("agent-1")

	ev, err := c.Apply(ctxT(t), "task", "t1", state.Command{Op: state.OpPut, Fields: map[string]any{"status": "open"}})
	require.NoError(t, err, "the answer must not wait for the fsync")
	require.Equal(t, uint64(1), ev.Rev)

	wm, err := c.Status(ctxT(t))
	require.NoError(t, err)
	assert.Less(t, wm, ev.Seq, "the committed watermark waits for the fsync")
	cons, err := e.js.Consumer(ctxT(t), bus.StreamState, state.DefaultConsumer)
	require.NoError(t, err)
	info, err := cons.Info(ctxT(t))
	require.NoError(t, err)
	assert.Equal(t, 1, info.NumAckPending, "the command is acked only once durable")

	close(store.release) // every fsync from now on ends at once
	e.waitApplied(ev.Seq)
	require.Eventually(t, func() bool {
		info, err := cons.Info(ctxT(t))
		return err == nil && info.NumAckPending == 0 && info.AckFloor.Stream == ev.Seq
	}, 10*time.Second, 10*time.Millisecond)
}

// A commit that cannot be made durable stops the service with an error
// naming the batch; the command stays unacknowledged, so that the next
// start applies it again.
func TestService_DurableFailureStops(t *testing.T) {
	e := newEnv(t)
	store := &heldStore{Store: e.store, release: make(chan error, 1)}
	store.release <- errors.New("fsync: input/output error")
	done := e.runToFailure(store)
	require.Eventually(t, func() bool {
		_, err := e.nc.Request(subjects.StateStatus, nil, 200*time.Millisecond)
		return err == nil
	}, 10*time.Second, 5*time.Millisecond)
	store.armed.Store(true)
	seq := e.publish("codi.state.cmd.task.t1.agent-1", `{"op":"put","fields":{"a":1}}`)
	err := runErr(t, done)
	require.ErrorContains(t, err, "not made durable")
	require.ErrorContains(t, err, "input/output error")

	cons, err := e.js.Consumer(ctxT(t), bus.StreamState, state.DefaultConsumer)
	require.NoError(t, err)
	info, err := cons.Info(ctxT(t))
	require.NoError(t, err)
	assert.Less(t, info.AckFloor.Stream, seq, "a command not made durable is never acked")
}

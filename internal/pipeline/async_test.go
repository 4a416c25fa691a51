package pipeline_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/internal/pipeline"
)

// asyncHandler commits like handler (a real bbolt transaction), but its
// batches become "durable" only when the test sends their fsync's result
// on release, one value per batch, in order: the split commit of a
// write-ahead log (kv.AsyncStore), with the fsync in the test's hands.
type asyncHandler struct {
	*handler
	release     chan error
	releaseOnce sync.Once

	mu      sync.Mutex
	durable []uint64 // last seq of each batch Durable reported, in order
	calls   int      // durable functions started
	already bool     // CommitAsync reports its batches durable already (nil)
	durErr  error    // Durable's error
}

func newAsyncHandler(t *testing.T) *asyncHandler {
	return &asyncHandler{handler: newHandler(t), release: make(chan error)}
}

// startAsync starts a pipeline on h whose fsyncs all succeed at once from
// the test's end on, so that a test failing with a batch in flight fails
// instead of hanging in Run's wait for it (cleanups run last registered
// first: this one before env.start's).
func (e *env) startAsync(cfg pipeline.Config, h *asyncHandler) *running {
	r := e.start(cfg, h, nil)
	e.t.Cleanup(h.releaseAll)
	return r
}

// releaseAll makes every fsync from now on succeed at once.
func (h *asyncHandler) releaseAll() { h.releaseOnce.Do(func() { close(h.release) }) }

func (h *asyncHandler) CommitAsync(ctx context.Context, batch []*pipeline.Msg[string]) (func() error, error) {
	if err := h.handler.Commit(ctx, batch); err != nil {
		return nil, err
	}
	h.mu.Lock()
	already := h.already
	h.mu.Unlock()
	if already {
		return nil, nil
	}
	return func() error {
		h.mu.Lock()
		h.calls++
		h.mu.Unlock()
		return <-h.release
	}, nil
}

func (h *asyncHandler) Durable(_ context.Context, batch []*pipeline.Msg[string]) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.durErr != nil {
		return h.durErr
	}
	h.durable = append(h.durable, batch[len(batch)-1].Seq)
	return nil
}

func (h *asyncHandler) durableSeqs() []uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]uint64(nil), h.durable...)
}

func (e *env) ackState(t *testing.T) (pending int, floor uint64) {
	t.Helper()
	cons, err := e.js.Consumer(context.Background(), testStream, "pipe")
	require.NoError(t, err)
	info, err := cons.Info(context.Background())
	require.NoError(t, err)
	return info.NumAckPending, info.AckFloor.Stream
}

// With an AsyncHandler the writer commits the next batch while the last
// one's fsync is in flight, and a batch is reported durable (Durable) and
// acked only once its fsync returned, in commit order.
func TestPipeline_Async_AckAfterDurable(t *testing.T) {
	e := newEnv(t)
	h := newAsyncHandler(t)
	r := e.startAsync(testConfig(jetstream.AckExplicitPolicy), h)

	e.publish(1)
	waitCommitted(t, h.handler, []uint64{1})
	e.publish(1)
	waitCommitted(t, h.handler, []uint64{1, 2}) // committed while 1 is not durable
	pending, floor := e.ackState(t)
	assert.Equal(t, 2, pending, "nothing is acked before its fsync")
	assert.Zero(t, floor)
	assert.Empty(t, h.durableSeqs())

	h.release <- nil
	require.Eventually(t, func() bool { p, f := e.ackState(t); return p == 1 && f == 1 }, 10*time.Second, 5*time.Millisecond)
	assert.Equal(t, []uint64{1}, h.durableSeqs())
	h.release <- nil
	require.Eventually(t, func() bool { p, f := e.ackState(t); return p == 0 && f == 2 }, 10*time.Second, 5*time.Millisecond)
	assert.Equal(t, []uint64{1, 2}, h.durableSeqs())
	h.releaseAll()
	require.NoError(t, r.stop(t))
}

// An idle writer with a batch in flight commits the next delivery at
// once: the tail check, which waits for the batches in flight, is not due
// until none is (it held batch 2 behind batch 1's fsync, CI 2026-11-30).
func TestPipeline_Async_IdleWithBatchInFlight(t *testing.T) {
	e := newEnv(t)
	h := newAsyncHandler(t)
	r := e.startAsync(testConfig(jetstream.AckExplicitPolicy), h)

	e.publish(1)
	waitCommitted(t, h.handler, []uint64{1})
	time.Sleep(4 * testConfig(jetstream.AckExplicitPolicy).TailCheckInterval) // idle past a tail check
	e.publish(1)
	require.Eventually(t, func() bool { return len(h.committed()) == 2 }, 5*time.Second, 5*time.Millisecond,
		"batch 2 committed while batch 1's fsync is held")
	assert.Empty(t, h.durableSeqs())
	h.releaseAll()
	require.Eventually(t, func() bool { p, f := e.ackState(t); return p == 0 && f == 2 }, 10*time.Second, 5*time.Millisecond)
	assert.Equal(t, []uint64{1, 2}, h.durableSeqs())
	require.NoError(t, r.stop(t))
}

// The writer holds at most MaxInFlight batches not yet durable: the next
// one waits for the oldest fsync.
func TestPipeline_Async_BoundedInFlight(t *testing.T) {
	e := newEnv(t)
	h := newAsyncHandler(t)
	cfg := testConfig(jetstream.AckExplicitPolicy)
	cfg.MaxBatch = 1
	r := e.startAsync(cfg, h)

	e.publish(pipeline.MaxInFlight + 2)
	waitCommitted(t, h.handler, seqs(1, pipeline.MaxInFlight))
	// The writer now waits for the oldest fsync: one more batch is not
	// committed however long it waits (checked after the fsync it waits
	// for starts and a further delivery had time to arrive).
	require.Eventually(t, func() bool { h.mu.Lock(); defer h.mu.Unlock(); return h.calls >= 1 }, 10*time.Second, 5*time.Millisecond)
	assert.Never(t, func() bool { return len(h.committed()) > pipeline.MaxInFlight }, 200*time.Millisecond, 10*time.Millisecond)
	h.release <- nil
	waitCommitted(t, h.handler, seqs(1, pipeline.MaxInFlight+1))
	h.releaseAll()
	waitCommitted(t, h.handler, seqs(1, pipeline.MaxInFlight+2))
	require.Eventually(t, func() bool { return len(h.durableSeqs()) == pipeline.MaxInFlight+2 }, 10*time.Second, 5*time.Millisecond)
	assert.Equal(t, seqs(1, pipeline.MaxInFlight+2), h.durableSeqs())
	require.NoError(t, r.stop(t))
}

var (
	errFsync     = errors.New("fsync: input/output error")
	errWatermark = errors.New("watermark: disk full")
)

// A failed fsync, or a handler whose Durable fails after it (its
// watermark cannot be written), stops Run with that error, and the batch
// is not acked.
func TestPipeline_Async_DurableFailureStops(t *testing.T) {
	for _, tt := range []struct {
		name                 string
		fsyncErr, hErr, want error
	}{
		{"fsync", errFsync, nil, errFsync},
		{"handler", nil, errWatermark, errWatermark},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			h := newAsyncHandler(t)
			h.durErr = tt.hErr
			r := e.startAsync(testConfig(jetstream.AckExplicitPolicy), h)
			e.publish(1)
			waitCommitted(t, h.handler, []uint64{1})
			h.release <- tt.fsyncErr
			select {
			case err := <-r.done:
				require.ErrorIs(t, err, tt.want)
			case <-time.After(10 * time.Second):
				t.Fatal("Run did not stop")
			}
			_, floor := e.ackState(t)
			assert.Zero(t, floor)
			assert.Empty(t, h.durableSeqs())
		})
	}
}

// Stopping waits for the batches in flight: Run returns only after their
// fsync, having reported and acked them.
func TestPipeline_Async_ShutdownWaitsForDurable(t *testing.T) {
	e := newEnv(t)
	h := newAsyncHandler(t)
	r := e.startAsync(testConfig(jetstream.AckExplicitPolicy), h)
	e.publish(1)
	waitCommitted(t, h.handler, []uint64{1})
	r.cancel()
	select {
	case <-r.exited:
		t.Fatal("Run returned with a batch in flight")
	case <-time.After(100 * time.Millisecond):
	}
	h.release <- nil
	select {
	case err := <-r.done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	assert.Equal(t, []uint64{1}, h.durableSeqs())
	// Run flushed its ack; the server's consumer takes acks from a queue
	// of its own, so it may still be on its way there.
	require.Eventually(t, func() bool {
		_, floor := e.ackState(t)
		return floor == 1
	}, 5*time.Second, 5*time.Millisecond, "the batch is acked")
}

// A batch CommitAsync reports durable already (a store without a split
// commit) is reported and acked at once, unless batches are in flight: then
// it waits its turn behind them. An error of CommitAsync stops Run.
func TestPipeline_Async_DurableAlready(t *testing.T) {
	e := newEnv(t)
	h := newAsyncHandler(t)
	h.already = true
	r := e.startAsync(testConfig(jetstream.AckExplicitPolicy), h)
	e.publish(1)
	require.Eventually(t, func() bool { p, f := e.ackState(t); return p == 0 && f == 1 }, 10*time.Second, 5*time.Millisecond)
	assert.Equal(t, []uint64{1}, h.durableSeqs())

	h.mu.Lock()
	h.already = false
	h.mu.Unlock()
	e.publish(1)
	waitCommitted(t, h.handler, []uint64{1, 2})
	h.mu.Lock()
	h.already = true
	h.mu.Unlock()
	e.publish(1)
	waitCommitted(t, h.handler, []uint64{1, 2, 3})
	assert.Equal(t, []uint64{1}, h.durableSeqs(), "3 waits behind 2's fsync")
	h.release <- nil
	require.Eventually(t, func() bool { return len(h.durableSeqs()) == 3 }, 10*time.Second, 5*time.Millisecond)
	assert.Equal(t, []uint64{1, 2, 3}, h.durableSeqs())

	boom := errors.New("commit failed")
	h.mu.Lock()
	h.commitErr = boom
	h.mu.Unlock()
	e.publish(1)
	select {
	case err := <-r.done:
		require.ErrorIs(t, err, boom)
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop")
	}
}

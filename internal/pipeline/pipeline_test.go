package pipeline_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/bus/bustest"
	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/internal/kv/kvtest"
	"github.com/codi2/codi2/internal/pipeline"
)

const (
	testStream  = "PIPE"
	testSubject = "pipe.>"
)

// handler commits each message's stream seq to a real bbolt store, with
// the watermark, and records what the pipeline asked of it.
type handler struct {
	store kv.Store

	mu        sync.Mutex
	applied   uint64
	at        time.Time
	seqs      []uint64 // committed, in order
	values    []string
	batches   []int
	resumed   []bool
	replaced  [][3]uint64 // keep, first, last
	lost      [][2]uint64
	ticks     int
	idleTicks int
	wake      time.Time
	signal    chan struct{}
	commitErr error
	resumeErr error
	lostErr   error
	tickErr   error
	busyErr   error // Tick's error after a batch
	// gate, when set, holds Commit until it is closed; entered is closed
	// when Commit first waits on it.
	gate, entered chan struct{}
}

func newHandler(t *testing.T) *handler { return &handler{store: kvtest.NewBolt(t)} }

var watermarkKey = kv.Tuple{"watermark"}.Pack()

func (h *handler) setWatermark(ctx context.Context, seq uint64, extra func(tx kv.Txn) error) error {
	return h.store.Update(ctx, func(tx kv.Txn) error {
		if extra != nil {
			if err := extra(tx); err != nil {
				return err
			}
		}
		return tx.Set(watermarkKey, binary.BigEndian.AppendUint64(nil, seq))
	})
}

func (h *handler) Watermark() (uint64, time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.applied, h.at
}

func (h *handler) Resume(ctx context.Context, _ jetstream.Stream, keep uint64, moved bool) error {
	h.mu.Lock()
	h.resumed = append(h.resumed, moved)
	err := h.resumeErr
	h.mu.Unlock()
	if err != nil {
		return err
	}
	if !moved {
		return nil
	}
	if err := h.setWatermark(ctx, keep, nil); err != nil {
		return err
	}
	h.mu.Lock()
	h.applied = keep
	h.mu.Unlock()
	return nil
}

func (h *handler) Replace(ctx context.Context, _ jetstream.Stream, keep, first, last uint64) error {
	if err := h.setWatermark(ctx, keep, nil); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.replaced = append(h.replaced, [3]uint64{keep, first, last})
	h.applied = keep
	return nil
}

func (h *handler) Commit(ctx context.Context, batch []*pipeline.Msg[string]) error {
	h.mu.Lock()
	err, gate, entered := h.commitErr, h.gate, h.entered
	h.entered = nil
	h.mu.Unlock()
	if entered != nil {
		close(entered)
	}
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			// As a store transaction ends when its context does.
			return fmt.Errorf("store: get: %w", ctx.Err())
		}
	}
	if err != nil {
		return err
	}
	last := batch[len(batch)-1]
	err = h.setWatermark(ctx, last.Seq, func(tx kv.Txn) error {
		for _, m := range batch {
			if err := tx.Set(kv.Tuple{"msg", int64(m.Seq)}.Pack(), []byte(m.Value)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, m := range batch {
		h.seqs = append(h.seqs, m.Seq)
		h.values = append(h.values, m.Value)
	}
	h.batches = append(h.batches, len(batch))
	h.applied, h.at = last.Seq, last.Time
	return nil
}

func (h *handler) Lost(ctx context.Context, first, last uint64) error {
	h.mu.Lock()
	err := h.lostErr
	h.mu.Unlock()
	if err != nil {
		return err
	}
	if err := h.setWatermark(ctx, last, nil); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lost = append(h.lost, [2]uint64{first, last})
	h.applied = last
	return nil
}

func (h *handler) Wake(time.Time) (time.Time, <-chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.wake, h.signal
}

func (h *handler) Tick(context.Context, bool) error { return h.tick(false) }

func (h *handler) tick(idle bool) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ticks++
	// Each comes once: the timer's tick clears the wake time, another
	// the channel.
	if idle {
		h.idleTicks++
		h.wake = time.Time{}
	} else {
		h.signal = nil
		if h.busyErr != nil {
			return h.busyErr
		}
	}
	return h.tickErr
}

// idleHandler records whether Tick was idle.
type idleHandler struct{ *handler }

func (h idleHandler) Tick(_ context.Context, idle bool) error { return h.tick(idle) }

func (h *handler) committed() []uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]uint64(nil), h.seqs...)
}

func prepare(m jetstream.Msg, _ *jetstream.MsgMetadata) (string, int) {
	return string(m.Data()), len(m.Data())
}

type env struct {
	t  *testing.T
	b  *bus.Bus
	nc *nats.Conn
	js jetstream.JetStream
}

func newEnv(t *testing.T) *env {
	b := bustest.Run(t)
	nc := bustest.Connect(t, b)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	e := &env{t: t, b: b, nc: nc, js: js}
	e.createStream()
	return e
}

func (e *env) createStream() {
	_, err := e.js.CreateOrUpdateStream(context.Background(), jetstream.StreamConfig{Name: testStream, Subjects: []string{testSubject}, Storage: jetstream.FileStorage})
	require.NoError(e.t, err)
}

func (e *env) publish(n int) (last uint64) {
	for i := range n {
		ack, err := e.js.Publish(context.Background(), "pipe.x", []byte("m"+strconv.Itoa(i)))
		require.NoError(e.t, err)
		last = ack.Sequence
	}
	return last
}

func testConfig(ack jetstream.AckPolicy) pipeline.Config {
	return pipeline.Config{
		Name: "test", Stream: testStream, Subject: testSubject,
		Consumer:      jetstream.ConsumerConfig{Durable: "pipe", AckPolicy: ack, AckWait: 30 * time.Second, MaxDeliver: -1},
		MaxBatch:      10,
		MaxBatchBytes: 1 << 20,
		MaxBatchWait:  5 * time.Millisecond,
		PullMessages:  20, Buffer: 10,
		ShutdownTimeout:   5 * time.Second,
		TailCheckInterval: 50 * time.Millisecond,
	}
}

// running is a pipeline running in the background.
type running struct {
	cancel context.CancelFunc
	done   chan error    // Run's result
	exited chan struct{} // closed once Run has returned
}

func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return")
		return nil
	}
}

func (e *env) start(cfg pipeline.Config, h pipeline.Handler[string], problem *bus.Problem) *running {
	e.t.Helper()
	if problem == nil {
		problem = new(bus.Problem)
	}
	p, err := pipeline.New(cfg, e.js, h, prepare, problem, bustest.Logger(e.t))
	require.NoError(e.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(e.t, p.Open(ctx))
	r := &running{cancel: cancel, done: make(chan error, 1), exited: make(chan struct{})}
	go func() {
		defer close(r.exited)
		r.done <- p.Run(ctx)
	}()
	e.t.Cleanup(func() {
		cancel()
		<-r.exited
	})
	return r
}

func seqs(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

func waitCommitted(t *testing.T, h *handler, want []uint64) {
	t.Helper()
	require.Eventually(t, func() bool { return len(h.committed()) >= len(want) }, 20*time.Second, 5*time.Millisecond)
	assert.Equal(t, want, h.committed())
}

// Every message is committed once, in order, in batches of at most
// MaxBatch, and acked; a restart goes on after the watermark (explicit
// acks, and AckAll acking each batch's last message).
func TestPipeline_CommitsInOrderOnceAcrossRestarts(t *testing.T) {
	for _, ack := range []jetstream.AckPolicy{jetstream.AckExplicitPolicy, jetstream.AckAllPolicy} {
		t.Run(ack.String(), func(t *testing.T) {
			e := newEnv(t)
			h := newHandler(t)
			last := e.publish(35)
			r := e.start(testConfig(ack), h, nil)
			waitCommitted(t, h, seqs(1, last))
			require.NoError(t, r.stop(t))
			for _, n := range h.batches {
				assert.LessOrEqual(t, n, 10)
			}
			cons, err := e.js.Consumer(context.Background(), testStream, "pipe")
			require.NoError(t, err)
			info, err := cons.Info(context.Background())
			require.NoError(t, err)
			assert.Zero(t, info.NumAckPending)

			last = e.publish(5)
			r = e.start(testConfig(ack), h, nil)
			waitCommitted(t, h, seqs(1, last))
			require.NoError(t, r.stop(t))
			assert.Equal(t, []bool{false, false}, h.resumed)
		})
	}
}

// A consumer left with unacknowledged deliveries (a crash) is made again
// after the watermark: nothing is skipped or committed twice.
func TestPipeline_ConsumerAheadOfStoreIsRecreated(t *testing.T) {
	e := newEnv(t)
	h := newHandler(t)
	e.publish(10)
	r := e.start(testConfig(jetstream.AckExplicitPolicy), h, nil)
	waitCommitted(t, h, seqs(1, 10))
	require.NoError(t, r.stop(t))

	last := e.publish(10)
	cons, err := e.js.Consumer(context.Background(), testStream, "pipe")
	require.NoError(t, err)
	batch, err := cons.Fetch(5, jetstream.FetchMaxWait(5*time.Second))
	require.NoError(t, err)
	for m := range batch.Messages() {
		_ = m // delivered, never acked
	}
	r = e.start(testConfig(jetstream.AckExplicitPolicy), h, nil)
	waitCommitted(t, h, seqs(1, last))
	require.NoError(t, r.stop(t))
}

// A consumer made with settings that cannot be updated in place (another
// ack policy) is replaced.
func TestPipeline_IncompatibleConsumerIsReplaced(t *testing.T) {
	e := newEnv(t)
	_, err := e.js.CreateConsumer(context.Background(), testStream, jetstream.ConsumerConfig{Durable: "pipe", AckPolicy: jetstream.AckNonePolicy})
	require.NoError(t, err)
	h := newHandler(t)
	last := e.publish(3)
	r := e.start(testConfig(jetstream.AckExplicitPolicy), h, nil)
	waitCommitted(t, h, seqs(1, last))
	require.NoError(t, r.stop(t))
	cons, err := e.js.Consumer(context.Background(), testStream, "pipe")
	require.NoError(t, err)
	assert.Equal(t, jetstream.AckExplicitPolicy, cons.CachedInfo().Config.AckPolicy)
}

// A consumer deleted under the running pipeline is made again after the
// watermark, and a stream deleted under it is recreated with Replace
// told what was lost.
func TestPipeline_ConsumerAndStreamDeleted(t *testing.T) {
	e := newEnv(t)
	h := newHandler(t)
	var problem bus.Problem
	r := e.start(testConfig(jetstream.AckExplicitPolicy), h, &problem)
	last := e.publish(5)
	waitCommitted(t, h, seqs(1, last))

	require.NoError(t, e.js.DeleteConsumer(context.Background(), testStream, "pipe"))
	last = e.publish(5)
	waitCommitted(t, h, seqs(1, last))

	require.NoError(t, e.js.DeleteStream(context.Background(), testStream))
	require.Eventually(t, func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return len(h.replaced) == 1
	}, 30*time.Second, 10*time.Millisecond)
	assert.Equal(t, [3]uint64{0, 11, 10}, h.replaced[0])
	require.Eventually(t, func() bool { return problem.Err() == nil }, 20*time.Second, 10*time.Millisecond)
	ack, err := e.js.Publish(context.Background(), "pipe.x", []byte("new"))
	require.NoError(t, err)
	assert.Equal(t, uint64(1), ack.Sequence)
	require.Eventually(t, func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return len(h.values) == 11 && h.values[10] == "new"
	}, 20*time.Second, 5*time.Millisecond)
	require.NoError(t, r.stop(t))
}

// A stream recreated while the pipeline was stopped moves the watermark
// back at Open (Resume with moved).
func TestPipeline_StreamRecreatedWhileStopped(t *testing.T) {
	e := newEnv(t)
	h := newHandler(t)
	e.publish(5)
	r := e.start(testConfig(jetstream.AckExplicitPolicy), h, nil)
	waitCommitted(t, h, seqs(1, 5))
	require.NoError(t, r.stop(t))
	require.NoError(t, e.js.DeleteStream(context.Background(), testStream))
	e.createStream()
	e.publish(2)
	r = e.start(testConfig(jetstream.AckExplicitPolicy), h, nil)
	waitCommitted(t, h, []uint64{1, 2, 3, 4, 5, 1, 2})
	require.NoError(t, r.stop(t))
	assert.Equal(t, []bool{false, true}, h.resumed)
}

// Messages deleted from the stream reach Commit as a jump in Seq; a
// purged tail is handed to Lost by the idle tail check.
func TestPipeline_HolesAndLostTail(t *testing.T) {
	e := newEnv(t)
	h := newHandler(t)
	e.publish(6)
	stream, err := e.js.Stream(context.Background(), testStream)
	require.NoError(t, err)
	require.NoError(t, stream.DeleteMsg(context.Background(), 3))
	r := e.start(testConfig(jetstream.AckExplicitPolicy), h, nil)
	waitCommitted(t, h, []uint64{1, 2, 4, 5, 6})
	require.NoError(t, r.stop(t))

	e.publish(4) // 7-10
	require.NoError(t, stream.Purge(context.Background()))
	r = e.start(testConfig(jetstream.AckExplicitPolicy), h, nil)
	require.Eventually(t, func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return len(h.lost) == 1
	}, 20*time.Second, 10*time.Millisecond)
	assert.Equal(t, [2]uint64{7, 10}, h.lost[0])
	require.NoError(t, r.stop(t))
}

// A message larger than what is left of MaxBatchBytes starts the next
// batch.
func TestPipeline_MaxBatchBytes(t *testing.T) {
	e := newEnv(t)
	h := newHandler(t)
	e.publish(10) // "m0".."m9": 2 bytes each
	cfg := testConfig(jetstream.AckExplicitPolicy)
	cfg.MaxBatchBytes = 5
	r := e.start(cfg, h, nil)
	waitCommitted(t, h, seqs(1, 10))
	require.NoError(t, r.stop(t))
	for _, n := range h.batches {
		assert.LessOrEqual(t, n, 2)
	}
}

// The handler's timed work runs when Wake's time comes (idle when nothing
// waits) and when its channel is ready; a Commit error stops Run.
func TestPipeline_WakeTickAndErrors(t *testing.T) {
	e := newEnv(t)
	h := newHandler(t)
	signal := make(chan struct{})
	close(signal)
	h.wake, h.signal = time.Now().Add(10*time.Millisecond), signal
	r := e.start(testConfig(jetstream.AckExplicitPolicy), idleHandler{h}, nil)
	require.Eventually(t, func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.idleTicks >= 1 && h.ticks > h.idleTicks && h.signal == nil
	}, 20*time.Second, 5*time.Millisecond)

	h.mu.Lock()
	h.commitErr = errors.New("disk on fire")
	h.mu.Unlock()
	e.publish(1)
	select {
	case err := <-r.done:
		assert.ErrorContains(t, err, "disk on fire")
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not fail")
	}
}

// Open fails on a missing stream; Stop stops a consumer that Open started
// when Run never runs.
func TestPipeline_OpenAndStop(t *testing.T) {
	e := newEnv(t)
	h := newHandler(t)
	cfg := testConfig(jetstream.AckExplicitPolicy)
	cfg.Stream = "MISSING"
	p, err := pipeline.New(cfg, e.js, h, prepare, new(bus.Problem), bustest.Logger(t))
	require.NoError(t, err)
	assert.ErrorIs(t, p.Open(context.Background()), jetstream.ErrStreamNotFound)
	cfg = testConfig(jetstream.AckExplicitPolicy)
	cfg.Consumer.Durable = "bad.name"
	p, err = pipeline.New(cfg, e.js, h, prepare, new(bus.Problem), bustest.Logger(t))
	require.NoError(t, err)
	assert.ErrorContains(t, p.Open(context.Background()), "test: consumer bad.name")

	p, err = pipeline.New(testConfig(jetstream.AckExplicitPolicy), e.js, h, prepare, new(bus.Problem), bustest.Logger(t))
	require.NoError(t, err)
	require.NoError(t, p.Open(context.Background()))
	assert.Equal(t, testStream, p.Stream().CachedInfo().Config.Name)
	p.See(100)
	p.Stop()
	p.Stop()
}

func TestNew_Config(t *testing.T) {
	e := newEnv(t)
	h := newHandler(t)
	good := testConfig(jetstream.AckExplicitPolicy)
	for name, mutate := range map[string]func(c *pipeline.Config){
		"no name":          func(c *pipeline.Config) { c.Name = "" },
		"no durable":       func(c *pipeline.Config) { c.Consumer.Durable = "" },
		"zero batch":       func(c *pipeline.Config) { c.MaxBatch = 0 },
		"zero buffer":      func(c *pipeline.Config) { c.Buffer = 0 },
		"no shutdown time": func(c *pipeline.Config) { c.ShutdownTimeout = 0 },
		"negative wait":    func(c *pipeline.Config) { c.MaxBatchWait = -1 },
	} {
		cfg := good
		mutate(&cfg)
		_, err := pipeline.New(cfg, e.js, h, prepare, new(bus.Problem), bustest.Logger(t))
		assert.ErrorIs(t, err, pipeline.ErrConfig, name)
	}
	_, err := pipeline.New(good, nil, h, prepare, new(bus.Problem), bustest.Logger(t))
	assert.ErrorIs(t, err, pipeline.ErrConfig)
	cfg := good
	cfg.TailCheckInterval = 0
	require.NoError(t, cfg.Validate())
	assert.Equal(t, pipeline.DefaultTailCheckInterval, cfg.TailCheckInterval)
}

// When Run's context ends, what the consumer delivered is committed and
// acked before Run returns; a restart commits the rest, nothing twice.
func TestPipeline_ShutdownCommitsWhatWasDelivered(t *testing.T) {
	e := newEnv(t)
	h := newHandler(t)
	h.gate, h.entered = make(chan struct{}), make(chan struct{})
	entered := h.entered
	cfg := testConfig(jetstream.AckExplicitPolicy)
	cfg.MaxBatch, cfg.PullBytes = 2, 1<<20
	last := e.publish(20)
	r := e.start(cfg, h, nil)
	<-entered
	cons, err := e.js.Consumer(context.Background(), testStream, "pipe")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		info, err := cons.Info(context.Background())
		return err == nil && info.NumAckPending == 20
	}, 20*time.Second, 5*time.Millisecond)
	r.cancel()
	h.mu.Lock()
	gate := h.gate
	h.gate = nil
	h.mu.Unlock()
	close(gate)
	require.NoError(t, r.stop(t))
	got := h.committed()
	assert.Greater(t, len(got), 2, "the buffered deliveries are committed at shutdown")
	assert.Equal(t, seqs(1, uint64(len(got))), got)

	r = e.start(cfg, h, nil)
	waitCommitted(t, h, seqs(1, last))
	require.NoError(t, r.stop(t))
}

// A commit that the shutdown's deadline cuts short is not an error of Run:
// what was not committed comes again at the next start, once (a breaker's
// input: `codi2 serve` stopped with SIGINT during an import exited 1 with
// "commit batch ...: context canceled").
func TestPipeline_ShutdownTimeoutIsNotAnError(t *testing.T) {
	e := newEnv(t)
	h := newHandler(t)
	h.gate, h.entered = make(chan struct{}), make(chan struct{})
	entered := h.entered
	cfg := testConfig(jetstream.AckExplicitPolicy)
	cfg.ShutdownTimeout = 200 * time.Millisecond
	last := e.publish(20)
	r := e.start(cfg, h, nil)
	<-entered
	require.NoError(t, r.stop(t), "the commit in progress ran out of shutdown time")
	assert.Empty(t, h.committed())

	h.mu.Lock()
	h.gate = nil
	h.mu.Unlock()
	r = e.start(cfg, h, nil)
	waitCommitted(t, h, seqs(1, last))
	require.NoError(t, r.stop(t))
}

// Handler errors stop Open (Resume) and Run (Lost, Tick).
func TestPipeline_HandlerErrors(t *testing.T) {
	e := newEnv(t)
	boom := errors.New("boom")
	h := newHandler(t)
	h.resumeErr = boom
	p, err := pipeline.New(testConfig(jetstream.AckExplicitPolicy), e.js, h, prepare, new(bus.Problem), bustest.Logger(t))
	require.NoError(t, err)
	assert.ErrorIs(t, p.Open(context.Background()), boom)

	h = newHandler(t)
	h.tickErr = boom
	h.wake = time.Now()
	r := e.start(testConfig(jetstream.AckExplicitPolicy), idleHandler{h}, nil)
	assert.ErrorIs(t, <-r.done, boom)

	h = newHandler(t)
	h.busyErr = boom
	r = e.start(testConfig(jetstream.AckExplicitPolicy), idleHandler{h}, nil)
	e.publish(1)
	assert.ErrorIs(t, <-r.done, boom)

	h = newHandler(t)
	e.publish(3)
	stream, err := e.js.Stream(context.Background(), testStream)
	require.NoError(t, err)
	require.NoError(t, stream.Purge(context.Background()))
	h.lostErr = boom
	r = e.start(testConfig(jetstream.AckExplicitPolicy), h, nil)
	assert.ErrorIs(t, <-r.done, boom)
}

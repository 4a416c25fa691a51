package state_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/audit"
	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/bus/bustest"
	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/internal/kv/kvtest"
	"github.com/codi2/codi2/internal/proctest"
	"github.com/codi2/codi2/state"
	"github.com/codi2/codi2/subjects"
)

// merges publishes n merges on kind/id, the k-th expecting rev k-1, so that
// a command applied twice or out of order is rejected and shows.
func (e *env) merges(kind, id string, from, n int) uint64 {
	e.t.Helper()
	subj := cmdSubject(e.t, kind, id, "agent-1")
	var last uint64
	for k := from; k < from+n; k++ {
		last = e.publish(subj, fmt.Sprintf(`{"op":"merge","fields":{"k":%d},"expect_rev":%d}`, k, k-1))
	}
	return last
}

func (e *env) rev(kind, id string) uint64 {
	e.t.Helper()
	rec, err := e.client("observer").Get(context.Background(), kind, id, 0)
	require.NoError(e.t, err)
	return rec.Rev
}

// A second Service on the same store, whose consumer replays the stream from
// the start, acks the replay and applies nothing twice.
func TestService_Run_ReplayDoesNotDoubleApply(t *testing.T) {
	e := newEnv(t)
	r := e.start(fastConfig())
	last := e.merges("task", "t1", 1, 10)
	last2 := e.merges("task", "t2", 1, 5)
	e.waitApplied(max(last, last2))
	r.stop(t)

	// Reset the consumer to deliver everything again.
	ctx := ctxT(t)
	stream, err := e.js.Stream(ctx, bus.StreamState)
	require.NoError(t, err)
	require.NoError(t, stream.DeleteConsumer(ctx, state.DefaultConsumer))
	_, err = stream.CreateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       state.DefaultConsumer,
		FilterSubject: subjects.StateCmdWildcard,
		AckPolicy:     jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	require.NoError(t, err)

	w := e.watchEvents()
	e.start(fastConfig())
	require.Eventually(t, func() bool {
		cons, err := stream.Consumer(ctx, state.DefaultConsumer)
		if err != nil {
			return false
		}
		info := cons.CachedInfo()
		return info.AckFloor.Stream == max(last, last2) && info.NumAckPending == 0
	}, 10*time.Second, 5*time.Millisecond)
	assert.Equal(t, uint64(10), e.rev("task", "t1"))
	assert.Equal(t, uint64(5), e.rev("task", "t2"))
	assert.Empty(t, w.all(), "a replay publishes no events")
	cons, err := stream.Consumer(ctx, state.DefaultConsumer)
	require.NoError(t, err)
	assert.Equal(t, jetstream.AckAllPolicy, cons.CachedInfo().Config.AckPolicy, "an AckExplicit consumer is replaced")

	// New commands continue.
	next := e.merges("task", "t1", 11, 1)
	assert.Equal(t, state.StatusApplied, w.waitSeq(t, next).ev.Status)
	assert.Equal(t, uint64(11), e.rev("task", "t1"))
}

// A consumer ahead of the store (here: a new, empty store) is recreated to
// start after the store's watermark, so the commands are applied again.
func TestService_Run_ConsumerAheadOfStore(t *testing.T) {
	e := newEnv(t)
	r := e.start(fastConfig())
	last := e.merges("task", "t1", 1, 7)
	e.waitApplied(last)
	r.stop(t)

	fresh := kvtest.NewBolt(t)
	e.startOn(fresh, fastConfig())
	e.waitApplied(last)
	assert.Equal(t, uint64(7), e.rev("task", "t1"))
}

// Another puller on the codi-state consumer takes a command: the service
// sees the hole in its delivery sequence, restarts the consumer after its
// watermark and still applies every command once, in order.
func TestService_Run_DeliveryGapRepositions(t *testing.T) {
	e := newEnv(t)
	cfg := fastConfig()
	e.start(cfg)
	e.waitApplied(e.merges("task", "t1", 1, 5))

	ctx := ctxT(t)
	cons, err := e.js.Consumer(ctx, bus.StreamState, state.DefaultConsumer)
	require.NoError(t, err)
	stolen := make(chan uint64, 1)
	go func() {
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			stolen <- 0
			return
		}
		for m := range batch.Messages() {
			md, _ := m.Metadata()
			stolen <- md.Sequence.Stream
			return
		}
		stolen <- 0
	}()
	// Let the fetch's pull request reach the server before publishing.
	require.Eventually(t, func() bool {
		info, err := cons.Info(ctx)
		return err == nil && info.NumWaiting >= 2
	}, 5*time.Second, time.Millisecond)
	last := uint64(0)
	for k := 6; k <= 40; k++ {
		last = e.merges("task", "t1", k, 1)
	}
	e.waitApplied(last)
	assert.Equal(t, uint64(40), e.rev("task", "t1"))
	got := <-stolen
	t.Logf("stolen seq %d", got)
	assert.NotZero(t, got, "the other puller got a command")
}

// Batches are cut to MaxBatchBytes of writes; every command still applies.
func TestService_Run_BatchBytesCut(t *testing.T) {
	e := newEnv(t)
	big := strings.Repeat("y", 90_000)
	subj := cmdSubject(t, "doc", "d1", "agent-1")
	var last uint64
	for k := 1; k <= 12; k++ {
		last = e.publish(subj, fmt.Sprintf(`{"op":"merge","fields":{"f":%q,"k":%d},"expect_rev":%d}`, big, k, k-1))
	}
	cfg := fastConfig()
	cfg.MaxBatchBytes = 4 * kv.MaxValueSize
	e.start(cfg)
	e.waitApplied(last)
	assert.Equal(t, uint64(12), e.rev("doc", "d1"))
}

// Cancelling Run under load commits and acks what it holds; the rest is
// applied after a restart, each command exactly once.
func TestService_Run_ShutdownUnderLoad(t *testing.T) {
	e := newEnv(t)
	const n = 3000
	subj := cmdSubject(t, "task", "t1", "agent-1")
	for k := 1; k <= n; k++ {
		_, err := e.js.PublishAsync(subj, fmt.Appendf(nil, `{"op":"merge","fields":{"k":%d},"expect_rev":%d}`, k, k-1))
		require.NoError(t, err)
	}
	select {
	case <-e.js.PublishAsyncComplete():
	case <-time.After(10 * time.Second):
		t.Fatal("publishes not acknowledged")
	}
	cfg := fastConfig()
	cfg.MaxBatch = 100
	r := e.start(cfg)
	r.stop(t)
	stopped := r.svc.Watermark()
	t.Logf("watermark at stop: %d of %d", stopped, n)

	e.start(cfg)
	e.waitApplied(n)
	assert.Equal(t, uint64(n), e.rev("task", "t1"))
}

// Run returns only after every goroutine it started has exited, including
// a get still waiting for its min_seq, which is answered 503.
func TestService_Run_NoGoroutinesLeft(t *testing.T) {
	e := newEnv(t)
	r := e.start(fastConfig())
	c := e.client("agent-1")
	ctx := ctxT(t)
	_, err := c.Claim(ctx, "task", "t1", 50*time.Millisecond, nil)
	require.NoError(t, err)
	waiting := make(chan error, 1)
	go func() {
		_, err := c.Get(ctx, "task", "t1", 1_000_000)
		waiting <- err
	}()
	require.Eventually(t, func() bool { return strings.Contains(stacks(), "state.(*Service).waitFor") }, 5*time.Second, time.Millisecond)

	r.stop(t)
	assert.ErrorIs(t, <-waiting, state.ErrUnavailable)
	assert.NotContains(t, stacks(), "codi2/state.")
	assert.NotContains(t, stacks(), "created by github.com/codi2/codi2/state.")
	// The consumer's own goroutines (nats.go) are gone too.
	assert.NotContains(t, stacks(), "jetstream.(*pullConsumer).Consume")

	// A Service runs once.
	assert.ErrorIs(t, r.svc.Run(context.Background()), state.ErrRunning)
}

func stacks() string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return string(buf[:n])
		}
		buf = make([]byte, 2*len(buf))
	}
}

// Audit events whose publish failed stay in the outbox and are published by
// the next run, once each.
func TestService_Run_RepublishesOutbox(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	require.NoError(t, e.js.DeleteStream(ctx, bus.StreamAudit))
	cfg := fastConfig()
	cfg.ShutdownTimeout = 500 * time.Millisecond
	r := e.start(cfg)
	last := e.merges("task", "t1", 1, 5)
	e.waitApplied(last)
	r.stop(t)
	assert.Equal(t, 5, outboxLen(t, e.store), "unpublished audit events wait in the outbox")

	require.NoError(t, bus.EnsureStreams(ctx, e.js, e.b.Config()))
	r = e.start(cfg)
	require.Eventually(t, func() bool { return len(e.audits()) == 5 }, 10*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { return outboxLen(t, e.store) == 0 }, 10*time.Second, 10*time.Millisecond)
	ids := e.auditByID()
	for seq := last - 4; seq <= last; seq++ {
		assert.Contains(t, ids, e.cmdID(seq))
	}

	// Published once more (a crash before the outbox was cleared): the
	// stream holds the entry again (a bulk message has no Nats-Msg-Id of
	// its own for JetStream to deduplicate), the log keeps one record.
	r.stop(t)
	data := []byte(`{"seq":1}`)
	subj, _ := subjects.AuditLog(state.Actor, "state", "task")
	require.NoError(t, e.store.Update(ctx, func(tx kv.Txn) error {
		return tx.Set(kv.Tuple{"outbox", int64(last), e.cmdID(last)}.Pack(),
			kv.Tuple{subj, e.cmdID(last), data}.Pack())
	}))
	e.start(cfg)
	require.Eventually(t, func() bool { return outboxLen(t, e.store) == 0 }, 10*time.Second, 10*time.Millisecond)
	assert.Len(t, e.audits(), 6)
	log := e.runAudit()
	var recs []audit.Record
	require.Eventually(t, func() bool {
		res, err := log.Query(ctx, audit.Query{Source: state.Actor})
		recs = res.Records
		return err == nil && len(recs) == 5
	}, 10*time.Second, 10*time.Millisecond)
	assert.Never(t, func() bool {
		res, err := log.Query(ctx, audit.Query{Source: state.Actor})
		return err != nil || len(res.Records) != 5
	}, 300*time.Millisecond, 50*time.Millisecond, "one record per outcome")
	for i, r := range recs {
		assert.Equal(t, e.cmdID(last-4+uint64(i)), r.MsgID)
	}
}

func outboxLen(t *testing.T, store kv.Store) int {
	t.Helper()
	n := 0
	require.NoError(t, store.View(context.Background(), func(tx kv.ReadTxn) error {
		b, e := kv.Tuple{"outbox"}.Range()
		kvs, err := tx.GetRange(b, e, kv.RangeOptions{})
		n = len(kvs)
		return err
	}))
	return n
}

func TestNew_Errors(t *testing.T) {
	b := bustest.Run(t)
	store := kvtest.NewBolt(t)
	_, err := state.New(state.Config{}, nil, store, bustest.Logger(t))
	require.ErrorIs(t, err, state.ErrConfig)
	_, err = state.New(state.Config{}, b.Conn(), nil, bustest.Logger(t))
	require.ErrorIs(t, err, state.ErrConfig)
	_, err = state.New(state.Config{MaxBatch: -1}, b.Conn(), store, bustest.Logger(t))
	require.ErrorIs(t, err, state.ErrConfig)

	// A stream that does not exist fails Run.
	svc, err := state.New(state.Config{Stream: "NOPE"}, b.Conn(), store, bustest.Logger(t))
	require.NoError(t, err)
	require.Error(t, svc.Run(ctxT(t)))
}

func TestConfig_Validate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     state.Config
		wantErr bool
	}{
		{"zero is defaults", state.Config{}, false},
		{"batch too big", state.Config{MaxBatch: 1_000_000}, true},
		{"bytes too small", state.Config{MaxBatchBytes: 1000}, true},
		{"bytes too big", state.Config{MaxBatchBytes: kv.MaxTxnWriteBytes}, true},
		{"negative wait", state.Config{MaxBatchWait: -1}, true},
		{"long wait", state.Config{MaxBatchWait: time.Minute}, true},
		{"sweep too fine", state.Config{LeaseSweepInterval: time.Microsecond}, true},
		{"short ack wait", state.Config{AckWait: time.Millisecond}, true},
		{"negative get wait", state.Config{MaxGetWait: -1}, true},
		{"get wait above max", state.Config{GetWait: 2 * time.Second, MaxGetWait: time.Second}, true},
		{"negative list limit", state.Config{MaxListLimit: -1}, true},
		{"expiry batch too big", state.Config{MaxExpiryBatch: 1_000_000}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			err := cfg.Validate()
			if tt.wantErr {
				require.ErrorIs(t, err, state.ErrConfig)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, bus.StreamState, cfg.Stream)
			assert.Equal(t, "codi-state", cfg.Consumer)
			assert.Equal(t, state.DefaultMaxBatch, cfg.MaxBatch)
			assert.Equal(t, state.DefaultMaxBatchBytes, cfg.MaxBatchBytes)
		})
	}
}

// When the store fails, reads answer 500 and Run returns the error.
func TestService_Run_StoreFails(t *testing.T) {
	e := newEnv(t)
	store := kvtest.NewBolt(t)
	done := e.runToFailure(store)
	c := e.client("agent-1")
	ctx := ctxT(t)
	_, err := c.Claim(ctx, "task", "t1", time.Hour, nil)
	require.NoError(t, err)

	require.NoError(t, store.Close())
	_, err = c.Get(ctx, "task", "t1", 0)
	require.ErrorIs(t, err, state.ErrRemote)
	_, err = c.List(ctx, "task", state.ListOptions{})
	require.ErrorIs(t, err, state.ErrRemote)

	e.publish(cmdSubject(t, "task", "t2", "agent-1"), `{"op":"put","fields":{}}`)
	require.ErrorIs(t, runErr(t, done), kv.ErrClosed)
}

// A refresh that JetStream stored before the lease ended wins, even when the
// service only sees it after the end (here: it was down meanwhile).
func TestService_Lease_RefreshStoredInTimeWins(t *testing.T) {
	e := newEnv(t)
	cfg := fastConfig()
	cfg.MaxBatchWait = time.Millisecond
	r := e.start(cfg)
	c := e.client("agent-1")
	ctx := ctxT(t)
	rec, err := c.Claim(ctx, "task", "t1", 150*time.Millisecond, nil)
	require.NoError(t, err)
	r.stop(t)

	refresh := e.publish(cmdSubject(t, "task", "t1", "agent-1"), fmt.Sprintf(`{"op":"merge","expect_rev":%d,"ttl_ms":3600000}`, rec.Rev))
	// Let the lease's end pass while the refresh waits in the stream.
	time.Sleep(time.Until(rec.ExpiresAt.Add(50 * time.Millisecond)))
	w := e.watchEvents()
	e.start(cfg)
	got := w.waitSeq(t, refresh)
	assert.Equal(t, state.StatusApplied, got.ev.Status)
	assert.Equal(t, rec.Rev+1, got.ev.Rev)
	for _, ev := range w.all() {
		assert.NotEqual(t, state.OpExpire, ev.ev.Op)
	}
}

// A lease index entry that does not match its record is dropped by the
// sweep without an expiry.
func TestService_Lease_StaleIndexEntry(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	past := time.Now().Add(-time.Minute).UnixNano()
	require.NoError(t, e.store.Update(ctx, func(tx kv.Txn) error {
		return tx.Set(kv.Tuple{"lease", past, "task", "ghost"}.Pack(), []byte{})
	}))
	w := e.watchEvents()
	e.start(fastConfig())
	require.Eventually(t, func() bool {
		n := 0
		_ = e.store.View(ctx, func(tx kv.ReadTxn) error {
			b, end := kv.Tuple{"lease"}.Range()
			kvs, err := tx.GetRange(b, end, kv.RangeOptions{})
			n = len(kvs)
			return err
		})
		return n == 0
	}, 5*time.Second, 5*time.Millisecond)
	assert.Empty(t, w.all())
}

// While the audit stream is missing, audit events wait in the outbox and are
// retried; once it is back they are published and the outbox empties.
func TestService_Run_RetriesAuditPublish(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	require.NoError(t, e.js.DeleteStream(ctx, bus.StreamAudit))
	logs := &proctest.Buffer{}
	nc, err := e.b.Connect("codi-state")
	require.NoError(t, err)
	defer nc.Close()
	svc, err := state.New(fastConfig(), nc, e.store, zerolog.New(logs).Level(zerolog.WarnLevel))
	require.NoError(t, err)
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(runCtx) }()
	defer func() {
		cancel()
		assert.NoError(t, <-done)
	}()

	last := e.merges("task", "t1", 1, 3)
	e.waitApplied(last)
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "retrying") }, 10*time.Second, 10*time.Millisecond)
	assert.Equal(t, 3, outboxLen(t, e.store))

	require.NoError(t, bus.EnsureStreams(ctx, e.js, e.b.Config()))
	require.Eventually(t, func() bool { return len(e.audits()) == 3 }, 10*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { return outboxLen(t, e.store) == 0 }, 10*time.Second, 10*time.Millisecond)
}

// A store that fails while a lease is due stops Run with the error.
func TestService_Lease_SweepStoreFails(t *testing.T) {
	e := newEnv(t)
	store := kvtest.NewBolt(t)
	done := e.runToFailure(store)
	_, err := e.client("agent-1").Claim(ctxT(t), "task", "t1", 100*time.Millisecond, nil)
	require.NoError(t, err)
	require.NoError(t, store.Close())
	require.ErrorIs(t, runErr(t, done), kv.ErrClosed)
}

// An operator deleting the codi-state consumer does not stop the service:
// it recreates the consumer after its watermark and carries on.
func TestService_Run_ConsumerDeletedRecreated(t *testing.T) {
	e := newEnv(t)
	e.start(fastConfig())
	e.waitApplied(e.merges("task", "t1", 1, 5))
	ctx := ctxT(t)
	require.NoError(t, e.js.DeleteConsumer(ctx, bus.StreamState, state.DefaultConsumer))
	e.waitApplied(e.merges("task", "t1", 6, 5))
	assert.Equal(t, uint64(10), e.rev("task", "t1"))
}

// CODI_STATE deleted under the running service (issue 11, input 4): the
// service creates it again with the configuration it had, records the loss
// (what the old stream held past the watermark: nothing here) in the audit
// log naming the stream, and applies the new stream's commands as a new
// generation.
func TestService_Run_StreamDeleted(t *testing.T) {
	e := newEnv(t)
	r := e.start(fastConfig())
	e.waitApplied(e.merges("task", "t1", 1, 3))
	ctx := ctxT(t)
	old, err := e.js.Stream(ctx, bus.StreamState)
	require.NoError(t, err)
	require.NoError(t, e.js.DeleteStream(ctx, bus.StreamState))

	var stream jetstream.Stream
	require.Eventually(t, func() bool {
		stream, err = e.js.Stream(ctx, bus.StreamState)
		return err == nil
	}, 15*time.Second, 20*time.Millisecond, "the service recreates the stream")
	assert.Equal(t, old.CachedInfo().Config.Subjects, stream.CachedInfo().Config.Subjects)
	assert.Equal(t, old.CachedInfo().Config.MaxAge, stream.CachedInfo().Config.MaxAge)
	require.Eventually(t, func() bool { return r.svc.Problem() == nil }, 10*time.Second, 10*time.Millisecond)

	last := e.merges("task", "t1", 4, 2)
	require.Equal(t, uint64(2), last, "a new stream")
	require.Eventually(t, func() bool {
		rec, err := e.client("observer").Get(ctx, "task", "t1", 0)
		return err == nil && rec.Rev == 5
	}, 10*time.Second, 10*time.Millisecond)
	var lost []map[string]any
	require.Eventually(t, func() bool {
		lost = lost[:0]
		all := e.audits()
		for _, a := range all {
			if a.subject == "codi.audit.log.codi-state.lost" {
				lost = append(lost, a.body)
			}
		}
		// The last command's audit event is published after its commit,
		// which the Get above may see first.
		return len(lost) == 1 && len(all) >= 6
	}, 10*time.Second, 10*time.Millisecond)
	assert.Equal(t, map[string]any{"stream": "CODI_STATE", "first_seq": 4.0, "last_seq": 3.0, "count": 0.0, "reason": state.LostRecreated}, lost[0])
	ids := e.auditByID()
	assert.Len(t, ids, 6, "3 commands, the loss, 2 commands: no id repeated")
	assert.Contains(t, ids, e.cmdID(1), "the new generation's ids")
}

// A store whose state keys are corrupt fails Run at start, naming the
// problem, rather than applying commands on top of it.
func TestService_Run_CorruptStore(t *testing.T) {
	tests := []struct {
		name       string
		key, value []byte
		wantErr    string
	}{
		{"applied sequence", kv.Tuple{"meta", "applied", bus.StreamState}.Pack(), []byte{1, 2, 3}, "corrupt applied sequence"},
		{"lease key", kv.Tuple{"lease", "soon"}.Pack(), []byte{}, "corrupt lease key"},
		{"outbox entry", kv.Tuple{"outbox", int64(1), "state-1"}.Pack(), []byte("junk"), "outbox"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := bustest.Run(t)
			store := kvtest.NewBolt(t)
			require.NoError(t, store.Update(context.Background(), func(tx kv.Txn) error { return tx.Set(tt.key, tt.value) }))
			svc, err := state.New(state.Config{}, b.Conn(), store, bustest.Logger(t))
			require.NoError(t, err)
			err = svc.Run(ctxT(t))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantErr)
		})
	}
}

// A client whose connection is closed fails with the connection's error.
func TestClient_ClosedConnection(t *testing.T) {
	e := newEnv(t)
	nc := bustest.Connect(t, e.b)
	c, err := state.NewClient(nc, "agent-1")
	require.NoError(t, err)
	nc.Close()
	ctx := ctxT(t)
	_, err = c.Status(ctx)
	require.ErrorIs(t, err, nats.ErrConnectionClosed)
	_, err = c.Apply(ctx, "task", "t1", state.Command{Op: state.OpPut})
	require.ErrorIs(t, err, nats.ErrConnectionClosed)
}

// A stop that comes while the service is still starting is a clean stop.
func TestService_Run_CancelledWhileStarting(t *testing.T) {
	e := newEnv(t)
	nc, err := e.b.Connect("codi-state")
	require.NoError(t, err)
	defer nc.Close()
	svc, err := state.New(fastConfig(), nc, e.store, bustest.Logger(t))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.NoError(t, svc.Run(ctx))
}

// Once Ready is closed the micro service answers without a retry.
func TestService_Ready_AnswersAtOnce(t *testing.T) {
	e := newEnv(t)
	r := e.start(fastConfig())
	select {
	case <-r.svc.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("not ready")
	}
	seq, err := e.client("agent-1").Status(ctxT(t))
	require.NoError(t, err)
	assert.Zero(t, seq)
}

// CODI_STATE deleted and created again while the service was stopped
// starts its sequence numbers over: the commands of the new stream are
// applied, none taken for a redelivery, even when it has grown past the
// store's watermark before the service starts.
func TestService_Run_StreamRecreated(t *testing.T) {
	e := newEnv(t)
	r := e.start(fastConfig())
	e.waitApplied(e.merges("task", "t1", 1, 5))
	r.stop(t)

	ctx := ctxT(t)
	require.NoError(t, e.js.DeleteStream(ctx, bus.StreamState))
	_, err := e.js.CreateStream(ctx, bus.StreamConfigs(e.b.Config())[1])
	require.NoError(t, err)
	// More commands than the watermark, stored before the service is back:
	// the new stream has grown past it.
	require.Equal(t, uint64(6), e.merges("task", "t1", 6, 6))
	e.start(fastConfig())
	last := e.merges("task", "t1", 12, 1)
	e.waitApplied(last)
	assert.Equal(t, uint64(12), e.rev("task", "t1"))

	// Every command's audit event reached CODI_AUDIT under its own id
	// (issue 11, input 4): the new stream's state-<seq> would repeat the
	// old one's, and the duplicate window would drop them.
	require.Eventually(t, func() bool { return len(e.audits()) >= 12 }, 10*time.Second, 10*time.Millisecond)
	ids := e.auditByID()
	assert.Len(t, ids, 12)
	for seq := uint64(1); seq <= last; seq++ {
		assert.Contains(t, ids, e.cmdID(seq), "the new generation's id of seq %d", seq)
	}
}

// A stream that lost commands the store had applied (what a power loss can
// do to a stream not fsynced on every message) hands their sequence numbers
// out again: the commands that get them are applied. The loss is simulated
// from the store's side, by a watermark two commands past the stream's end
// in the documented layout: 8 bytes of sequence, 8 of stored time. With the
// time, the service tells new commands from applied ones even when the
// stream has grown back to the watermark before it starts; a store written
// before the time was kept can only notice a stream that ends below it.
func TestService_Run_StreamLostItsTail(t *testing.T) {
	for _, withTime := range []bool{true, false} {
		name := "watermark with time"
		if !withTime {
			name = "watermark of a store before the time was kept"
		}
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			r := e.start(fastConfig())
			e.waitApplied(e.merges("task", "t1", 1, 5))
			r.stop(t)

			ctx := ctxT(t)
			stream, err := e.js.Stream(ctx, bus.StreamState)
			require.NoError(t, err)
			last, err := stream.GetMsg(ctx, 5)
			require.NoError(t, err)
			v := binary.BigEndian.AppendUint64(nil, 7)
			if withTime {
				v = binary.BigEndian.AppendUint64(v, uint64(last.Time.UnixNano()))
			}
			require.NoError(t, e.store.Update(ctx, func(tx kv.Txn) error {
				return tx.Set(kv.Tuple{"meta", "applied", bus.StreamState}.Pack(), v)
			}))

			if withTime {
				require.Equal(t, uint64(7), e.merges("task", "t1", 6, 2), "sequence numbers the store had applied")
				e.start(fastConfig())
				e.waitApplied(e.merges("task", "t1", 8, 1))
			} else {
				e.start(fastConfig())
				e.waitApplied(e.merges("task", "t1", 6, 3))
			}
			assert.Equal(t, uint64(8), e.rev("task", "t1"))
			// The watermark now holds the time of command 8.
			msg, err := stream.GetMsg(ctx, 8)
			require.NoError(t, err)
			require.NoError(t, e.store.View(ctx, func(tx kv.ReadTxn) error {
				v, err := tx.Get(kv.Tuple{"meta", "applied", bus.StreamState}.Pack())
				require.NoError(t, err)
				require.Len(t, v, 16)
				assert.Equal(t, uint64(8), binary.BigEndian.Uint64(v))
				assert.Equal(t, msg.Time.UnixNano(), int64(binary.BigEndian.Uint64(v[8:])))
				return nil
			}))
		})
	}
}

// The consumer is deleted while the stream cannot take another one: the
// service retries recreating it and carries on once it can.
func TestService_Run_ConsumerRecreateRetried(t *testing.T) {
	e := newEnv(t)
	e.start(fastConfig())
	e.waitApplied(e.merges("task", "t1", 1, 3))
	squat := bustest.SquatConsumer(t, e.js, bus.StreamState, state.DefaultConsumer)
	last := e.merges("task", "t1", 4, 2)
	squat.WaitRefused(3)
	squat.Release()
	e.waitApplied(last)
	assert.Equal(t, uint64(5), e.rev("task", "t1"))
}

// A batch is acked once, for its last command (AckAll): 200 commands
// stored while the service was down are applied in a few batches and cost
// a few acks, not 200, and the consumer has nothing pending after.
func TestService_Run_OneAckPerBatch(t *testing.T) {
	e := newEnv(t)
	var acks atomic.Int64
	sub, err := e.nc.Subscribe("$JS.ACK."+bus.StreamState+".>", func(*nats.Msg) { acks.Add(1) })
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	require.NoError(t, e.nc.Flush())
	const n = 200
	last := e.merges("task", "t1", 1, n)
	cfg := fastConfig()
	cfg.MaxBatch = 100
	e.start(cfg)
	e.waitApplied(last)
	ctx := ctxT(t)
	stream, err := e.js.Stream(ctx, bus.StreamState)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		cons, err := stream.Consumer(ctx, state.DefaultConsumer)
		if err != nil {
			return false
		}
		info := cons.CachedInfo()
		return info.AckFloor.Stream == last && info.NumAckPending == 0
	}, 10*time.Second, 5*time.Millisecond)
	require.NoError(t, e.nc.Flush())
	assert.Equal(t, uint64(n), e.rev("task", "t1"))
	got := acks.Load()
	assert.Positive(t, got)
	assert.LessOrEqual(t, got, int64(n/10), "acks for %d commands in batches of up to %d", n, cfg.MaxBatch)
}

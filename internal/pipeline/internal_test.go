package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/bus/bustest"
)

// Missed heartbeats are not reported as a deleted consumer (issue 12,
// input 9).
func TestLostReason(t *testing.T) {
	assert.Equal(t, "consumer deleted", lostReason(jetstream.ErrConsumerDeleted))
	assert.Equal(t, "consumer heartbeats missed", lostReason(fmt.Errorf("x: %w", jetstream.ErrNoHeartbeat)))
	assert.Equal(t, "", lostReason(errors.New("other")))
}

// fixed is a handler whose watermark is fixed; gather asks nothing else.
type fixed struct{ applied uint64 }

func (f fixed) Watermark() (uint64, time.Time) { return f.applied, time.Time{} }
func (fixed) Resume(context.Context, jetstream.Stream, uint64, bool) error {
	return nil
}
func (fixed) Replace(context.Context, jetstream.Stream, uint64, uint64, uint64) error {
	return nil
}
func (fixed) Commit(context.Context, []*Msg[string]) error { return nil }
func (fixed) Lost(context.Context, uint64, uint64) error   { return nil }
func (fixed) Wake(time.Time) (time.Time, <-chan struct{})  { return time.Time{}, nil }
func (fixed) Tick(context.Context, bool) error             { return nil }

// realMsgs returns n delivered messages of a real consumer, for their
// Ack.
func realMsgs(t *testing.T, n int) []jetstream.Msg {
	b := bustest.Run(t)
	js, err := jetstream.New(bustest.Connect(t, b))
	require.NoError(t, err)
	ctx := context.Background()
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "G", Subjects: []string{"g.>"}})
	require.NoError(t, err)
	for range n {
		_, err := js.Publish(ctx, "g.x", []byte("x"))
		require.NoError(t, err)
	}
	cons, err := stream.CreateConsumer(ctx, jetstream.ConsumerConfig{AckPolicy: jetstream.AckExplicitPolicy})
	require.NoError(t, err)
	batch, err := cons.Fetch(n, jetstream.FetchMaxWait(5*time.Second))
	require.NoError(t, err)
	var out []jetstream.Msg
	for m := range batch.Messages() {
		out = append(out, m)
	}
	require.Len(t, out, n)
	return out
}

// gather acks and drops replays, ends the batch before a redelivery out
// of order or a hole in the delivery sequence (gap), and waits up to its
// wait for more.
func TestGather(t *testing.T) {
	raw := realMsgs(t, 1)[0]
	msg := func(seq, cseq uint64) *Msg[string] { return &Msg[string]{Msg: raw, Seq: seq, CSeq: cseq, Size: 1} }
	p := &Pipeline[string]{cfg: Config{MaxBatch: 10, MaxBatchBytes: 100}, h: fixed{applied: 2},
		sess: &session[string]{in: make(chan *Msg[string], 10)}}
	ctx := context.Background()
	for _, m := range []*Msg[string]{msg(3, 2), msg(4, 3), msg(3, 4)} {
		p.sess.in <- m
	}
	batch, gap := p.gather(ctx, msg(1, 1), 0)
	assert.True(t, gap, "redelivery out of order")
	require.Len(t, batch, 2)
	assert.Equal(t, []uint64{3, 4}, []uint64{batch[0].Seq, batch[1].Seq})

	p.sess.lastCSeq = 3
	batch, gap = p.gather(ctx, msg(5, 6), 0)
	assert.True(t, gap, "hole in the delivery sequence")
	assert.Empty(t, batch)

	start := time.Now()
	batch, gap = p.gather(ctx, msg(5, 4), 20*time.Millisecond)
	assert.False(t, gap)
	assert.Len(t, batch, 1)
	assert.GreaterOrEqual(t, time.Since(start), 20*time.Millisecond)

	p.sess.in <- msg(7, 6)
	batch, _ = p.gather(ctx, msg(6, 5), 50*time.Millisecond)
	assert.Len(t, batch, 2, "a message that comes while it waits joins the batch")
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	batch, _ = p.gather(cancelled, msg(8, 7), time.Minute)
	assert.Len(t, batch, 1, "a done context ends the wait")
	batch, _ = p.gather(ctx, msg(9, 8), 0)
	assert.Len(t, batch, 1, "no wait: what is there")
}

// A hole in the delivery sequence ends the batch; Run commits what came
// before it and makes the consumer again after the watermark.
func TestRun_DeliveryGapRepositions(t *testing.T) {
	raw := realMsgs(t, 1)[0]
	b := bustest.Run(t)
	js, err := jetstream.New(bustest.Connect(t, b))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "H", Subjects: []string{"h.>"}})
	require.NoError(t, err)
	cfg := Config{Name: "test", Stream: "H", Subject: "h.>", Consumer: jetstream.ConsumerConfig{Durable: "h", AckPolicy: jetstream.AckAllPolicy},
		MaxBatch: 10, MaxBatchBytes: 100, PullMessages: 10, Buffer: 10, ShutdownTimeout: time.Second}
	var problem bus.Problem
	p, err := New(cfg, js, Handler[string](fixed{}), func(jetstream.Msg, *jetstream.MsgMetadata) (string, int) { return "", 1 }, &problem, bustest.Logger(t))
	require.NoError(t, err)
	require.NoError(t, p.Open(ctx))
	first := p.sess
	first.lastCSeq = 1 // delivered and committed before
	first.in <- &Msg[string]{Msg: raw, Seq: 2, CSeq: 5}
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	// The consumer made again delivers the stream's message, and Run
	// commits and acks it.
	_, err = js.Publish(ctx, "h.x", []byte("x"))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		cons, err := js.Consumer(ctx, "H", "h")
		return err == nil && cons.CachedInfo().AckFloor.Stream == 1
	}, 10*time.Second, 5*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
	assert.True(t, first.stopped, "the first session was stopped")
}

// A stream that cannot be made again (another stream took its subjects)
// is reported as the problem while the pipeline retries, and Run still
// stops cleanly.
func TestRun_StreamThatCannotBeRecreated(t *testing.T) {
	raw := realMsgs(t, 1)[0]
	b := bustest.Run(t)
	js, err := jetstream.New(bustest.Connect(t, b))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "H", Subjects: []string{"h.>"}})
	require.NoError(t, err)
	cfg := Config{Name: "test", Stream: "H", Subject: "h.>", Consumer: jetstream.ConsumerConfig{Durable: "h", AckPolicy: jetstream.AckExplicitPolicy},
		MaxBatch: 10, MaxBatchBytes: 100, PullMessages: 10, PullBytes: 1 << 20, Buffer: 10, ShutdownTimeout: time.Second,
		TailCheckInterval: 10 * time.Millisecond}
	var problem bus.Problem
	p, err := New(cfg, js, Handler[string](fixed{}), func(jetstream.Msg, *jetstream.MsgMetadata) (string, int) { return "", 1 }, &problem, bustest.Logger(t))
	require.NoError(t, err)
	require.NoError(t, p.Open(ctx))
	in := p.sess.in
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()

	require.NoError(t, js.DeleteStream(ctx, "H"))
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "OTHER", Subjects: []string{"h.>"}})
	require.NoError(t, err)
	in <- &Msg[string]{Msg: raw, Seq: 1, CSeq: 1}
	in <- &Msg[string]{Msg: raw, Seq: 2, CSeq: 3}
	require.Eventually(t, func() bool { return problem.Err() != nil }, 20*time.Second, 5*time.Millisecond)
	assert.ErrorContains(t, problem.Err(), "test: ")
	cancel()
	require.NoError(t, <-done)
}

// failing is a handler whose commits fail.
type failing struct{ fixed }

func (failing) Commit(context.Context, []*Msg[string]) error { return errors.New("disk full") }

// shutdown commits what was delivered up to a hole in the delivery
// sequence (the rest comes again at the next start), and returns a failed
// commit's error.
func TestShutdown(t *testing.T) {
	raw := realMsgs(t, 1)[0]
	b := bustest.Run(t)
	js, err := jetstream.New(bustest.Connect(t, b))
	require.NoError(t, err)
	ctx := context.Background()
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}})
	require.NoError(t, err)
	cfg := Config{Name: "test", Stream: "S", Subject: "s.>", Consumer: jetstream.ConsumerConfig{Durable: "s", AckPolicy: jetstream.AckExplicitPolicy},
		MaxBatch: 10, MaxBatchBytes: 100, PullMessages: 10, Buffer: 10, ShutdownTimeout: time.Second}
	prep := func(jetstream.Msg, *jetstream.MsgMetadata) (string, int) { return "", 1 }
	for name, h := range map[string]Handler[string]{"gap": fixed{}, "failing": failing{}} {
		p, err := New(cfg, js, h, prep, new(bus.Problem), bustest.Logger(t))
		require.NoError(t, err)
		require.NoError(t, p.Open(ctx))
		p.sess.in <- &Msg[string]{Msg: raw, Seq: 1, CSeq: 1}
		p.sess.in <- &Msg[string]{Msg: raw, Seq: 2, CSeq: 5}
		err = p.shutdown(ctx)
		if name == "failing" {
			assert.ErrorContains(t, err, "disk full")
		} else {
			assert.NoError(t, err)
			assert.Len(t, p.sess.in, 0)
		}
		p.Stop()
	}
}

// ack acks every message of a batch with explicit acks and the last alone
// with AckAll; an ack that fails (here: a message acked already) is
// logged, not fatal, and the others are still acked.
func TestAck_PolicyAndFailure(t *testing.T) {
	raw := realMsgs(t, 3)
	require.NoError(t, raw[0].Ack()) // acking it again fails
	var logs bytes.Buffer
	batch := make([]*Msg[string], len(raw))
	for i, m := range raw {
		batch[i] = &Msg[string]{Msg: m, Seq: uint64(i + 1)}
	}
	p := &Pipeline[string]{cfg: Config{Stream: "G", Consumer: jetstream.ConsumerConfig{AckPolicy: jetstream.AckExplicitPolicy}}, log: zerolog.New(&logs)}
	p.ack(batch)
	assert.Contains(t, logs.String(), `"seq":1`)
	assert.Contains(t, logs.String(), "ack")
	logs.Reset()
	p.ack(batch) // all acked now: each fails
	assert.Equal(t, 3, strings.Count(logs.String(), "\n"), "one line per failed ack")
	logs.Reset()
	p.cfg.Consumer.AckPolicy = jetstream.AckAllPolicy
	p.ack(batch)
	assert.Equal(t, 1, strings.Count(logs.String(), "\n"), "AckAll acks the last alone")
	assert.Contains(t, logs.String(), `"seq":3`)
}

// A consumer that cannot be made again is retried with backoff and logged
// until the context ends; the error names the consumer.
func TestCreateConsumer_RetriesUntilContextEnds(t *testing.T) {
	b := bustest.Run(t)
	js, err := jetstream.New(bustest.Connect(t, b))
	require.NoError(t, err)
	ctx := context.Background()
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "R", Subjects: []string{"r.>"}})
	require.NoError(t, err)
	var logs bytes.Buffer
	// A durable name with a dot is refused.
	p := &Pipeline[string]{cfg: Config{Name: "test", Stream: "R", Consumer: jetstream.ConsumerConfig{Durable: "r.x", AckPolicy: jetstream.AckAllPolicy}},
		stream: stream, h: fixed{}, log: zerolog.New(&logs)}
	cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	_, err = p.createConsumer(cctx, true)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "consumer r.x")
	assert.Contains(t, logs.String(), "recreate consumer")
}

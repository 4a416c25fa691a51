package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/codi2/codi2/bus"
)

// DefaultTailCheckInterval is Config.TailCheckInterval when zero.
const DefaultTailCheckInterval = 5 * time.Second

// Config describes one pipeline. Every field without a default is
// required; Validate checks them.
type Config struct {
	// Name prefixes errors and names the component in logs ("state").
	Name string
	// Stream is the stream the consumer reads (bus.StreamState, say).
	Stream string
	// Subject is the subject filter of the messages the service reads
	// from Stream, for bus.LostTail.
	Subject string
	// Consumer is the durable consumer's configuration: Durable,
	// Description, FilterSubject, AckPolicy (AckExplicitPolicy acks every
	// message of a committed batch, AckAllPolicy its last one), AckWait,
	// MaxAckPending, MaxDeliver. Its delivery start is the pipeline's:
	// DeliverPolicy and OptStartSeq are set to deliver right after the
	// watermark when the consumer is made.
	Consumer jetstream.ConsumerConfig
	// MaxBatch and MaxBatchBytes bound a batch handed to Handler.Commit:
	// messages, and the sizes Prepare gave them (a message larger than
	// MaxBatchBytes is a batch of its own).
	MaxBatch, MaxBatchBytes int
	// MaxBatchWait is how long a batch waits for more messages once it
	// has one; zero hands over what is there.
	MaxBatchWait time.Duration
	// PullMessages and PullBytes bound what the consumer pulls ahead of
	// the writer; PullBytes zero leaves bytes unbounded. Buffer is the
	// number of delivered messages held for the writer.
	PullMessages, PullBytes, Buffer int
	// ShutdownTimeout bounds how long Run drains and commits after its
	// context ends, and is when the Commit context then ends.
	ShutdownTimeout time.Duration
	// TailCheckInterval is how often an idle pipeline looks for messages
	// the stream lost after the watermark. Default
	// DefaultTailCheckInterval.
	TailCheckInterval time.Duration
}

// Validate fills defaults and reports a missing field, wrapping ErrConfig.
func (c *Config) Validate() error {
	if c.TailCheckInterval == 0 {
		c.TailCheckInterval = DefaultTailCheckInterval
	}
	switch {
	case c.Name == "" || c.Stream == "" || c.Subject == "" || c.Consumer.Durable == "":
		return fmt.Errorf("%w: a name, a stream, a subject and a durable consumer name are required", ErrConfig)
	case c.MaxBatch <= 0 || c.MaxBatchBytes <= 0 || c.PullMessages <= 0 || c.Buffer <= 0:
		return fmt.Errorf("%w: MaxBatch, MaxBatchBytes, PullMessages and Buffer must be positive", ErrConfig)
	case c.ShutdownTimeout <= 0 || c.MaxBatchWait < 0 || c.TailCheckInterval < 0:
		return fmt.Errorf("%w: ShutdownTimeout must be positive, MaxBatchWait and TailCheckInterval not negative", ErrConfig)
	}
	return nil
}

// Msg is one delivered message and what the service's prepare function
// made of it. The pipeline acks Msg; the handler reads the rest.
type Msg[T any] struct {
	Msg  jetstream.Msg
	Seq  uint64    // stream sequence
	CSeq uint64    // consumer (delivery) sequence
	Time time.Time // when JetStream stored it, UTC
	Size int       // its share of Config.MaxBatchBytes
	// Value is what prepare returned.
	Value T
}

// Prepare turns a delivered message into the service's value and its size
// against Config.MaxBatchBytes. It runs on the consumer's goroutine, off
// the writer's path, for every delivery (replays included), so it must be
// safe for concurrent use with the handler and do no I/O.
type Prepare[T any] func(m jetstream.Msg, md *jetstream.MsgMetadata) (T, int)

// Handler is the service side of a pipeline. Its methods run on the
// goroutine that calls Open and Run, one at a time.
type Handler[T any] interface {
	// Watermark returns the last stream sequence committed to the store
	// and when JetStream stored that message (zero when not known).
	Watermark() (seq uint64, at time.Time)
	// Resume runs in Open once stream is found, before the consumer is
	// made. When moved, stream handed the watermark's sequence numbers
	// out again (bus.ResumeAfter) and the handler must commit keep as its
	// watermark: the messages after keep are new.
	Resume(ctx context.Context, stream jetstream.Stream, keep uint64, moved bool) error
	// Replace runs when the stream was deleted under the service and
	// stream, empty or recreated by someone else, took its place: the
	// handler commits keep as its watermark and records that the old
	// stream's sequences first..last are lost (last may be below first
	// when nothing past the watermark was known).
	Replace(ctx context.Context, stream jetstream.Stream, keep, first, last uint64) error
	// Commit commits batch to the store: messages in stream order, each
	// after the watermark, with jumps in Seq where the stream no longer
	// holds messages. It returns once the batch is durable; the pipeline
	// acks it then. An error stops Run. ctx ends ShutdownTimeout after
	// Run's context, so that a batch delivered is committed while Run
	// stops.
	Commit(ctx context.Context, batch []*Msg[T]) error
	// Lost records that the stream holds nothing after the watermark
	// though its last sequence is past it: first..last will never be
	// delivered (bus.LostTail). An error stops Run.
	Lost(ctx context.Context, first, last uint64) error
	// Wake says when Tick is next due (zero: only after batches) and a
	// channel whose readiness also calls it (nil: none).
	Wake(now time.Time) (time.Time, <-chan struct{})
	// Tick runs the handler's own work: after every batch (idle false),
	// and when Wake's time or channel comes (idle true when no message
	// waits). An error stops Run.
	Tick(ctx context.Context, idle bool) error
}

// AsyncHandler is a Handler whose commits may be durable after they are
// applied (a store with a split commit, kv.AsyncStore): the writer goes on
// to the next batch while the last one's fsync is in flight.
type AsyncHandler[T any] interface {
	Handler[T]
	// CommitAsync applies batch like Commit and returns once it is applied
	// (later batches and reads see it); durable blocks until it is on
	// stable storage, and is called once, from a goroutine of the
	// pipeline's, in commit order. A nil durable means it is durable
	// already.
	CommitAsync(ctx context.Context, batch []*Msg[T]) (durable func() error, err error)
	// Durable runs on the writer's goroutine once batch is durable, in
	// commit order, before the pipeline acks it. An error stops Run.
	Durable(ctx context.Context, batch []*Msg[T]) error
}

// MaxInFlight is how many batches an AsyncHandler's pipeline holds applied
// and not yet durable; the writer waits for the oldest before it commits
// one more.
const MaxInFlight = 4

// inFlight is a batch applied and not yet durable.
type inFlight[T any] struct {
	batch   []*Msg[T]
	durable func() error
}

// Pipeline is one consumer and its single writer. Build it with New, then
// call Open and Run from one goroutine. Stream and Seen are for the
// handler, on that goroutine.
type Pipeline[T any] struct {
	cfg     Config
	js      jetstream.JetStream
	h       Handler[T]
	prepare Prepare[T]
	log     zerolog.Logger
	problem *bus.Problem

	stream   jetstream.Stream
	sess     *session[T]
	carry    *Msg[T]   // gathered but left for the next batch
	seen     uint64    // highest stream seq known to exist
	tailNext time.Time // when an idle pipeline next looks at the tail

	// With an AsyncHandler: the batches applied and not yet durable, in
	// commit order; syncs hands their durable functions to the goroutine
	// that waits for them, which answers on synced, in the same order.
	async    AsyncHandler[T]
	inflight []inFlight[T]
	syncs    chan func() error
	synced   chan error
}

// New returns a pipeline over js for handler h. cfg is validated (defaults
// filled in). problem is where the pipeline says why it is not consuming
// (a stream deleted and not recreated); it clears it when consuming again.
// New does no I/O.
func New[T any](cfg Config, js jetstream.JetStream, h Handler[T], prepare Prepare[T], problem *bus.Problem, log zerolog.Logger) (*Pipeline[T], error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if js == nil || h == nil || prepare == nil || problem == nil {
		return nil, fmt.Errorf("%w: JetStream, a handler, a prepare function and a problem holder are required", ErrConfig)
	}
	p := &Pipeline[T]{cfg: cfg, js: js, h: h, prepare: prepare, problem: problem, log: log}
	p.async, _ = h.(AsyncHandler[T])
	return p, nil
}

// Stream returns the stream the pipeline reads (nil before Open).
func (p *Pipeline[T]) Stream() jetstream.Stream { return p.stream }

// See records that the stream holds seq (the handler read its info), for
// the range Replace reports lost.
func (p *Pipeline[T]) See(seq uint64) { p.seen = max(p.seen, seq) }

// Open finds the stream, lets the handler resume (Handler.Resume), makes
// the consumer deliver right after the watermark and starts consuming.
// After Open, Run must be called, even when ctx is already done, to stop
// the consumer.
func (p *Pipeline[T]) Open(ctx context.Context) error {
	stream, err := p.js.Stream(ctx, p.cfg.Stream)
	if err != nil {
		return fmt.Errorf("%s: stream %s: %w", p.cfg.Name, p.cfg.Stream, err)
	}
	p.stream = stream
	p.seen = stream.CachedInfo().State.LastSeq
	applied, at := p.h.Watermark()
	next, moved, err := bus.ResumeAfter(ctx, stream, applied, at)
	if err != nil {
		return fmt.Errorf("%s: check watermark: %w", p.cfg.Name, err)
	}
	if err := p.h.Resume(ctx, stream, next, moved); err != nil {
		return err
	}
	cons, err := p.ensureConsumer(ctx)
	if err != nil {
		return err
	}
	p.sess, err = p.consume(cons)
	return err
}

// Stop stops the consumer that Open started, for a service that does not
// go on to Run (its micro service failed to start, say). Run stops it
// itself; Stop after Run, or twice, does nothing.
func (p *Pipeline[T]) Stop() { p.sess.stop() }

// Run is the writer: it gathers batches, commits them through the
// handler, acks them, and runs the handler's timed work, until ctx is
// done. Then it drains the consumer, commits and acks what was delivered
// (bounded by ShutdownTimeout; the rest is redelivered at the next start)
// and returns nil. It returns an error when the handler does; the consumer
// is stopped either way.
func (p *Pipeline[T]) Run(ctx context.Context) error {
	// Store work outlives ctx by ShutdownTimeout: a delivered batch is
	// committed and acked even if ctx ends meanwhile.
	work, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stopDeadline := context.AfterFunc(ctx, func() { time.AfterFunc(p.cfg.ShutdownTimeout, cancel) })
	defer stopDeadline()
	defer p.sess.stop()
	if p.async != nil {
		stopSyncer := p.startSyncer()
		defer stopSyncer()
	}
	return p.cutShort(work, p.run(ctx, work))
}

// cutShort is Run's result for err: nil when err is the end of work, the
// store work's context, which ends ShutdownTimeout after Run's: a commit
// the shutdown's deadline cut short is rolled back, its batch is not
// acked and comes again at the next start, which the watermark applies
// once. Any other error is returned as it is.
func (p *Pipeline[T]) cutShort(work context.Context, err error) error {
	if err == nil || work.Err() == nil || !errors.Is(err, work.Err()) {
		return err
	}
	p.log.Warn().Str("stream", p.cfg.Stream).Err(err).Msg("shutdown timeout: messages delivered and not committed are redelivered at the next start")
	return nil
}

// run is Run's loop; ctx is Run's, work the store work's (see Run).
func (p *Pipeline[T]) run(ctx, work context.Context) error {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		if ctx.Err() != nil {
			return p.shutdown(work)
		}
		if err := p.finishReady(work); err != nil {
			return err
		}
		now := time.Now()
		wake, signal := p.h.Wake(now)
		if p.tailNext.IsZero() {
			p.tailNext = now
		}
		// The tail check waits for the batches in flight to be durable
		// (drain): it is due only once none is, so that an idle writer
		// never holds a new batch behind an fsync.
		if len(p.inflight) == 0 && (wake.IsZero() || wake.After(p.tailNext)) {
			wake = p.tailNext
		}
		if wake.IsZero() {
			wake = now.Add(time.Hour) // the syncer's answer wakes it
		}
		timer.Reset(max(wake.Sub(now), 0))
		first := p.carry
		p.carry = nil
		if first == nil {
			// Messages that wait go before the timed work: a handler
			// whose work is due again at once must not hold them up.
			select {
			case first = <-p.sess.in:
			default:
				select {
				case first = <-p.sess.in:
				case err := <-p.synced:
					if err := p.finish(work, err); err != nil {
						return err
					}
					continue
				case <-timer.C:
					if err := p.idle(work); err != nil {
						return err
					}
					continue
				case <-signal:
					if err := p.h.Tick(work, false); err != nil {
						return err
					}
					continue
				case <-p.sess.lost:
					if err := p.drain(work); err != nil {
						return err
					}
					if err := p.reposition(ctx, p.sess.why); err != nil {
						if ctx.Err() != nil {
							return nil
						}
						return err
					}
					continue
				case <-ctx.Done():
					return p.shutdown(work)
				}
			}
		}
		batch, gap := p.gather(ctx, first, p.cfg.MaxBatchWait)
		if err := p.commit(work, batch); err != nil {
			return err
		}
		if gap {
			if err := p.drain(work); err != nil {
				return err
			}
			if err := p.reposition(ctx, "delivery gap"); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
		}
		if err := p.h.Tick(work, false); err != nil {
			return err
		}
	}
}

// idle runs when the timer fires: the tail check when due, nothing waits
// and no batch is in flight, then the handler's work.
func (p *Pipeline[T]) idle(ctx context.Context) error {
	now := time.Now()
	empty := len(p.sess.in) == 0 && p.carry == nil
	if empty && len(p.inflight) == 0 && !now.Before(p.tailNext) {
		p.tailNext = now.Add(p.cfg.TailCheckInterval)
		if err := p.drain(ctx); err != nil {
			return err
		}
		if err := p.checkTail(ctx); err != nil {
			return err
		}
	}
	return p.h.Tick(ctx, empty)
}

// checkTail hands the handler the sequences after the watermark that the
// stream no longer holds when it holds none after it (bus.LostTail). A
// failed look is logged and tried again at the next check.
func (p *Pipeline[T]) checkTail(ctx context.Context) error {
	applied, _ := p.h.Watermark()
	first, last, ok, err := bus.LostTail(ctx, p.stream, applied, p.cfg.Subject)
	if err != nil {
		p.log.Warn().Err(err).Str("stream", p.cfg.Stream).Msg("look for messages lost after the watermark")
		return nil
	}
	if !ok {
		return nil
	}
	return p.h.Lost(ctx, first, last)
}

// commit hands batch to the handler and acks it once it is durable: at
// once, or, with an AsyncHandler whose commit is not durable yet, when the
// syncer says so (finish), holding at most MaxInFlight such batches.
func (p *Pipeline[T]) commit(ctx context.Context, batch []*Msg[T]) error {
	if len(batch) == 0 {
		return nil
	}
	if p.async == nil {
		if err := p.h.Commit(ctx, batch); err != nil {
			return err
		}
		p.ack(batch)
		return nil
	}
	durable, err := p.async.CommitAsync(ctx, batch)
	if err != nil {
		return err
	}
	if durable == nil && len(p.inflight) == 0 {
		if err := p.async.Durable(ctx, batch); err != nil {
			return err
		}
		p.ack(batch)
		return nil
	}
	if durable == nil {
		durable = durableNow
	}
	p.inflight = append(p.inflight, inFlight[T]{batch: batch, durable: durable})
	p.syncs <- durable // never blocks: it holds MaxInFlight
	for len(p.inflight) >= MaxInFlight {
		if err := p.finish(ctx, <-p.synced); err != nil {
			return err
		}
	}
	return nil
}

func durableNow() error { return nil }

// finish takes the syncer's answer for the oldest batch in flight: on
// success the handler's Durable runs and the batch is acked.
func (p *Pipeline[T]) finish(ctx context.Context, err error) error {
	f := p.inflight[0]
	p.inflight[0] = inFlight[T]{}
	p.inflight = p.inflight[1:]
	if err != nil {
		return err
	}
	if err := p.async.Durable(ctx, f.batch); err != nil {
		return err
	}
	p.ack(f.batch)
	return nil
}

// finishReady finishes the batches in flight that the syncer has answered
// for, without waiting.
func (p *Pipeline[T]) finishReady(ctx context.Context) error {
	for len(p.inflight) > 0 {
		select {
		case err := <-p.synced:
			if err := p.finish(ctx, err); err != nil {
				return err
			}
		default:
			return nil
		}
	}
	return nil
}

// drain waits until every batch in flight is durable and acked: before
// the pipeline repositions, looks at the tail, or stops.
func (p *Pipeline[T]) drain(ctx context.Context) error {
	for len(p.inflight) > 0 {
		if err := p.finish(ctx, <-p.synced); err != nil {
			return err
		}
	}
	return nil
}

// startSyncer starts the goroutine that waits, in commit order, for the
// durable functions handed to it on syncs and answers each on synced. The
// returned function stops it; durable functions it was handed and had not
// started are dropped (Run returns: their batches are not acked, so they
// are redelivered).
func (p *Pipeline[T]) startSyncer() (stop func()) {
	p.syncs = make(chan func() error, MaxInFlight)
	p.synced = make(chan error, MaxInFlight)
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case durable := <-p.syncs:
				p.synced <- durable() // never blocks: at most MaxInFlight wait
			case <-quit:
				return
			}
		}
	}()
	return func() {
		close(quit)
		<-done
	}
}

// ack acks batch's messages (its last alone with AckAllPolicy).
func (p *Pipeline[T]) ack(batch []*Msg[T]) {
	acks := batch
	if p.cfg.Consumer.AckPolicy == jetstream.AckAllPolicy {
		// Acking the last delivery acks every one before it.
		acks = batch[len(batch)-1:]
	}
	for _, m := range acks {
		if err := m.Msg.Ack(); err != nil {
			p.log.Warn().Err(err).Str("stream", p.cfg.Stream).Uint64("seq", m.Seq).Msg("ack")
		}
	}
}

// gather collects a batch that starts with first: whatever else is ready,
// up to MaxBatch messages and MaxBatchBytes, waiting up to wait for more.
// A message that would pass MaxBatchBytes is carried to the next batch.
// Messages at or below the watermark (replays) are acked and dropped. gap
// reports a hole in the delivery sequence or a redelivery out of order:
// the batch ends before it, and the caller repositions.
func (p *Pipeline[T]) gather(ctx context.Context, first *Msg[T], wait time.Duration) (batch []*Msg[T], gap bool) {
	applied, _ := p.h.Watermark()
	size := 0
	add := func(m *Msg[T]) bool {
		if p.sess.lastCSeq != 0 && m.CSeq != p.sess.lastCSeq+1 {
			gap = true
			return false
		}
		if len(batch) > 0 && size+m.Size > p.cfg.MaxBatchBytes {
			p.carry = m
			return false
		}
		p.carry = nil
		p.sess.lastCSeq = m.CSeq
		p.seen = max(p.seen, m.Seq)
		last := applied
		if n := len(batch); n > 0 {
			last = batch[n-1].Seq
		}
		switch {
		case m.Seq <= applied:
			// A replay of a committed message: its effect is in the store.
			_ = m.Msg.Ack()
			return true
		case m.Seq <= last:
			// Out of order within this batch: only a redelivery does
			// that; start again from the watermark.
			gap = true
			return false
		}
		batch = append(batch, m)
		size += m.Size
		return true
	}
	if !add(first) {
		return batch, gap
	}
	var timeout <-chan time.Time
	for len(batch) < p.cfg.MaxBatch {
		var m *Msg[T]
		select {
		case m = <-p.sess.in:
		default:
			if wait <= 0 {
				return batch, gap
			}
			if timeout == nil {
				t := time.NewTimer(wait)
				defer t.Stop()
				timeout = t.C
			}
			select {
			case m = <-p.sess.in:
			case <-timeout:
				return batch, gap
			case <-ctx.Done():
				return batch, gap
			}
		}
		if !add(m) {
			return batch, gap
		}
	}
	return batch, gap
}

// shutdown stops intake, commits and acks what was delivered, bounded by
// ctx (which ends ShutdownTimeout after Run's), waits for the batches in
// flight to be durable, and stops the consumer.
func (p *Pipeline[T]) shutdown(ctx context.Context) error {
	if err := p.shutdownIntake(ctx); err != nil {
		return err
	}
	if err := p.drain(ctx); err != nil {
		return err
	}
	// Acks are buffered publishes: flush them, so that Run returns with
	// its acks at the server (a restart right after does not get the
	// batches again). A failed flush only means redeliveries, which the
	// watermark skips, so its error is not Run's.
	_ = p.js.Conn().FlushWithContext(ctx)
	return nil
}

func (p *Pipeline[T]) shutdownIntake(ctx context.Context) error {
	p.sess.cc.Drain()
	closed := p.sess.cc.Closed()
	for {
		var first *Msg[T]
		if first, p.carry = p.carry, nil; first == nil {
			select {
			case first = <-p.sess.in:
			case <-closed:
				closed = nil
				select {
				case first = <-p.sess.in:
				default:
					return nil
				}
			case <-ctx.Done():
				p.log.Warn().Str("stream", p.cfg.Stream).Msg("shutdown timeout: messages delivered and not committed are redelivered at the next start")
				return nil
			}
		}
		batch, gap := p.gather(ctx, first, 0)
		if err := p.commit(ctx, batch); err != nil {
			return err
		}
		if gap {
			// The rest comes again, in order, at the next start.
			return nil
		}
	}
}

// session is one Consume of the durable consumer.
type session[T any] struct {
	cc       jetstream.ConsumeContext
	in       chan *Msg[T]
	quit     chan struct{}
	lost     chan struct{} // closed when the consumer was deleted or its heartbeats stopped
	lostOnce sync.Once
	why      string // why lost was closed; read after <-lost
	lastCSeq uint64 // last consumer (delivery) sequence gathered
	stopped  bool
}

// stop ends the session and waits (up to 5 s) for its callback to return.
func (ss *session[T]) stop() {
	if ss == nil || ss.stopped {
		return
	}
	ss.stopped = true
	close(ss.quit)
	ss.cc.Stop()
	select {
	case <-ss.cc.Closed():
	case <-time.After(5 * time.Second):
	}
}

package state

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"

	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/internal/retry"
	"github.com/codi2/codi2/subjects"
)

// maxAuditInflight bounds audit publishes awaiting their PubAck.
const maxAuditInflight = 8192

// maxAuditMemory bounds the audit outbox entries held in memory; beyond it
// they stay only in the store and are read back once the backlog drains.
const maxAuditMemory = 100_000

// Service is the state service: it applies CODI_STATE commands to the store
// in stream order and answers get, list and status as the NATS micro service
// codi-state. Build it with New and start it with Run, once. Its methods are
// safe for concurrent use.
type Service struct {
	cfg   Config
	nc    *nats.Conn
	js    jetstream.JetStream
	store kv.Store
	log   zerolog.Logger

	ran       atomic.Bool
	watermark atomic.Uint64
	problem   bus.Problem // why the service is not consuming, or nil

	mu       sync.Mutex
	advanced chan struct{} // closed and replaced whenever watermark grows
	stopping bool
	stop     chan struct{} // closed when Run stops serving requests
	reqs     sync.WaitGroup
	ready    chan struct{} // closed when the micro service answers
}

// New returns a state service over the connection nc (in-process or TCP)
// and store, configured by cfg (validated, defaults filled in). It does no
// I/O: Run connects the consumer and the micro service. New and the returned
// Service are safe for concurrent use.
func New(cfg Config, nc *nats.Conn, store kv.Store, log zerolog.Logger) (*Service, error) {
	if nc == nil || store == nil {
		return nil, fmt.Errorf("%w: a NATS connection and a store are required", ErrConfig)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(maxAuditInflight),
		jetstream.WithPublishAsyncTimeout(10*time.Second))
	if err != nil {
		return nil, fmt.Errorf("state: jetstream: %w", err)
	}
	return &Service{
		cfg:      cfg,
		nc:       nc,
		js:       js,
		store:    store,
		log:      log.With().Str("component", "state").Logger(),
		advanced: make(chan struct{}),
		stop:     make(chan struct{}),
		ready:    make(chan struct{}),
	}, nil
}

// Ready is closed once Run has loaded the watermark, started consuming and
// registered the micro service on the server, so that get, list and status
// are answered. Safe for concurrent use.
func (s *Service) Ready() <-chan struct{} { return s.ready }

// Problem returns why the service is not consuming its stream right now
// (CODI_STATE deleted and not yet recreated, say), or nil. Readiness checks
// report it while it lasts. Safe for concurrent use.
func (s *Service) Problem() error { return s.problem.Err() }

// Watermark is the last CODI_STATE sequence applied (or rejected) and
// committed to the store. Safe for concurrent use (an atomic read).
func (s *Service) Watermark() uint64 { return s.watermark.Load() }

func (s *Service) setWatermark(seq uint64) {
	s.watermark.Store(seq)
	s.mu.Lock()
	close(s.advanced)
	s.advanced = make(chan struct{})
	s.mu.Unlock()
}

// Run consumes CODI_STATE until ctx is done. It creates or updates the
// durable consumer, re-publishes audit events left in the outbox by a
// previous run, registers the micro service and applies commands in batches.
// When ctx is done it stops intake, commits and acks what it holds, flushes
// the audit outbox (bounded by Config.ShutdownTimeout), stops the micro
// service and returns nil once every goroutine it started has exited. It
// returns an error if the store or the stream fail (store transactions are
// retried a few times on conflicts and timeouts first); a deleted consumer
// is recreated. Run may be called once: later calls return ErrRunning, so
// concurrent calls are safe and only one runs.
func (s *Service) Run(ctx context.Context) error {
	if !s.ran.CompareAndSwap(false, true) {
		return ErrRunning
	}
	l := &loop{s: s, cfg: s.cfg, log: s.log, spilled: true}
	err := s.buildIndex(ctx) // records stored before the list indexes (index.go)
	if err == nil {
		err = l.start(ctx)
	}
	if err != nil && ctx.Err() != nil {
		// Stopped while starting: nothing was consumed, nothing to commit.
		err = nil
		l.applied = s.Watermark()
	} else if err == nil {
		s.log.Info().Str("stream", s.cfg.Stream).Uint64("seq", l.applied).Msg("state service running")
		var svc micro.Service
		svc, err = s.startMicro()
		if err == nil {
			close(s.ready)
			err = l.run(ctx)
			// Answer the waiting gets (the final batch is committed), then
			// stop the endpoints; until they are gone requests get 503.
			s.stopRequests()
			if serr := svc.Stop(); serr != nil && !errors.Is(serr, nats.ErrConnectionClosed) {
				s.log.Warn().Err(serr).Msg("stop micro service")
			}
		}
		if l.sess != nil {
			l.sess.stop()
		}
	}
	s.stopRequests()
	if err != nil {
		s.log.Error().Err(err).Msg("state service failed")
		return err
	}
	s.log.Info().Uint64("seq", l.applied).Msg("state service stopped")
	return nil
}

// stopRequests makes request handlers answer 503 and waits for the running
// ones and their waits.
func (s *Service) stopRequests() {
	s.mu.Lock()
	if !s.stopping {
		s.stopping = true
		close(s.stop)
	}
	s.mu.Unlock()
	s.reqs.Wait()
}

// loop is the single writer: it owns the consumer session, the watermark and
// the audit outbox. Only Run's goroutine touches it.
type loop struct {
	s      *Service
	cfg    Config
	log    zerolog.Logger
	stream jetstream.Stream
	sess   *session

	applied  uint64    // committed watermark
	lastTime time.Time // stored time of the last applied command
	gen      string    // the stream's generation token (generation.go)
	seen     uint64    // the highest stream seq known to exist (delivered, or the stream's last)
	// tailChecked is when checkTail last looked.
	tailChecked time.Time
	hasGen      bool      // gen is stored (a store from before keeps none)
	nextLease   time.Time // earliest lease in the index; zero for none
	// sweepAfter delays a due sweep that waits for commands stored before
	// the lease's end.
	sweepAfter time.Time

	audits      []*auditItem
	inflight    int
	suspects    int              // audits whose PubAck said duplicate, to check
	auditStream jetstream.Stream // CODI_AUDIT, for those checks; nil until needed
	spilled     bool             // the store's outbox holds entries missing from audits
	auditRetry  time.Time        // no publish attempts before this
	lastActive  time.Time
}

// auditItem is an outbox entry and the state of its publish.
type auditItem struct {
	outboxEntry
	fut      jetstream.PubAckFuture
	done     bool   // PubAck received
	dupSeq   uint64 // the PubAck said duplicate of this CODI_AUDIT seq, unchecked
	clearing bool   // handed to a transaction that clears its outbox key
}

// session is one Consume of the durable consumer.
type session struct {
	cc       jetstream.ConsumeContext
	in       chan jetstream.Msg
	quit     chan struct{}
	lost     chan struct{} // closed when the consumer was deleted or its heartbeats stopped
	lostOnce sync.Once
	lostWhy  string // why lost was closed; read after <-lost
	lastCSeq uint64 // last consumer (delivery) sequence seen
	stopped  bool
}

func (ss *session) stop() {
	if ss.stopped {
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

// start loads the watermark and outbox from the store and opens the
// consumer.
func (l *loop) start(ctx context.Context) error {
	err := l.s.store.View(ctx, func(tx kv.ReadTxn) error {
		applied, at, err := getAppliedAt(tx, l.cfg.Stream)
		if err != nil {
			return err
		}
		next, err := firstLease(tx)
		if err != nil {
			return err
		}
		l.applied, l.lastTime, l.nextLease = applied, at, next
		l.gen, l.hasGen, err = getGeneration(tx, l.cfg.Stream)
		return err
	})
	if err != nil {
		return fmt.Errorf("state: load: %w", err)
	}
	l.s.setWatermark(l.applied)
	if err := l.pumpAudits(ctx); err != nil {
		return err
	}
	l.stream, err = l.s.js.Stream(ctx, l.cfg.Stream)
	if err != nil {
		return fmt.Errorf("state: stream %s: %w", l.cfg.Stream, err)
	}
	l.seen = l.stream.CachedInfo().State.LastSeq
	next, moved, err := bus.ResumeAfter(ctx, l.stream, l.applied, l.lastTime)
	if err != nil {
		return fmt.Errorf("state: check watermark: %w", err)
	}
	switch {
	case moved:
		if err := l.rebase(ctx, next, nil); err != nil {
			return err
		}
	case !l.hasGen && l.applied == 0:
		if err := l.newGeneration(ctx); err != nil {
			return err
		}
	}
	cons, err := l.ensureConsumer(ctx)
	if err != nil {
		return err
	}
	l.sess, err = l.consume(cons)
	return err
}

// rebase moves the watermark back to keep: the stream handed its sequence
// numbers out again (see bus.ResumeAfter), and its commands after keep are
// new, to be applied rather than taken for redeliveries. A store that
// predates the watermark's time takes every command in the stream as
// applied.
//
// lost, when not nil, is the outcome recording what the old stream held
// past the watermark (a stream deleted under the service); it goes to the
// outbox in the same transaction.
func (l *loop) rebase(ctx context.Context, keep uint64, lost *outcome) error {
	l.log.Warn().Str("stream", l.cfg.Stream).Uint64("applied", l.applied).
		Uint64("new_applied", keep).Bool("by_time", !l.lastTime.IsZero()).
		Msg("the stream handed out the watermark's sequence numbers again (recreated, or lost its tail); applying its newer commands")
	gen := nextGeneration(l.gen, l.stream.CachedInfo().Created)
	err := l.update(ctx, func(tx kv.Txn) error {
		if lost != nil {
			if err := tx.Set(lost.audit.key, encodeOutbox(lost.audit)); err != nil {
				return err
			}
		}
		if err := tx.Set(generationKey(l.cfg.Stream), []byte(gen)); err != nil {
			return err
		}
		return tx.Set(appliedKey(l.cfg.Stream), encodeApplied(keep, l.lastTime))
	})
	if err != nil {
		return fmt.Errorf("state: rebase watermark: %w", err)
	}
	l.applied, l.gen, l.hasGen, l.seen = keep, gen, true, keep
	l.s.setWatermark(keep)
	l.log.Info().Str("stream", l.cfg.Stream).Str("generation", gen).Msg("new stream generation")
	if lost != nil {
		l.report([]outcome{*lost})
	}
	return nil
}

// checkStream runs before the consumer is recreated: a stream that was
// deleted under the service is created again with the configuration it had,
// and a stream that is not the one the service was reading (deleted and
// created again by someone else) is taken up as a new generation. Either
// way the commands the old stream held past the watermark are gone: one
// error in the log and one audit event (Lost, reason "stream recreated")
// name the stream and that range, and the service carries on with the new
// stream. While the stream cannot be had, Problem reports it and this
// retries until ctx is done.
func (l *loop) checkStream(ctx context.Context) error {
	old := l.stream.CachedInfo()
	backoff := retry.Backoff{Delay: 100 * time.Millisecond, Max: 5 * time.Second}
	for {
		stream, created, err := bus.RecreateStream(ctx, l.s.js, old.Config)
		if err == nil && !created && stream.CachedInfo().Created.Equal(old.Created) {
			l.stream = stream
			return nil
		}
		if err == nil {
			return l.newStream(ctx, stream, old, created)
		}
		err = fmt.Errorf("state: %w", err)
		l.s.problem.Set(err)
		l.log.Error().Err(err).Dur("retry_in", backoff.Delay).Msg("stream missing and not recreated; retrying")
		if backoff.Wait(ctx) != nil {
			return err
		}
	}
}

// newStream takes up stream, which replaced old, as a new generation and
// records the commands lost with old.
func (l *loop) newStream(ctx context.Context, stream jetstream.Stream, old *jetstream.StreamInfo, created bool) error {
	last := max(l.seen, l.applied)
	lost := lostOutcome(l.cfg.Stream, l.gen, l.applied+1, last, LostRecreated)
	l.s.problem.Set(fmt.Errorf("state: stream %s was deleted; recreating it", l.cfg.Stream))
	l.log.Error().Str("stream", l.cfg.Stream).Bool("recreated_here", created).Time("old_created", old.Created).
		Uint64("applied", l.applied).Uint64("lost_first_seq", l.applied+1).Uint64("lost_last_seq", last).Uint64("lost", last-l.applied).
		Msg("the stream was deleted under the service: carrying on with a new, empty stream of the same configuration; commands it held past the watermark are lost (recorded in the audit log)")
	l.stream = stream
	next, _, err := bus.ResumeAfter(ctx, stream, l.applied, l.lastTime)
	if err != nil {
		return fmt.Errorf("state: check watermark: %w", err)
	}
	return l.rebase(ctx, next, &lost)
}

// newGeneration stores the generation token of a store that has applied
// nothing yet: the stream's creation time.
func (l *loop) newGeneration(ctx context.Context) error {
	gen := nextGeneration("", l.stream.CachedInfo().Created)
	err := l.update(ctx, func(tx kv.Txn) error {
		return tx.Set(generationKey(l.cfg.Stream), []byte(gen))
	})
	if err != nil {
		return fmt.Errorf("state: store generation: %w", err)
	}
	l.gen, l.hasGen = gen, true
	return nil
}

func (l *loop) consumerConfig(startSeq uint64) jetstream.ConsumerConfig {
	c := jetstream.ConsumerConfig{
		Durable:       l.cfg.Consumer,
		Description:   "codi2 state service",
		FilterSubject: subjects.StateCmdWildcard,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       l.cfg.AckWait,
		MaxAckPending: 5 * l.cfg.MaxBatch,
		MaxDeliver:    -1,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	if startSeq > 1 {
		c.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		c.OptStartSeq = startSeq
	}
	return c
}

// ensureConsumer creates the durable consumer, or updates it when its
// position agrees with the store. A consumer that delivered past the store's
// watermark, or holds unacknowledged messages (a crash, or a shutdown whose
// last pull raced it), would hand the next commands out of order, so it is
// recreated to start right after the watermark.
func (l *loop) ensureConsumer(ctx context.Context) (jetstream.Consumer, error) {
	cons, err := l.stream.Consumer(ctx, l.cfg.Consumer)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return l.createConsumer(ctx, false)
	}
	if err != nil {
		return nil, fmt.Errorf("state: consumer %s: %w", l.cfg.Consumer, err)
	}
	info := cons.CachedInfo()
	if info.NumAckPending > 0 || info.Delivered.Stream > l.applied {
		l.log.Info().Str("stream", l.cfg.Stream).Uint64("seq", l.applied).
			Uint64("delivered", info.Delivered.Stream).Int("ack_pending", info.NumAckPending).
			Msg("consumer is ahead of the store; recreating it after the watermark")
		return l.createConsumer(ctx, true)
	}
	cc := l.consumerConfig(0)
	cc.DeliverPolicy, cc.OptStartSeq, cc.OptStartTime = info.Config.DeliverPolicy, info.Config.OptStartSeq, info.Config.OptStartTime
	cons, err = l.stream.CreateOrUpdateConsumer(ctx, cc)
	if err != nil {
		return nil, fmt.Errorf("state: update consumer %s: %w", l.cfg.Consumer, err)
	}
	return cons, nil
}

// createConsumer creates the durable consumer to deliver from right after
// the watermark, deleting the one there first when replace is set.
//
// Right after a delete the server may still refuse a consumer of the same
// name ("consumer already exists", or its files still going), so a replace
// retries for a few seconds before it gives up; a missing stream fails at
// once.
func (l *loop) createConsumer(ctx context.Context, replace bool) (jetstream.Consumer, error) {
	backoff := retry.Backoff{Delay: 20 * time.Millisecond, Max: time.Second}
	for attempt := 1; ; attempt++ {
		cons, err := l.tryCreateConsumer(ctx, replace)
		if err == nil || !replace || attempt == createConsumerAttempts || errors.Is(err, jetstream.ErrStreamNotFound) {
			return cons, err
		}
		l.log.Warn().Err(err).Dur("retry_in", backoff.Delay).Msg("recreate consumer")
		if backoff.Wait(ctx) != nil {
			return nil, err
		}
	}
}

// createConsumerAttempts bounds the tries of a consumer replace: about 5s.
const createConsumerAttempts = 10

func (l *loop) tryCreateConsumer(ctx context.Context, replace bool) (jetstream.Consumer, error) {
	if replace {
		if err := l.stream.DeleteConsumer(ctx, l.cfg.Consumer); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil, fmt.Errorf("state: delete consumer %s: %w", l.cfg.Consumer, err)
		}
	}
	cons, err := l.stream.CreateConsumer(ctx, l.consumerConfig(l.applied+1))
	if err != nil {
		return nil, fmt.Errorf("state: create consumer %s: %w", l.cfg.Consumer, err)
	}
	return cons, nil
}

func (l *loop) consume(cons jetstream.Consumer) (*session, error) {
	ss := &session{in: make(chan jetstream.Msg, l.cfg.MaxBatch), quit: make(chan struct{}), lost: make(chan struct{})}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		select {
		case ss.in <- m:
		case <-ss.quit:
		}
	},
		jetstream.PullMaxMessages(2*l.cfg.MaxBatch),
		// Pull requests expire every 5s with heartbeats every 2.5s, so a
		// consumer lost without a word (its stream deleted while no pull
		// was pending) is noticed within about 5s, not a minute.
		jetstream.PullExpiry(5*time.Second),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			l.log.Warn().Err(err).Str("stream", l.cfg.Stream).Msg("consumer")
			// Missed heartbeats: the consumer may be gone. Repositioning
			// recreates it after the watermark, which is harmless if it
			// was not, and fails Run if the stream is gone.
			if why := lostReason(err); why != "" {
				ss.lostOnce.Do(func() { ss.lostWhy = why; close(ss.lost) })
			}
		}))
	if err != nil {
		return nil, fmt.Errorf("state: consume %s: %w", l.cfg.Consumer, err)
	}
	ss.cc = cc
	return ss, nil
}

// lostReason says why err means the consumer may be gone, or "" when it
// does not: the server deleted it, or its heartbeats stopped (the consumer,
// its stream or the connection may be gone; the server does not say which).
func lostReason(err error) string {
	switch {
	case errors.Is(err, jetstream.ErrConsumerDeleted):
		return "consumer deleted"
	case errors.Is(err, jetstream.ErrNoHeartbeat):
		return "consumer heartbeats missed"
	}
	return ""
}

// reposition replaces the consumer session after a delivery gap, or after
// the consumer was deleted under it: commands after the watermark are
// delivered again, in order. It fails when the stream is gone.
func (l *loop) reposition(ctx context.Context, why string) error {
	l.log.Warn().Str("stream", l.cfg.Stream).Uint64("seq", l.applied).Msg(why + "; restarting the consumer after the watermark")
	l.sess.stop()
	if err := l.checkStream(ctx); err != nil {
		return err
	}
	cons, err := l.createConsumer(ctx, true)
	if err != nil {
		return err
	}
	l.sess, err = l.consume(cons)
	if err == nil {
		l.s.problem.Set(nil)
	}
	return err
}

// run is the apply loop: wait for a command or a timer, gather a batch,
// commit it, report it, look after leases and the outbox.
func (l *loop) run(ctx context.Context) error {
	// ctx only says when to stop: a gathered batch is committed and reported
	// even if ctx ends meanwhile, so store work runs under work.
	work := context.WithoutCancel(ctx)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		timer.Reset(l.nextWake(time.Now()))
		var first jetstream.Msg
		// Commands that wait go before the timer's work: with leases due
		// the timer fires at once after every expiry slice, and commands
		// must not wait for every slice.
		if ctx.Err() != nil {
			return l.shutdown()
		}
		select {
		case first = <-l.sess.in:
		default:
			select {
			case first = <-l.sess.in:
			case <-timer.C:
				if err := l.housekeep(work, true); err != nil {
					return err
				}
				continue
			case <-l.auditsAcked():
				if err := l.pumpAudits(work); err != nil {
					return err
				}
				continue
			case <-l.sess.lost:
				if err := l.reposition(work, l.sess.lostWhy); err != nil {
					return err
				}
				continue
			case <-ctx.Done():
				return l.shutdown()
			}
		}
		batch, gap := l.gather(ctx, first, l.cfg.MaxBatchWait)
		if err := l.process(work, batch); err != nil {
			return err
		}
		if gap {
			if err := l.reposition(work, "delivery gap"); err != nil {
				return err
			}
		}
		if err := l.housekeep(work, false); err != nil {
			return err
		}
	}
}

// nextWake is how long the loop may sleep: until the earliest lease, a due
// outbox flush or publish retry, and at most LeaseSweepInterval.
func (l *loop) nextWake(now time.Time) time.Duration {
	at := now.Add(l.cfg.LeaseSweepInterval)
	earlier := func(t time.Time) {
		if !t.IsZero() && t.Before(at) {
			at = t
		}
	}
	if !l.nextLease.IsZero() {
		if l.sweepAfter.After(l.nextLease) {
			earlier(l.sweepAfter)
		} else {
			earlier(l.nextLease)
		}
	}
	if l.hasDone() {
		earlier(l.lastActive.Add(l.cfg.OutboxIdleFlush))
	}
	if l.hasUnpublished() {
		earlier(l.auditRetry)
	}
	if d := at.Sub(now); d > 0 {
		return d
	}
	return 0
}

// gather collects a batch that starts with first: whatever else is ready,
// up to MaxBatch commands, waiting up to wait for more. Commands at or below
// the watermark (replays) are acked and dropped. gap reports a hole in the
// delivery sequence: the batch ends before it, and the caller repositions.
func (l *loop) gather(ctx context.Context, first jetstream.Msg, wait time.Duration) (batch []*inMsg, gap bool) {
	size := 0
	add := func(m jetstream.Msg) {
		md, err := m.Metadata()
		if err != nil {
			l.log.Error().Err(err).Str("subject", m.Subject()).Msg("message without JetStream metadata")
			_ = m.Term()
			return
		}
		if l.sess.lastCSeq != 0 && md.Sequence.Consumer != l.sess.lastCSeq+1 {
			gap = true
			return
		}
		l.sess.lastCSeq = md.Sequence.Consumer
		seq := md.Sequence.Stream
		l.seen = max(l.seen, seq)
		last := l.applied
		if n := len(batch); n > 0 {
			last = batch[n-1].seq
		}
		switch {
		case seq <= l.applied:
			// A replay of a committed command: its effect is in the store.
			_ = m.Ack()
			return
		case seq <= last:
			// Out of order within this batch: only a redelivery can do
			// that; start again from the watermark.
			gap = true
			return
		}
		batch = append(batch, &inMsg{msg: m, seq: seq, cseq: md.Sequence.Consumer, time: md.Timestamp.UTC(), subject: m.Subject(), data: m.Data()})
		size += len(m.Data())
	}
	add(first)
	var timeout <-chan time.Time
	for !gap && len(batch) < l.cfg.MaxBatch && size < l.cfg.MaxBatchBytes {
		select {
		case m := <-l.sess.in:
			add(m)
			continue
		default:
		}
		if wait <= 0 {
			break
		}
		if timeout == nil {
			t := time.NewTimer(wait)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case m := <-l.sess.in:
			add(m)
			continue
		case <-timeout:
		case <-ctx.Done():
		}
		break
	}
	return batch, gap
}

// process commits batch in as many transactions as its size needs and
// reports each one.
//
// A batch whose transaction fails on a damaged store page (kv.ErrCorrupt)
// is committed again one command at a time, so that only the command that
// touches the damage fails: it is rejected with reason corrupt (see
// commitCorrupt) and the others are applied.
func (l *loop) process(ctx context.Context, batch []*inMsg) error {
	for len(batch) > 0 {
		clears := l.takeDone()
		start := time.Now()
		res, err := l.commit(ctx, batch, clears)
		if err != nil {
			l.untakeDone(clears)
			if !errors.Is(err, kv.ErrCorrupt) {
				return err
			}
			if len(batch) > 1 {
				if err := l.process(ctx, batch[:1]); err != nil {
					return err
				}
				batch = batch[1:]
				continue
			}
			if res, err = l.commitCorrupt(ctx, batch[0], err); err != nil {
				return err
			}
			clears = nil
		}
		l.s.observeBatch(res.n, time.Since(start))
		l.committed(ctx, res, batch[:res.n], clears)
		batch = batch[res.n:]
	}
	return nil
}

// commitCorrupt commits the rejection of im, whose transaction failed with
// cause on a damaged page, with the watermark: reason corrupt, the cause as
// detail. It fails when that transaction fails too (the damage is where
// every transaction writes).
func (l *loop) commitCorrupt(ctx context.Context, im *inMsg, cause error) (batchResult, error) {
	var res batchResult
	kind, id, actor := salvage(im.subject)
	in := opInput{kind: kind, id: id, actor: actor, msgID: commandMsgID(l.gen, im.seq)}
	outcomes := []outcome{reject(im, in, rawOp(im.data), ReasonCorrupt, 0, cause.Error())}
	if im.seq > l.applied+1 {
		outcomes = append([]outcome{lostOutcome(l.cfg.Stream, l.gen, l.applied+1, im.seq-1, "")}, outcomes...)
	}
	err := l.update(ctx, func(tx kv.Txn) error {
		res = batchResult{n: 1, applied: im.seq, lastTime: im.time, outcomes: outcomes}
		p := plan{outcomes: res.outcomes}
		if err := applyPlan(tx, &p); err != nil {
			return err
		}
		if err := tx.Set(appliedKey(l.cfg.Stream), encodeApplied(im.seq, im.time)); err != nil {
			return err
		}
		var err error
		res.nextLease, err = firstLease(tx)
		return err
	})
	if err != nil {
		return batchResult{}, fmt.Errorf("state: reject seq=%d on a damaged store: %w (first: %v)", im.seq, err, cause)
	}
	return res, nil
}

// batchResult is what a committed batch transaction computed. The Update
// closure resets it on every run, so a retried closure leaves no trace of
// the failed attempt.
type batchResult struct {
	n         int // commands of the batch this transaction covered
	applied   uint64
	lastTime  time.Time
	nextLease time.Time
	outcomes  []outcome
	bytes     int
	work      int      // overlap-check steps (plan.work)
	corrupt   []string // leases whose record is corrupt (expireDue)
}

// update runs fn in a store transaction, retrying conflicts and timeouts a
// few times: fn is pure, so a retry is safe.
func (l *loop) update(ctx context.Context, fn func(tx kv.Txn) error) error {
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if err = l.s.store.Update(ctx, fn); err == nil || !(errors.Is(err, kv.ErrConflict) || errors.Is(err, kv.ErrTimeout)) || ctx.Err() != nil {
			return err
		}
		l.log.Warn().Err(err).Int("attempt", attempt+1).Msg("store transaction failed; retrying")
		time.Sleep(time.Duration(attempt+1) * 50 * time.Millisecond)
	}
	return err
}

// maxBatchWork bounds the overlap-check steps of one batch transaction
// (plan.work): a batch of costly reservations is cut like a batch of large
// commands, so that it stays well within the store's five-second
// transaction limit. It only decides where batches end, never an outcome.
const maxBatchWork = 2 * MaxCheckSteps

// commit applies a prefix of batch (all of it unless MaxBatchBytes or
// maxBatchWork cuts it)
// and the watermark in one transaction, together with clearing the outbox
// keys of acknowledged audit events.
func (l *loop) commit(ctx context.Context, batch []*inMsg, clears []*auditItem) (batchResult, error) {
	var res batchResult
	err := l.update(ctx, func(tx kv.Txn) error {
		res = batchResult{n: len(batch), outcomes: res.outcomes[:0]}
		applied, err := l.begin(tx, clears)
		if err != nil {
			return err
		}
		start, count := applied, 0
		for i, im := range batch {
			if im.seq <= applied {
				continue
			}
			p, err := planCommand(tx, im, applied, l.gen)
			if err != nil {
				return err
			}
			if im.seq > applied+1 {
				// The consumer delivers every message the stream holds,
				// in order: the ones between are gone from it.
				p.outcomes = append([]outcome{lostOutcome(l.cfg.Stream, l.gen, applied+1, im.seq-1, "")}, p.outcomes...)
			}
			size := p.size()
			if count > 0 && (res.bytes+size > l.cfg.MaxBatchBytes || res.work+p.work > maxBatchWork) {
				if err := p.rollback(); err != nil {
					return err
				}
				res.n = i
				break
			}
			if err := applyPlan(tx, &p); err != nil {
				return fmt.Errorf("state: apply %s seq=%d: %w", im.subject, im.seq, err)
			}
			res.bytes += size
			res.work += p.work
			res.outcomes = append(res.outcomes, p.outcomes...)
			applied, res.lastTime = im.seq, im.time
			count++
		}
		if applied != start {
			if err := tx.Set(appliedKey(l.cfg.Stream), encodeApplied(applied, res.lastTime)); err != nil {
				return err
			}
		}
		res.applied = applied
		res.nextLease, err = firstLease(tx)
		return err
	})
	if err != nil {
		return batchResult{}, fmt.Errorf("state: commit batch of %d at seq %d: %w", len(batch), batch[0].seq, err)
	}
	return res, nil
}

// begin starts a batch or expiry transaction: it clears the outbox keys of
// the acknowledged audit events in clears and returns the applied watermark.
func (l *loop) begin(tx kv.Txn, clears []*auditItem) (uint64, error) {
	for _, it := range clears {
		if err := tx.Clear(it.key); err != nil {
			return 0, err
		}
	}
	return getApplied(tx, l.cfg.Stream)
}

// applyPlan makes p's writes (unless planning made them already) and
// stores its audit events in the outbox.
func applyPlan(tx kv.Txn, p *plan) error {
	if p.undo == nil {
		if err := applyWrites(tx, p.writes); err != nil {
			return err
		}
	}
	for _, o := range p.outcomes {
		if o.summary {
			continue
		}
		if err := tx.Set(o.audit.key, encodeOutbox(o.audit)); err != nil {
			return err
		}
	}
	return nil
}

// committed reports a committed batch: watermark, events, acks, audit.
func (l *loop) committed(ctx context.Context, res batchResult, msgs []*inMsg, clears []*auditItem) {
	l.dropCleared(clears)
	advanced := res.applied > l.applied
	l.applied, l.nextLease = res.applied, res.nextLease
	if !res.lastTime.IsZero() {
		l.lastTime = res.lastTime
	}
	if advanced {
		l.s.setWatermark(res.applied)
	}
	for _, o := range res.outcomes {
		if o.status == StatusLost {
			l.log.Error().Str("stream", l.cfg.Stream).RawJSON("lost", o.audit.data).
				Msg("commands missing from the stream (purged, deleted or expired before they were applied); recorded in the audit log")
		}
	}
	l.report(res.outcomes)
	if advanced {
		if err := l.s.nc.Publish(subjects.StateCommitted, mustJSON(watermark{StreamSeq: res.applied})); err != nil {
			l.log.Warn().Err(err).Msg("publish watermark")
		}
	}
	for _, im := range msgs {
		if err := im.msg.Ack(); err != nil {
			l.log.Warn().Err(err).Str("subject", im.subject).Uint64("seq", im.seq).Msg("ack")
		}
	}
	l.lastActive = time.Now()
	if e := l.log.Debug(); e.Enabled() {
		e.Str("stream", l.cfg.Stream).Int("batch", len(msgs)).Uint64("seq", res.applied).Int("bytes", res.bytes).Msg("batch committed")
	}
	_ = l.pumpAudits(ctx)
}

// report publishes the events of outcomes and queues their audit events.
func (l *loop) report(outcomes []outcome) {
	for i := range outcomes {
		o := &outcomes[i]
		l.s.observeOutcome(o)
		if o.evtSubject != "" {
			if err := l.s.nc.Publish(o.evtSubject, o.evt); err != nil {
				l.log.Warn().Err(err).Str("subject", o.evtSubject).Uint64("seq", o.seq).Msg("publish event")
			}
		}
		if o.reason == ReasonCorrupt {
			l.log.Error().Uint64("seq", o.seq).Str("agent", o.actor).Str("kind", o.kind).Str("id", o.id).
				Str("detail", o.detail).Msg("command rejected: its record in the store is corrupt")
		} else if o.status == StatusRejected {
			e := l.log.Info().Uint64("seq", o.seq).Str("agent", o.actor).Str("kind", o.kind).Str("id", o.id).
				Str("op", string(o.op)).Str("reason", string(o.reason))
			if o.rawSubject != "" {
				e = e.Str("subject", o.rawSubject)
			}
			e.Str("detail", o.detail).Msg("command rejected")
		}
		if o.summary {
			continue
		}
		if len(l.audits) >= maxAuditMemory {
			l.spilled = true
			continue
		}
		l.audits = append(l.audits, &auditItem{outboxEntry: o.audit})
	}
}

// housekeep runs after every batch and on the loop's timer: it publishes
// pending audit events, expires due leases and, when idle, clears the
// outbox.
func (l *loop) housekeep(ctx context.Context, idle bool) error {
	if err := l.pumpAudits(ctx); err != nil {
		return err
	}
	now := time.Now()
	if err := l.sweep(ctx, now); err != nil {
		return err
	}
	if idle && len(l.sess.in) == 0 && !now.Before(l.tailChecked.Add(tailCheckInterval)) {
		l.tailChecked = now
		if err := l.checkTail(ctx); err != nil {
			return err
		}
	}
	if idle && l.hasDone() && !now.Before(l.lastActive.Add(l.cfg.OutboxIdleFlush)) && len(l.sess.in) == 0 {
		return l.flushOutbox(ctx)
	}
	return nil
}

// tailCheckInterval is how often an idle loop looks for commands the
// stream lost after the watermark (checkTail).
const tailCheckInterval = 5 * time.Second

// checkTail records the commands after the watermark that the stream no
// longer holds when it holds none after it (bus.LostTail): purged while
// the service was behind, they would never be delivered, and the
// watermark would stay below the stream's end without a word. The loss is
// logged at error and committed as one audit event with the watermark at
// the stream's last sequence. A failed look is logged and tried again.
func (l *loop) checkTail(ctx context.Context) error {
	first, last, ok, err := bus.LostTail(ctx, l.stream, l.applied, subjects.StateCmdWildcard)
	if err != nil {
		l.log.Warn().Err(err).Str("stream", l.cfg.Stream).Msg("look for commands lost after the watermark")
		return nil
	}
	if !ok {
		return nil
	}
	o := lostOutcome(l.cfg.Stream, l.gen, first, last, "")
	var res batchResult
	err = l.update(ctx, func(tx kv.Txn) error {
		// The loop is the only writer: the watermark is l.applied.
		res = batchResult{applied: last, outcomes: []outcome{o}}
		p := plan{outcomes: res.outcomes}
		if err := applyPlan(tx, &p); err != nil {
			return err
		}
		if err := tx.Set(appliedKey(l.cfg.Stream), encodeApplied(last, l.lastTime)); err != nil {
			return err
		}
		res.nextLease, err = firstLease(tx)
		return err
	})
	if err != nil {
		return fmt.Errorf("state: record commands %d-%d lost: %w", first, last, err)
	}
	l.committed(ctx, res, nil, nil)
	return nil
}

// shutdown stops intake, applies and acks what was delivered, and flushes
// the audit outbox, all bounded by ShutdownTimeout.
func (l *loop) shutdown() error {
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.ShutdownTimeout)
	defer cancel()
	l.sess.cc.Drain()
	closed := l.sess.cc.Closed()
	var err error
drain:
	for err == nil {
		select {
		case m := <-l.sess.in:
			batch, gap := l.gather(ctx, m, 0)
			err = l.process(ctx, batch)
			if gap {
				// The rest comes again, in order, on the next start.
				break drain
			}
		case <-closed:
			for err == nil && len(l.sess.in) > 0 {
				batch, gap := l.gather(ctx, <-l.sess.in, 0)
				err = l.process(ctx, batch)
				if gap {
					break
				}
			}
			break drain
		case <-ctx.Done():
			l.log.Warn().Msg("shutdown timeout: commands left unapplied are redelivered on the next start")
			break drain
		}
	}
	l.sess.stop()
	if err != nil {
		return err
	}
	// Wait for the audit PubAcks, then clear what they cover.
	for {
		if err := l.pumpAudits(ctx); err != nil {
			return err
		}
		if l.inflight == 0 {
			break
		}
		select {
		case <-l.s.js.PublishAsyncComplete():
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	l.pollAudits()
	if l.hasDone() {
		return l.flushOutbox(ctx)
	}
	return nil
}

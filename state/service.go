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

	"github.com/codi2/codi2/audit"
	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/internal/pipeline"
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
			err = l.p.Run(ctx)
			if err == nil {
				err = l.finish()
			}
			// Answer the waiting gets (the final batch is committed), then
			// stop the endpoints; until they are gone requests get 503.
			s.stopRequests()
			if serr := svc.Stop(); serr != nil && !errors.Is(serr, nats.ErrConnectionClosed) {
				s.log.Warn().Err(serr).Msg("stop micro service")
			}
		}
		l.p.Stop()
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

// loop is the single writer: it owns the watermark and the audit outbox,
// and is the pipeline's handler (internal/pipeline owns the consumer).
// Only Run's goroutine touches it.
type loop struct {
	s   *Service
	cfg Config
	log zerolog.Logger
	p   *pipeline.Pipeline[*inMsg]

	applied   uint64    // committed watermark
	lastTime  time.Time // stored time of the last applied command
	gen       string    // the stream's generation token (generation.go)
	hasGen    bool      // gen is stored (a store from before keeps none)
	nextLease time.Time // earliest lease in the index; zero for none
	// sweepAfter delays a due sweep that waits for commands stored before
	// the lease's end.
	sweepAfter time.Time

	audits     []*auditItem
	pubs       []*auditPub // publishes in flight, in order
	bulk       *audit.Bulk // builds the next bulk message
	spilled    bool        // the store's outbox holds entries missing from audits
	auditRetry time.Time   // no publish attempts before this
	lastActive time.Time

	// pending holds the batches applied and not yet durable, in commit
	// order, each as its transactions (CommitAsync, Durable).
	pending [][]piece
}

// auditPub is one bulk audit message of outbox entries in flight.
type auditPub struct {
	fut   jetstream.PubAckFuture
	items []*auditItem
}

// auditItem is an outbox entry and the state of its publish.
type auditItem struct {
	outboxEntry
	pub      *auditPub // in flight; nil when not
	stuck    bool      // cannot be published (a damaged entry): skipped
	done     bool      // PubAck received
	clearing bool      // handed to a transaction that clears its outbox key
}

// start loads the watermark and outbox from the store and opens the
// pipeline (stream, resume, consumer).
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
	l.p, err = pipeline.New(pipeline.Config{
		Name:    "state",
		Stream:  l.cfg.Stream,
		Subject: subjects.StateCmdWildcard,
		Consumer: jetstream.ConsumerConfig{
			Durable:       l.cfg.Consumer,
			Description:   "codi2 state service",
			FilterSubject: subjects.StateCmdWildcard,
			// AckAll: one ack per committed batch, for its last command
			// (commands are applied in stream order, so it covers them
			// all). A consumer an earlier version made with AckExplicit is
			// replaced after the watermark (pipeline.ensureConsumer).
			AckPolicy:     jetstream.AckAllPolicy,
			AckWait:       l.cfg.AckWait,
			MaxAckPending: 5 * l.cfg.MaxBatch,
			MaxDeliver:    -1,
		},
		MaxBatch:          l.cfg.MaxBatch,
		MaxBatchBytes:     l.cfg.MaxBatchBytes,
		MaxBatchWait:      l.cfg.MaxBatchWait,
		PullMessages:      2 * l.cfg.MaxBatch,
		Buffer:            l.cfg.MaxBatch,
		ShutdownTimeout:   l.cfg.ShutdownTimeout,
		TailCheckInterval: tailCheckInterval,
	}, l.s.js, l, prepareCommand, &l.s.problem, l.log)
	if err != nil {
		return err
	}
	return l.p.Open(ctx)
}

// prepareCommand is the pipeline's Prepare: the command and its size.
func prepareCommand(m jetstream.Msg, md *jetstream.MsgMetadata) (*inMsg, int) {
	return &inMsg{msg: m, seq: md.Sequence.Stream, cseq: md.Sequence.Consumer, time: md.Timestamp.UTC(), subject: m.Subject(), data: m.Data()}, len(m.Data())
}

// Watermark is the pipeline's view of the committed watermark.
func (l *loop) Watermark() (uint64, time.Time) { return l.applied, l.lastTime }

// Resume takes up stream at start: a moved watermark is rebased, and a
// store that has applied nothing yet stores the stream's generation.
func (l *loop) Resume(ctx context.Context, stream jetstream.Stream, keep uint64, moved bool) error {
	switch {
	case moved:
		return l.rebase(ctx, stream, keep, nil)
	case !l.hasGen && l.applied == 0:
		return l.newGeneration(ctx, stream)
	}
	return nil
}

// Replace takes up stream, which replaced the one deleted under the
// service, as a new generation, and records the commands lost with the
// old one (first..last, reason LostRecreated) in the same transaction.
func (l *loop) Replace(ctx context.Context, stream jetstream.Stream, keep, first, last uint64) error {
	lost := lostOutcome(l.cfg.Stream, l.gen, first, last, LostRecreated)
	return l.rebase(ctx, stream, keep, &lost)
}

// Commit applies a batch of commands and returns once it is durable
// (internal/pipeline acks it after).
func (l *loop) Commit(ctx context.Context, batch []*pipeline.Msg[*inMsg]) error {
	durable, err := l.CommitAsync(ctx, batch)
	if err != nil {
		return err
	}
	if durable != nil {
		if err := durable(); err != nil {
			return err
		}
	}
	return l.Durable(ctx, batch)
}

// CommitAsync applies a batch of commands and answers them (see apply);
// durable, nil on a store without a split commit, waits for its fsync and
// runs on a goroutine of the pipeline's, touching nothing of the loop's.
// The pipeline calls Durable once it returned nil, then acks the batch.
func (l *loop) CommitAsync(ctx context.Context, batch []*pipeline.Msg[*inMsg]) (func() error, error) {
	ims := make([]*inMsg, len(batch))
	for i, m := range batch {
		ims[i] = m.Value
	}
	pieces, err := l.apply(ctx, ims)
	if err != nil {
		return nil, err
	}
	l.pending = append(l.pending, pieces)
	waits := false
	for _, pc := range pieces {
		waits = waits || pc.durable != nil
	}
	if !waits {
		return nil, nil
	}
	return func() error {
		for _, pc := range pieces {
			if pc.durable == nil {
				continue
			}
			if err := pc.durable(); err != nil {
				return fmt.Errorf("state: batch of %d at seq %d applied but not made durable: %w", pc.res.n, pc.msgs[0].seq, err)
			}
		}
		return nil
	}, nil
}

// Durable reports the oldest batch CommitAsync applied, now durable: the
// committed watermark and its audit events.
func (l *loop) Durable(ctx context.Context, _ []*pipeline.Msg[*inMsg]) error {
	pieces := l.pending[0]
	l.pending[0] = nil
	l.pending = l.pending[1:]
	for _, pc := range pieces {
		l.s.observeBatch(pc.res.n, pc.took)
		l.committed(ctx, pc.res, pc.msgs, pc.clears)
	}
	return nil
}

// Wake is when the loop's own work is next due (nextWake), and the
// channel of audit PubAcks.
func (l *loop) Wake(now time.Time) (time.Time, <-chan struct{}) {
	return now.Add(l.nextWake(now)), l.auditsAcked()
}

// Tick runs the loop's own work; see housekeep.
func (l *loop) Tick(ctx context.Context, idle bool) error { return l.housekeep(ctx, idle) }

// rebase moves the watermark back to keep: the stream handed its sequence
// numbers out again (see bus.ResumeAfter), and its commands after keep are
// new, to be applied rather than taken for redeliveries. A store that
// predates the watermark's time takes every command in the stream as
// applied.
//
// lost, when not nil, is the outcome recording what the old stream held
// past the watermark (a stream deleted under the service); it goes to the
// outbox in the same transaction.
func (l *loop) rebase(ctx context.Context, stream jetstream.Stream, keep uint64, lost *outcome) error {
	l.log.Warn().Str("stream", l.cfg.Stream).Uint64("applied", l.applied).
		Uint64("new_applied", keep).Bool("by_time", !l.lastTime.IsZero()).
		Msg("the stream handed out the watermark's sequence numbers again (recreated, or lost its tail); applying its newer commands")
	gen := nextGeneration(l.gen, stream.CachedInfo().Created)
	err := l.update(ctx, func(tx kv.Txn) error {
		if lost != nil {
			if err := l.applyPlan(tx, &plan{outcomes: []outcome{*lost}}, l.lastTime); err != nil {
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
	l.applied, l.gen, l.hasGen = keep, gen, true
	l.s.setWatermark(keep)
	l.log.Info().Str("stream", l.cfg.Stream).Str("generation", gen).Msg("new stream generation")
	if lost != nil {
		l.report([]outcome{*lost})
	}
	return nil
}

// newGeneration stores the generation token of a store that has applied
// nothing yet: the stream's creation time.
func (l *loop) newGeneration(ctx context.Context, stream jetstream.Stream) error {
	gen := nextGeneration("", stream.CachedInfo().Created)
	err := l.update(ctx, func(tx kv.Txn) error {
		return tx.Set(generationKey(l.cfg.Stream), []byte(gen))
	})
	if err != nil {
		return fmt.Errorf("state: store generation: %w", err)
	}
	l.gen, l.hasGen = gen, true
	return nil
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

// piece is one transaction of a batch: applied, and durable once durable
// returns nil (nil: durable already).
type piece struct {
	res     batchResult
	durable func() error
	msgs    []*inMsg
	clears  []*auditItem
	took    time.Duration
}

// apply commits batch in as many transactions as its size needs and takes
// in each one's outcomes as decided (decided: its answers are published);
// the caller reports each piece once it is durable (committed).
//
// A batch whose transaction fails on a damaged store page (kv.ErrCorrupt)
// is committed again one command at a time, so that only the command that
// touches the damage fails: it is rejected with reason corrupt (see
// commitCorrupt) and the others are applied.
func (l *loop) apply(ctx context.Context, batch []*inMsg) ([]piece, error) {
	var out []piece
	for len(batch) > 0 {
		clears := l.takeDone()
		start := time.Now()
		res, durable, err := l.commit(ctx, batch, clears)
		if err != nil {
			l.untakeDone(clears)
			if !errors.Is(err, kv.ErrCorrupt) {
				return out, err
			}
			if len(batch) > 1 {
				one, err := l.apply(ctx, batch[:1])
				out = append(out, one...)
				if err != nil {
					return out, err
				}
				batch = batch[1:]
				continue
			}
			if res, err = l.commitCorrupt(ctx, batch[0], err); err != nil {
				return out, err
			}
			clears, durable = nil, nil
		}
		// The outcomes are decided once the transaction is applied
		// (commands apply in stream order, so a replay after a crash
		// decides the same): they are answered now, and the watermark
		// follows once the commit is durable.
		l.decided(res)
		out = append(out, piece{res: res, durable: durable, msgs: batch[:res.n], clears: clears, took: time.Since(start)})
		batch = batch[res.n:]
	}
	return out, nil
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
		if err := l.applyPlan(tx, &p, im.time); err != nil {
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

// update runs fn in a store transaction and returns once it is durable;
// see updateAsync.
func (l *loop) update(ctx context.Context, fn func(tx kv.Txn) error) error {
	durable, err := l.updateAsync(ctx, fn)
	if err != nil {
		return err
	}
	return durable()
}

// updateAsync runs fn in a store transaction, retrying conflicts and
// timeouts a few times (fn is pure, so a retry is safe), and returns once
// its writes are applied: durable reports when they are on stable storage
// (kv.UpdateAsync; at once on a store without a split commit).
func (l *loop) updateAsync(ctx context.Context, fn func(tx kv.Txn) error) (durable func() error, err error) {
	for attempt := 0; attempt < 3; attempt++ {
		durable, err = kv.UpdateAsync(ctx, l.s.store, fn)
		if err == nil || !(errors.Is(err, kv.ErrConflict) || errors.Is(err, kv.ErrTimeout)) || ctx.Err() != nil {
			return durable, err
		}
		l.log.Warn().Err(err).Int("attempt", attempt+1).Msg("store transaction failed; retrying")
		time.Sleep(time.Duration(attempt+1) * 50 * time.Millisecond)
	}
	return nil, err
}

// maxBatchWork bounds the overlap-check steps of one batch transaction
// (plan.work): a batch of costly reservations is cut like a batch of large
// commands, so that it stays well within the store's five-second
// transaction limit. It only decides where batches end, never an outcome.
const maxBatchWork = 2 * MaxCheckSteps

// batchWrites is about how many keys a command writes (its record, its
// index list, a few index entries, its outbox entry): what the batch
// layer makes room for per command before the first is planned.
const batchWrites = 8

// payloadPerWrite is about how many bytes of a multi-record command's
// payload one key it writes takes (an operation of ~130 bytes writes its
// outbox entry and, with its record's other operations in the batch, one
// or two of the record's keys): room for a command's writes is
// batchWrites, or its payload's length over payloadPerWrite when that is
// more, so that the batch layer is not grown (rehashed) several times
// over by a batch of imports.
const payloadPerWrite = 64

// batchRoom is how many writes the batch layer makes room for: see
// payloadPerWrite.
func batchRoom(batch []*inMsg) int {
	n := 0
	for _, im := range batch {
		n += max(batchWrites, len(im.data)/payloadPerWrite)
	}
	return n
}

// commit applies a prefix of batch (all of it unless MaxBatchBytes or
// maxBatchWork cuts it)
// and the watermark in one transaction, together with clearing the outbox
// keys of acknowledged audit events. It returns once the transaction is
// applied; durable reports when it is on stable storage.
func (l *loop) commit(ctx context.Context, batch []*inMsg, clears []*auditItem) (batchResult, func() error, error) {
	var res batchResult
	durable, err := l.updateAsync(ctx, func(store kv.Txn) error {
		res = batchResult{n: len(batch), outcomes: res.outcomes[:0]}
		// The batch layer: every read and write below goes through it,
		// and it is written to the store once, at the end.
		tx := newStagedTxn(store)
		tx.reserve(batchRoom(batch))
		ap := l.auditAppender(tx)
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
				p.discard()
				res.n = i
				break
			}
			if err := l.applyPlanWith(tx, ap, &p, im.time); err != nil {
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
		if res.nextLease, err = firstLease(tx); err != nil {
			return err
		}
		if err := flushAudit(ap); err != nil {
			return err
		}
		return tx.flush()
	})
	if err != nil {
		return batchResult{}, nil, fmt.Errorf("state: commit batch of %d at seq %d: %w", len(batch), batch[0].seq, err)
	}
	return res, durable, nil
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

// applyPlan is applyPlan, or, with Config.AppendAudit, p's writes and its
// audit events appended to the audit log in tx (the outbox stays empty),
// dated at: the stored time of the command they answer (or the lease end
// of an expiry), never the clock of the transaction, so that applying the
// same stream again writes the same records (every replica's chain is the
// same; ARCHITECTURE.md). A transaction that applies several plans shares
// one appender: applyPlanWith and flushAudit.
func (l *loop) applyPlan(tx kv.Txn, p *plan, at time.Time) error {
	ap := l.auditAppender(tx)
	if err := l.applyPlanWith(tx, ap, p, at); err != nil {
		return err
	}
	return flushAudit(ap)
}

// auditAppender is tx's appender with Config.AppendAudit, nil without.
func (l *loop) auditAppender(tx kv.Txn) AuditAppender {
	if l.cfg.AppendAudit == nil {
		return nil
	}
	return l.cfg.AppendAudit(tx)
}

// applyPlanWith is applyPlan appending through ap (nil: the outbox),
// which the caller flushes (flushAudit) before the transaction commits.
func (l *loop) applyPlanWith(tx kv.Txn, ap AuditAppender, p *plan, at time.Time) error {
	if ap == nil {
		return applyPlan(tx, p)
	}
	if err := p.write(tx); err != nil {
		return err
	}
	for _, o := range p.outcomes {
		if !o.summary {
			if err := ap.Append(o.audit.subject, o.audit.msgID, o.audit.data, at); err != nil {
				return err
			}
		}
	}
	return nil
}

// flushAudit flushes ap, if there is one.
func flushAudit(ap AuditAppender) error {
	if ap == nil {
		return nil
	}
	return ap.Flush()
}

// applyPlan makes p's writes and stores its audit events in the outbox.
func applyPlan(tx kv.Txn, p *plan) error {
	if err := p.write(tx); err != nil {
		return err
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

// decided takes in a transaction that is applied, durable or not: the
// loop's applied watermark and next lease, and the outcomes' events (the
// answers to the commands).
func (l *loop) decided(res batchResult) {
	l.applied, l.nextLease = max(l.applied, res.applied), res.nextLease
	if !res.lastTime.IsZero() {
		l.lastTime = res.lastTime
	}
	l.announce(res.outcomes)
}

// committed reports a batch once it is durable: the committed watermark
// and the audit events (the pipeline acks the commands). decided ran
// before it.
func (l *loop) committed(ctx context.Context, res batchResult, msgs []*inMsg, clears []*auditItem) {
	l.dropCleared(clears)
	advanced := res.applied > l.s.Watermark()
	if advanced {
		l.s.setWatermark(res.applied)
	}
	for _, o := range res.outcomes {
		if o.status == StatusLost {
			l.log.Error().Str("stream", l.cfg.Stream).RawJSON("lost", o.audit.data).
				Msg("commands missing from the stream (purged, deleted or expired before they were applied); recorded in the audit log")
		}
	}
	l.queueAudits(res.outcomes)
	if advanced {
		if err := l.s.nc.Publish(subjects.StateCommitted, mustJSON(watermark{StreamSeq: res.applied})); err != nil {
			l.log.Warn().Err(err).Msg("publish watermark")
		}
	}
	l.lastActive = time.Now()
	if e := l.log.Debug(); e.Enabled() {
		e.Str("stream", l.cfg.Stream).Int("batch", len(msgs)).Uint64("seq", res.applied).Int("bytes", res.bytes).Msg("batch committed")
	}
	_ = l.pumpAudits(ctx)
}

// report publishes the events of outcomes and queues their audit events,
// for a transaction that is durable already.
func (l *loop) report(outcomes []outcome) {
	l.announce(outcomes)
	l.queueAudits(outcomes)
}

// announce publishes the events of outcomes and logs the rejections.
func (l *loop) announce(outcomes []outcome) {
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
	}
}

// queueAudits queues the audit events of outcomes for publishing to
// CODI_AUDIT (none with Config.AppendAudit: they are in the log already).
func (l *loop) queueAudits(outcomes []outcome) {
	for i := range outcomes {
		o := &outcomes[i]
		if o.summary {
			continue
		}
		if l.cfg.AppendAudit != nil {
			continue // in the log already
		}
		if len(l.audits) >= maxAuditMemory {
			l.spilled = true
			continue
		}
		l.audits = append(l.audits, &auditItem{outboxEntry: o.audit})
	}
}

// housekeep runs after every batch and on the loop's timer: it publishes
// pending audit events, expires due leases and, when idle (no command
// waits), clears the outbox.
func (l *loop) housekeep(ctx context.Context, idle bool) error {
	if err := l.pumpAudits(ctx); err != nil {
		return err
	}
	now := time.Now()
	if err := l.sweep(ctx, now); err != nil {
		return err
	}
	if idle && l.hasDone() && !now.Before(l.lastActive.Add(l.cfg.OutboxIdleFlush)) {
		return l.flushOutbox(ctx)
	}
	return nil
}

// tailCheckInterval is how often an idle loop looks for commands the
// stream lost after the watermark (Lost).
const tailCheckInterval = 5 * time.Second

// Lost records the commands first..last after the watermark that the
// stream no longer holds while it holds none after them (bus.LostTail,
// called by the pipeline): purged while the service was behind, they would
// never be delivered, and the watermark would stay below the stream's end
// without a word. The loss is logged at error and committed as one audit
// event with the watermark at the stream's last sequence.
func (l *loop) Lost(ctx context.Context, first, last uint64) error {
	o := lostOutcome(l.cfg.Stream, l.gen, first, last, "")
	var res batchResult
	err := l.update(ctx, func(tx kv.Txn) error {
		// The loop is the only writer: the watermark is l.applied.
		res = batchResult{applied: last, outcomes: []outcome{o}}
		p := plan{outcomes: res.outcomes}
		if err := l.applyPlan(tx, &p, l.lastTime); err != nil {
			return err
		}
		if err := tx.Set(appliedKey(l.cfg.Stream), encodeApplied(last, l.lastTime)); err != nil {
			return err
		}
		var err error
		res.nextLease, err = firstLease(tx)
		return err
	})
	if err != nil {
		return fmt.Errorf("state: record commands %d-%d lost: %w", first, last, err)
	}
	l.decided(res)
	l.committed(ctx, res, nil, nil)
	return nil
}

// finish flushes the audit outbox once the pipeline has stopped: it waits
// for the audit PubAcks and clears the outbox keys they cover, bounded by
// ShutdownTimeout.
func (l *loop) finish() error {
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.ShutdownTimeout)
	defer cancel()
	// Wait for the audit PubAcks, then clear what they cover.
	for {
		if err := l.pumpAudits(ctx); err != nil {
			return err
		}
		if len(l.pubs) == 0 {
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

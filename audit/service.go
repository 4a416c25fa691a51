package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/internal/retry"
	"github.com/codi2/codi2/subjects"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"golang.org/x/mod/sumdb/note"
)

// Names of the contract.
const (
	// ServiceName is the NATS micro service name, shown by `nats micro ls`.
	ServiceName = "codi-audit"
	// ConsumerName is the durable CODI_AUDIT consumer the service reads.
	ConsumerName = "codi-audit"
	// ServiceVersion is the micro service version.
	ServiceVersion = "1.0.0"
	// RetentionSource and RetentionCategory name the events the service
	// records about its own retention runs.
	RetentionSource   = "codi-audit"
	RetentionCategory = "retention"
	// LostSource and LostCategory name the events the service records
	// for CODI_AUDIT sequences missing from the stream (see Lost).
	LostSource   = "codi-audit"
	LostCategory = "lost"
)

// pullBatches is how many batches of MaxBatchEvents the consumer pulls
// ahead of the writer (bounded by 32 MiB of messages).
const pullBatches = 4

// maxEventSize is the largest CODI_AUDIT message the service can commit in
// one transaction: base64 grows it by a third, and the record, its parts
// and its index keys must stay inside kv.MaxTxnWriteBytes.
const maxEventSize = 4 << 20

// Service consumes CODI_AUDIT into the hash-chained log in its store and
// answers codi.audit.query, codi.audit.verify and codi.audit.status. Create
// it with New and run it once with Run. Its methods are safe for concurrent
// use.
type Service struct {
	cfg   Config
	nc    *nats.Conn
	js    jetstream.JetStream
	store kv.Store
	log   zerolog.Logger

	ran   atomic.Bool
	ready chan struct{}

	// in carries delivered messages from the consumer callback to the
	// writer; intakeDone is closed when the writer stops reading it.
	in         chan *delivery
	intakeDone chan struct{}
	carry      *delivery // read from in but left for the next batch

	stream jetstream.Stream
	timer  *time.Timer // the writer's batch timer

	mu   sync.Mutex
	meta meta // the committed state, for status and watermarks

	// retention is the unfinished or unrecorded retention run; writer only.
	retention *retentionRun
	// seen is the highest CODI_AUDIT seq known to exist (delivered, or the
	// stream's last at start); writer only.
	seen uint64
	// problem is why the service is not consuming, or nil.
	problem bus.Problem
	// signer signs checkpoints, verifiers checks them (nil without
	// Config.CheckpointKeyFile); checkpointed is the seq the last one
	// published covered (writer only).
	signer       note.Signer
	verifiers    note.Verifiers
	checkpointed uint64
	// legacyMsgIDs is set when the log holds dedupe keys of the unscoped
	// layout, which apply then also looks up; set by load, writer only.
	legacyMsgIDs bool

	// hmu guards handler admission so that Run can wait for handlers that
	// started before it stopped the micro service.
	hmu      sync.Mutex
	hstopped bool
	hwg      sync.WaitGroup
	hctx     context.Context
	hcancel  context.CancelFunc
}

// New returns a Service that appends CODI_AUDIT events to store, talking
// to NATS over nc. cfg is validated (defaults filled in); nc and store
// belong to the caller, who closes them after Run has returned.
func New(cfg Config, nc *nats.Conn, store kv.Store, log zerolog.Logger) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if nc == nil || store == nil {
		return nil, fmt.Errorf("%w: a NATS connection and a store are required", ErrConfig)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("audit: jetstream: %w", err)
	}
	var (
		signer    note.Signer
		verifiers note.Verifiers
	)
	if cfg.CheckpointKeyFile != "" {
		var vkey string
		if signer, vkey, err = LoadCheckpointKey(cfg.CheckpointKeyFile); err != nil {
			return nil, err
		}
		if verifiers, err = NewCheckpointVerifier(vkey); err != nil {
			return nil, fmt.Errorf("%w: %s.pub: %v", ErrConfig, cfg.CheckpointKeyFile, err)
		}
	}
	return &Service{
		signer:     signer,
		verifiers:  verifiers,
		cfg:        cfg,
		nc:         nc,
		js:         js,
		store:      store,
		log:        log.With().Str("component", "audit").Logger(),
		ready:      make(chan struct{}),
		in:         make(chan *delivery, 2*cfg.MaxBatchEvents),
		intakeDone: make(chan struct{}),
		hctx:       context.Background(),
		hcancel:    func() {},
	}, nil
}

// Ready is closed once Run has loaded the log, registered the micro service
// and started consuming. Safe for concurrent use.
func (s *Service) Ready() <-chan struct{} { return s.ready }

// Status returns the committed watermark and log size, as codi.audit.status
// answers it. Safe for concurrent use.
func (s *Service) Status() Status {
	s.mu.Lock()
	m := s.meta
	s.mu.Unlock()
	return statusOf(m)
}

func statusOf(m meta) Status {
	return Status{
		StreamSeq: m.applied,
		Seq:       m.head.Seq,
		FirstSeq:  m.anchor.FirstSeq,
		Count:     m.count(),
		Bytes:     m.head.Bytes,
		Head:      m.head.Hash,
		Flagged:   m.head.Flagged,
	}
}

func (s *Service) setMeta(m meta) {
	s.mu.Lock()
	s.meta = m
	s.mu.Unlock()
}

func (s *Service) committed() meta {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.meta
}

// Run loads the log's state, creates or updates the durable consumer
// codi-audit on CODI_AUDIT, registers the micro service codi-audit and
// appends events until ctx is done. Then it stops fetching, commits and acks
// what it has, stops the micro service, waits for its handlers and returns
// nil. It returns early with an error when it cannot start or when the store
// is closed under it. Run may be called once.
func (s *Service) Run(ctx context.Context) error {
	if !s.ran.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer close(s.intakeDone)
	// Stopped while starting is a clean stop: nothing was consumed yet.
	stopped := func(err error) error {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	if err := s.load(ctx); err != nil {
		return stopped(err)
	}
	cons, err := s.consumer(ctx)
	if err != nil {
		return stopped(err)
	}
	// Handlers outlive ctx until the writer has flushed, then stopService
	// cancels whatever they still run (a long verify) before waiting.
	s.hctx, s.hcancel = context.WithCancel(context.WithoutCancel(ctx))
	defer s.hcancel()
	svc, err := s.addService()
	if err != nil {
		return err
	}
	defer s.stopService(svc)
	// Make sure the server has the endpoints' subscriptions before anyone
	// is told the service is ready.
	if err := s.nc.FlushTimeout(5 * time.Second); err != nil {
		return stopped(fmt.Errorf("audit: flush: %w", err))
	}

	sess, err := s.consume(cons)
	if err != nil {
		return err
	}
	s.timer = time.NewTimer(time.Hour)
	s.timer.Stop()
	m := s.committed()
	s.log.Info().Uint64("seq", m.head.Seq).Uint64("stream_seq", m.applied).Uint64("first_seq", m.anchor.FirstSeq).Msg("audit ready")
	close(s.ready)
	return s.writeLoop(ctx, sess)
}

// load reads the committed state and any unfinished retention run.
func (s *Service) load(ctx context.Context) error {
	var (
		m   meta
		run *retentionRun
	)
	err := s.store.View(ctx, func(tx kv.ReadTxn) error {
		var err error
		if m, err = readMeta(tx); err != nil {
			return err
		}
		run = nil
		if s.legacyMsgIDs, err = hasLegacyMsgIDs(tx); err != nil {
			return err
		}
		v, err := getOptional(tx, keyRetention)
		if err != nil || v == nil {
			return err
		}
		run = new(retentionRun)
		return json.Unmarshal(v, run)
	})
	if err != nil {
		return fmt.Errorf("audit: load: %w", err)
	}
	s.setMeta(m)
	s.retention = run
	return nil
}

// consumer checks the stream and creates or updates the durable consumer.
func (s *Service) consumer(ctx context.Context) (jetstream.Consumer, error) {
	stream, err := s.js.Stream(ctx, bus.StreamAudit)
	if err != nil {
		return nil, fmt.Errorf("audit: stream %s: %w", bus.StreamAudit, err)
	}
	limit := int64(stream.CachedInfo().Config.MaxMsgSize)
	if limit <= 0 {
		limit = s.nc.MaxPayload()
	}
	if limit > maxEventSize {
		return nil, fmt.Errorf("%w: stream %s accepts messages of %d bytes; the audit log commits at most %d bytes per event",
			ErrConfig, bus.StreamAudit, limit, maxEventSize)
	}
	s.stream = stream
	s.seen = stream.CachedInfo().State.LastSeq
	m := s.committed()
	next, moved, err := bus.ResumeAfter(ctx, stream, m.applied, m.appliedTime())
	if err != nil {
		return nil, fmt.Errorf("audit: check watermark: %w", err)
	}
	if moved {
		if err := s.rebase(ctx, next); err != nil {
			return nil, err
		}
		return s.recreateConsumer(ctx)
	}
	cc := s.consumerConfig()
	// A consumer made again after the watermark starts by sequence; its
	// start cannot be updated, and need not be: keep it.
	if cur, err := s.js.Consumer(ctx, bus.StreamAudit, ConsumerName); err == nil {
		ci := cur.CachedInfo().Config
		cc.DeliverPolicy, cc.OptStartSeq, cc.OptStartTime = ci.DeliverPolicy, ci.OptStartSeq, ci.OptStartTime
	}
	cons, err := s.js.CreateOrUpdateConsumer(ctx, bus.StreamAudit, cc)
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeConsumerCreate {
		// A consumer whose settings cannot be updated in place (one made
		// with per-message acks by an earlier version): the store's
		// watermark is the truth, so replace it with one that starts right
		// after it.
		s.log.Warn().Err(err).Msg("replacing the consumer")
		return s.recreateConsumer(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("audit: consumer %s: %w", ConsumerName, err)
	}
	return cons, nil
}

// rebase moves the watermark back to keep: CODI_AUDIT handed the log's
// sequence numbers out again (see bus.ResumeAfter), and its messages after
// keep are new events to append, not redeliveries.
func (s *Service) rebase(ctx context.Context, keep uint64) error {
	m := s.committed()
	s.log.Warn().Uint64("applied", m.applied).Uint64("new_applied", keep).
		Msg("the stream handed out the log's sequence numbers again (recreated, or lost its tail); appending its newer events")
	err := s.store.Update(ctx, func(tx kv.Txn) error {
		return tx.Set(keyApplied, strconv.AppendUint(nil, keep, 10))
	})
	if err != nil {
		return fmt.Errorf("audit: rebase watermark: %w", err)
	}
	m.applied = keep
	s.setMeta(m)
	return nil
}

func (s *Service) consumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:     ConsumerName,
		Description: "codi2 audit log writer",
		// AckAll: one ack per committed batch, for its last delivery.
		AckPolicy:     jetstream.AckAllPolicy,
		AckWait:       s.cfg.AckWait,
		MaxAckPending: s.cfg.MaxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
}

// recreateConsumer deletes codi-audit, if it is there, and creates it
// again to deliver from right after the store's watermark. It fails when
// the stream is gone.
func (s *Service) recreateConsumer(ctx context.Context) (jetstream.Consumer, error) {
	err := s.js.DeleteConsumer(ctx, bus.StreamAudit, ConsumerName)
	if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("audit: delete consumer %s on %s: %w", ConsumerName, bus.StreamAudit, err)
	}
	cc := s.consumerConfig()
	if next := s.committed().applied + 1; next > 1 {
		cc.DeliverPolicy, cc.OptStartSeq = jetstream.DeliverByStartSequencePolicy, next
	}
	cons, err := s.js.CreateOrUpdateConsumer(ctx, bus.StreamAudit, cc)
	if err != nil {
		return nil, fmt.Errorf("audit: create consumer %s on %s: %w", ConsumerName, bus.StreamAudit, err)
	}
	return cons, nil
}

// session is one Consume of codi-audit. lost is closed when the consumer
// reports that it was deleted or its heartbeats stopped.
type session struct {
	cc       jetstream.ConsumeContext
	lost     chan struct{}
	lostOnce sync.Once
	why      string // why lost was closed; read after <-lost
}

// consume starts delivering cons's messages to the writer.
func (s *Service) consume(cons jetstream.Consumer) (*session, error) {
	ss := &session{lost: make(chan struct{})}
	var err error
	// Pull several batches ahead, so that the server keeps delivering
	// while the writer commits: four batches measured 5-10% more ingest
	// than one, with the same commit latency. Pull requests expire every
	// 5s with heartbeats every 2.5s, so a consumer lost without a word is
	// noticed within about 5s.
	ss.cc, err = cons.Consume(s.intake,
		jetstream.PullMaxMessagesWithBytesLimit(pullBatches*s.cfg.MaxBatchEvents, 32<<20),
		jetstream.PullExpiry(5*time.Second),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			s.log.Warn().Err(err).Msg("consume")
			switch {
			case errors.Is(err, jetstream.ErrConsumerDeleted):
				ss.lostOnce.Do(func() { ss.why = "consumer deleted"; close(ss.lost) })
			case errors.Is(err, jetstream.ErrNoHeartbeat):
				ss.lostOnce.Do(func() { ss.why = "consumer heartbeats missed"; close(ss.lost) })
			}
		}))
	if err != nil {
		return nil, fmt.Errorf("audit: consume %s: %w", bus.StreamAudit, err)
	}
	return ss, nil
}

// reposition replaces a lost session: the consumer is recreated after the
// watermark, so what was delivered but not committed comes again (and what
// was committed is skipped). It fails when the stream is gone.
// The server may refuse to create a consumer right after deleting one of
// the same name (its files are still going), so other errors are retried
// with backoff until ctx is done.
func (s *Service) reposition(ctx context.Context, old *session) (*session, error) {
	old.cc.Stop()
	s.log.Warn().Uint64("stream_seq", s.committed().applied).Msg(old.why + "; recreating the consumer after the watermark")
	backoff := retry.Backoff{Delay: 50 * time.Millisecond, Max: 5 * time.Second}
	for {
		if err := s.checkStream(ctx); err != nil {
			return nil, err
		}
		cons, err := s.recreateConsumer(ctx)
		if err == nil {
			ss, err := s.consume(cons)
			if err == nil {
				s.problem.Set(nil)
			}
			return ss, err
		}
		s.log.Error().Err(err).Dur("retry_in", backoff.Delay).Msg("recreate consumer")
		if err := backoff.Wait(ctx); err != nil {
			return nil, err
		}
	}
}

// Problem returns why the service is not consuming CODI_AUDIT right now
// (the stream deleted and not yet recreated, say), or nil. Readiness checks
// report it while it lasts. Safe for concurrent use.
func (s *Service) Problem() error { return s.problem.Err() }

// checkStream runs before the consumer is recreated: a CODI_AUDIT deleted
// under the service is created again with the configuration it had, and a
// stream that is not the one the service was reading (deleted and created
// again by someone else) is taken up from its start. Either way the events
// the old stream held past the watermark are gone: one error in the log
// and one record in the log itself (Lost, reason "stream recreated") name
// the stream and that range, and the service carries on. While the stream
// cannot be had, Problem reports it and this retries until ctx is done.
func (s *Service) checkStream(ctx context.Context) error {
	old := s.stream.CachedInfo()
	backoff := retry.Backoff{Delay: 100 * time.Millisecond, Max: 5 * time.Second}
	for {
		stream, created, err := bus.RecreateStream(ctx, s.js, old.Config)
		if err == nil && !created && stream.CachedInfo().Created.Equal(old.Created) {
			s.stream = stream
			return nil
		}
		if err == nil {
			return s.newStream(ctx, stream, old, created)
		}
		err = fmt.Errorf("audit: %w", err)
		s.problem.Set(err)
		s.log.Error().Err(err).Dur("retry_in", backoff.Delay).Msg("stream missing and not recreated; retrying")
		if backoff.Wait(ctx) != nil {
			return err
		}
	}
}

// newStream takes up stream, which replaced old: the watermark follows its
// numbering, and a record of what old held past the watermark is appended
// in the same transaction.
func (s *Service) newStream(ctx context.Context, stream jetstream.Stream, old *jetstream.StreamInfo, created bool) error {
	m := s.committed()
	last := max(s.seen, m.applied)
	s.problem.Set(fmt.Errorf("audit: stream %s was deleted; recreating it", bus.StreamAudit))
	s.log.Error().Str("stream", bus.StreamAudit).Bool("recreated_here", created).Time("old_created", old.Created).
		Uint64("applied", m.applied).Uint64("lost_first_seq", m.applied+1).Uint64("lost_last_seq", last).Uint64("lost", last-m.applied).
		Msg("the stream was deleted under the service: carrying on with a new, empty stream of the same configuration; events it held past the watermark are lost (recorded in the log)")
	s.stream = stream
	next, _, err := bus.ResumeAfter(ctx, stream, m.applied, m.appliedTime())
	if err != nil {
		return fmt.Errorf("audit: check watermark: %w", err)
	}
	lost := lostEvent(m.applied+1, last, time.Now().UnixNano(), LostRecreated)
	lost.force = true
	m, err = s.apply([]*event{&lost}, next, true)
	if err != nil {
		return err
	}
	s.seen = next
	s.setMeta(m)
	s.publishWatermark(m)
	return nil
}

// delivery is a delivered message and the event prepared from it.
type delivery struct {
	msg jetstream.Msg
	ev  event
	ok  bool // false: the message had no stream metadata
}

// intake is the consumer callback: it prepares the event (parsing, payload
// encoding) on the consumer's goroutine, off the writer's path, and hands it
// to the writer. Once the writer has stopped, the message is left unacked
// and JetStream redelivers it to the next run.
func (s *Service) intake(m jetstream.Msg) {
	d := &delivery{msg: m}
	if md, err := m.Metadata(); err == nil {
		d.ev, d.ok = newEvent(md.Sequence.Stream, md.Timestamp, m.Subject(), m.Headers(), m.Data()), true
	}
	select {
	case s.in <- d:
	case <-s.intakeDone:
	}
}

// writeLoop is the single writer: it batches deliveries into store
// transactions and runs retention between batches, so that appends and
// removals are ordered.
func (s *Service) writeLoop(ctx context.Context, sess *session) error {
	ret := time.NewTimer(0)
	defer ret.Stop()
	tail := time.NewTimer(0) // at start, then every tailCheckInterval
	defer tail.Stop()
	var checkpoints <-chan time.Time
	if s.signer != nil {
		t := time.NewTicker(s.cfg.CheckpointInterval)
		defer t.Stop()
		checkpoints = t.C
		// The last checkpoint covers the head at shutdown, after the final
		// commit; it reaches the log at the next start.
		defer s.publishCheckpoint(context.Background())
	}
	if !s.cfg.Retention.enabled() && s.retention == nil {
		ret.Stop()
	}
	for {
		if m := s.carry; m != nil {
			s.carry = nil
			if err := s.commit(ctx, s.collect(ctx, m, true)); err != nil {
				return err
			}
			continue
		}
		select {
		case <-ctx.Done():
			return s.shutdown(sess.cc)
		case <-sess.lost:
			if ctx.Err() != nil {
				continue // shutting down anyway
			}
			next, err := s.reposition(ctx, sess)
			if next != nil {
				sess = next
			}
			if ctx.Err() != nil {
				return s.shutdown(sess.cc)
			}
			if err != nil {
				return err
			}
		case m := <-s.in:
			if err := s.commit(ctx, s.collect(ctx, m, true)); err != nil {
				return err
			}
		case <-checkpoints:
			s.publishCheckpoint(ctx)
		case <-tail.C:
			tail.Reset(tailCheckInterval)
			if len(s.in) == 0 && s.carry == nil {
				if err := s.checkTail(ctx); err != nil {
					return err
				}
			}
		case <-ret.C:
			more, err := s.retentionStep(ctx)
			switch {
			case errors.Is(err, kv.ErrClosed):
				return err
			case err != nil && ctx.Err() == nil:
				s.log.Error().Err(err).Msg("retention")
			}
			if more {
				ret.Reset(0)
			} else if s.cfg.Retention.enabled() || s.retention != nil {
				ret.Reset(s.cfg.Retention.CheckInterval)
			}
		}
	}
}

// shutdown stops the consumer, commits and acks every message it had
// delivered, and returns.
func (s *Service) shutdown(cc jetstream.ConsumeContext) error {
	cc.Drain()
	closed := cc.Closed()
	// A drain that never completes (a broken connection) must not keep the
	// process from stopping: what is not acked is redelivered next run.
	deadline := time.NewTimer(5 * time.Second)
	defer deadline.Stop()
	ctx := context.Background()
	for {
		if m := s.carry; m != nil {
			s.carry = nil
			if err := s.commit(ctx, s.collect(ctx, m, false)); err != nil {
				return err
			}
			continue
		}
		if closed == nil {
			// The consumer has stopped: commit what is left, then return.
			select {
			case m := <-s.in:
				s.carry = m
				continue
			default:
			}
			s.flushAcks()
			s.log.Info().Uint64("seq", s.committed().head.Seq).Msg("audit stopped")
			return nil
		}
		select {
		case m := <-s.in:
			if err := s.commit(ctx, s.collect(ctx, m, false)); err != nil {
				return err
			}
		case <-closed:
			closed = nil
		case <-deadline.C:
			s.log.Warn().Msg("consumer did not drain in time; unacked events are redelivered on restart")
			s.flushAcks()
			return nil
		}
	}
}

// flushAcks pushes buffered acks to the server before Run returns; the
// connection belongs to the caller, who may close it next.
func (s *Service) flushAcks() {
	if err := s.nc.FlushTimeout(2 * time.Second); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		s.log.Warn().Err(err).Msg("flush acks")
	}
}

// collect gathers a batch starting with first: whatever is waiting, up to
// the size limits, waiting up to MaxBatchWait for more when wait is set.
// A message that would overflow the byte limit is carried to the next batch.
func (s *Service) collect(ctx context.Context, first *delivery, wait bool) []*delivery {
	batch := []*delivery{first}
	size := first.ev.size
	waiting := false
	defer func() {
		if waiting {
			s.timer.Stop()
		}
	}()
	for len(batch) < s.cfg.MaxBatchEvents {
		var m *delivery
		select {
		case m = <-s.in:
		default:
			if !wait || s.cfg.MaxBatchWait <= 0 {
				return batch
			}
			if !waiting {
				waiting = true
				s.timer.Reset(s.cfg.MaxBatchWait)
			}
			select {
			case m = <-s.in:
			case <-s.timer.C:
				waiting = false
				return batch
			case <-ctx.Done():
				return batch
			}
		}
		n := m.ev.size
		if size+n > s.cfg.MaxBatchBytes {
			s.carry = m
			return batch
		}
		batch = append(batch, m)
		size += n
	}
	return batch
}

// estimate is the share of MaxBatchBytes an event takes: its payload as
// base64 plus a record's and its index keys' overhead.
func estimate(subject string, n int) int { return n*4/3 + 4*len(subject) + 512 }

// Status is the answer of codi.audit.status and the payload of
// codi.audit.committed (which carries the first two fields). It is a plain
// value.
type Status struct {
	// StreamSeq is the commit watermark: every CODI_AUDIT event up to this
	// stream sequence is in the log, durably.
	StreamSeq uint64 `json:"stream_seq"`
	// Seq is the last record's seq.
	Seq uint64 `json:"seq"`
	// FirstSeq is the first kept record's seq (1 until retention removes
	// records); Count the number of records kept; Bytes their stored size.
	FirstSeq uint64 `json:"first_seq"`
	Count    uint64 `json:"count"`
	Bytes    uint64 `json:"bytes"`
	// Head is the last record's hash (GenesisPrev for an empty log).
	Head string `json:"head"`
	// Flagged is the number of events recorded with flags because the
	// contract does not allow their subject (see FlagNoCategory), since
	// the log began; retention does not lower it.
	Flagged uint64 `json:"flagged"`
}

// Watermark is the payload of codi.audit.committed: every CODI_AUDIT event
// up to StreamSeq is in the log, which ends at Seq. It is a plain value.
type Watermark struct {
	StreamSeq uint64 `json:"stream_seq"`
	Seq       uint64 `json:"seq"`
}

func (s *Service) publishWatermark(m meta) {
	b, _ := json.Marshal(Watermark{StreamSeq: m.applied, Seq: m.head.Seq})
	if err := s.nc.Publish(subjects.AuditCommitted, b); err != nil {
		s.log.Warn().Err(err).Msg("publish watermark")
	}
}

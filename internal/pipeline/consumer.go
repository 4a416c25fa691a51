package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/internal/retry"
)

// consumerConfig is Config.Consumer delivering from startSeq (all when
// startSeq is 0 or 1).
func (p *Pipeline[T]) consumerConfig(startSeq uint64) jetstream.ConsumerConfig {
	c := p.cfg.Consumer
	c.DeliverPolicy, c.OptStartSeq, c.OptStartTime = jetstream.DeliverAllPolicy, 0, nil
	if startSeq > 1 {
		c.DeliverPolicy, c.OptStartSeq = jetstream.DeliverByStartSequencePolicy, startSeq
	}
	return c
}

// ensureConsumer creates the durable consumer, or updates it when its
// position agrees with the store. A consumer that delivered past the
// watermark, or holds unacknowledged messages (a crash, or a shutdown whose
// last pull raced it), would hand the next messages out of order, so it is
// made again to start right after the watermark; so is one whose settings
// cannot be updated in place (made by an earlier version with another ack
// policy).
func (p *Pipeline[T]) ensureConsumer(ctx context.Context) (jetstream.Consumer, error) {
	name := p.cfg.Consumer.Durable
	cons, err := p.stream.Consumer(ctx, name)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return p.createConsumer(ctx, false)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: consumer %s: %w", p.cfg.Name, name, err)
	}
	applied, _ := p.h.Watermark()
	info := cons.CachedInfo()
	if info.NumAckPending > 0 || info.Delivered.Stream > applied {
		p.log.Info().Str("stream", p.cfg.Stream).Uint64("seq", applied).
			Uint64("delivered", info.Delivered.Stream).Int("ack_pending", info.NumAckPending).
			Msg("consumer is ahead of the store; recreating it after the watermark")
		return p.createConsumer(ctx, true)
	}
	// Its start cannot be updated, and need not be: keep it.
	cc := p.consumerConfig(0)
	cc.DeliverPolicy, cc.OptStartSeq, cc.OptStartTime = info.Config.DeliverPolicy, info.Config.OptStartSeq, info.Config.OptStartTime
	cons, err = p.stream.CreateOrUpdateConsumer(ctx, cc)
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeConsumerCreate {
		p.log.Warn().Err(err).Str("consumer", name).Msg("replacing the consumer, whose settings cannot be updated")
		return p.createConsumer(ctx, true)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: update consumer %s: %w", p.cfg.Name, name, err)
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
func (p *Pipeline[T]) createConsumer(ctx context.Context, replace bool) (jetstream.Consumer, error) {
	backoff := retry.Backoff{Delay: 20 * time.Millisecond, Max: time.Second}
	for attempt := 1; ; attempt++ {
		cons, err := p.tryCreateConsumer(ctx, replace)
		if err == nil || !replace || attempt == createConsumerAttempts || errors.Is(err, jetstream.ErrStreamNotFound) {
			return cons, err
		}
		p.log.Warn().Err(err).Dur("retry_in", backoff.Delay).Msg("recreate consumer")
		if backoff.Wait(ctx) != nil {
			return nil, err
		}
	}
}

// createConsumerAttempts bounds the tries of a consumer replace: about 5s.
const createConsumerAttempts = 10

func (p *Pipeline[T]) tryCreateConsumer(ctx context.Context, replace bool) (jetstream.Consumer, error) {
	name := p.cfg.Consumer.Durable
	if replace {
		if err := p.stream.DeleteConsumer(ctx, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil, fmt.Errorf("%s: delete consumer %s: %w", p.cfg.Name, name, err)
		}
	}
	applied, _ := p.h.Watermark()
	cons, err := p.stream.CreateConsumer(ctx, p.consumerConfig(applied+1))
	if err != nil {
		return nil, fmt.Errorf("%s: create consumer %s: %w", p.cfg.Name, name, err)
	}
	return cons, nil
}

// consume starts delivering cons's messages, prepared, to the writer.
func (p *Pipeline[T]) consume(cons jetstream.Consumer) (*session[T], error) {
	ss := &session[T]{in: make(chan *Msg[T], p.cfg.Buffer), quit: make(chan struct{}), lost: make(chan struct{})}
	var pull jetstream.PullConsumeOpt = jetstream.PullMaxMessages(p.cfg.PullMessages)
	if p.cfg.PullBytes > 0 {
		pull = jetstream.PullMaxMessagesWithBytesLimit(p.cfg.PullMessages, p.cfg.PullBytes)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		md, err := m.Metadata()
		if err != nil {
			// Not a stream delivery: nothing to commit, and redelivery
			// would not help.
			p.log.Error().Err(err).Str("subject", m.Subject()).Msg("message without JetStream metadata")
			_ = m.Term()
			return
		}
		v, size := p.prepare(m, md)
		in := &Msg[T]{Msg: m, Seq: md.Sequence.Stream, CSeq: md.Sequence.Consumer, Time: md.Timestamp.UTC(), Size: size, Value: v}
		select {
		case ss.in <- in:
		case <-ss.quit:
		}
	},
		pull,
		// Pull requests expire every 5s with heartbeats every 2.5s, so a
		// consumer lost without a word (its stream deleted while no pull
		// was pending) is noticed within about 5s, not a minute.
		jetstream.PullExpiry(5*time.Second),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			p.log.Warn().Err(err).Str("stream", p.cfg.Stream).Msg("consumer")
			// Missed heartbeats: the consumer may be gone. Repositioning
			// recreates it after the watermark, which is harmless if it
			// was not.
			if why := lostReason(err); why != "" {
				ss.lostOnce.Do(func() { ss.why = why; close(ss.lost) })
			}
		}))
	if err != nil {
		return nil, fmt.Errorf("%s: consume %s: %w", p.cfg.Name, p.cfg.Consumer.Durable, err)
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

// reposition replaces the session after a delivery gap, or after the
// consumer was deleted under it: messages after the watermark are
// delivered again, in order. A stream deleted meanwhile is recreated
// (checkStream). Failures are retried with backoff until ctx is done.
func (p *Pipeline[T]) reposition(ctx context.Context, why string) error {
	applied, _ := p.h.Watermark()
	p.log.Warn().Str("stream", p.cfg.Stream).Uint64("seq", applied).Msg(why + "; restarting the consumer after the watermark")
	p.sess.stop()
	backoff := retry.Backoff{Delay: 50 * time.Millisecond, Max: 5 * time.Second}
	for {
		err := p.checkStream(ctx)
		if err == nil {
			var cons jetstream.Consumer
			if cons, err = p.createConsumer(ctx, true); err == nil {
				var ss *session[T]
				if ss, err = p.consume(cons); err == nil {
					p.sess = ss
					p.problem.Set(nil)
					return nil
				}
			}
		}
		if ctx.Err() != nil {
			return err
		}
		p.problem.Set(err)
		p.log.Error().Err(err).Dur("retry_in", backoff.Delay).Msg("recreate consumer")
		if backoff.Wait(ctx) != nil {
			return err
		}
	}
}

// checkStream runs before the consumer is recreated: a stream that was
// deleted under the service is created again with the configuration it
// had, and a stream that is not the one the pipeline was reading (deleted
// and created again by someone else) is taken up as a new one. Either way
// the messages the old stream held past the watermark are gone: one error
// in the log names the stream and that range, Handler.Replace records it,
// and the pipeline carries on with the new stream. While the stream cannot
// be had, the problem holder says so and this retries until ctx is done.
func (p *Pipeline[T]) checkStream(ctx context.Context) error {
	old := p.stream.CachedInfo()
	backoff := retry.Backoff{Delay: 100 * time.Millisecond, Max: 5 * time.Second}
	for {
		stream, created, err := bus.RecreateStream(ctx, p.js, old.Config)
		if err == nil && !created && stream.CachedInfo().Created.Equal(old.Created) {
			p.stream = stream
			return nil
		}
		if err == nil {
			return p.replace(ctx, stream, old, created)
		}
		err = fmt.Errorf("%s: %w", p.cfg.Name, err)
		p.problem.Set(err)
		p.log.Error().Err(err).Dur("retry_in", backoff.Delay).Msg("stream missing and not recreated; retrying")
		if backoff.Wait(ctx) != nil {
			return err
		}
	}
}

// replace takes up stream, which replaced old, through Handler.Replace.
func (p *Pipeline[T]) replace(ctx context.Context, stream jetstream.Stream, old *jetstream.StreamInfo, created bool) error {
	applied, at := p.h.Watermark()
	last := max(p.seen, applied)
	p.problem.Set(fmt.Errorf("%s: stream %s was deleted; recreating it", p.cfg.Name, p.cfg.Stream))
	p.log.Error().Str("stream", p.cfg.Stream).Bool("recreated_here", created).Time("old_created", old.Created).
		Uint64("applied", applied).Uint64("lost_first_seq", applied+1).Uint64("lost_last_seq", last).Uint64("lost", last-applied).
		Msg("the stream was deleted under the service: carrying on with a new, empty stream of the same configuration; what it held past the watermark is lost (recorded in the audit log)")
	p.stream = stream
	next, _, err := bus.ResumeAfter(ctx, stream, applied, at)
	if err != nil {
		return fmt.Errorf("%s: check watermark: %w", p.cfg.Name, err)
	}
	if err := p.h.Replace(ctx, stream, next, applied+1, last); err != nil {
		return err
	}
	p.seen = next
	return nil
}

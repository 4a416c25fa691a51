package bus

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/codi2/codi2/internal/retry"
	"github.com/codi2/codi2/subjects"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Defaults of ReceiveConfig.
const (
	DefaultAckWait       = 30 * time.Second
	DefaultRetryDelay    = 100 * time.Millisecond
	DefaultMaxRetryDelay = time.Minute
	DefaultMaxDeliver    = 10
)

// maxConsumerName is JetStream's limit on a consumer name, in bytes
// (nats-server JSMaxNameLen).
const maxConsumerName = 255

// ConsumerName is the durable CODI_MSG consumer of agent id. It is the id
// with '%', '/' and '\' escaped as %25, %2F and %5C (consumer names may not
// hold the last two; escaping '%' too keeps the mapping one-to-one). A
// result longer than JetStream's 255 bytes is cut at a character boundary
// to its first 189 bytes at most and followed by "%H" and the 64 hex
// digits of the SHA-256 of the id; an escaped name never holds "%H", so
// the two forms cannot meet.
func ConsumerName(id string) string {
	name := strings.NewReplacer("%", "%25", "/", "%2F", `\`, "%5C").Replace(id)
	if len(name) <= maxConsumerName {
		return name
	}
	sum := sha256.Sum256([]byte(id))
	const tail = 2 + 2*sha256.Size
	cut := maxConsumerName - tail
	for cut > 0 && (!utf8.RuneStart(name[cut]) || strings.LastIndexByte(name[max(0, cut-2):cut], '%') >= 0) {
		cut--
	}
	return name[:cut] + "%H" + hex.EncodeToString(sum[:])
}

// DeliverFrom is where a new inbox consumer begins, in JetStream's terms
// (its deliver policy). It matters only when the consumer is created: an
// existing consumer goes on from where it is (JetStream cannot change a
// consumer's deliver policy).
type DeliverFrom struct {
	policy jetstream.DeliverPolicy
	at     time.Time
}

var (
	// DeliverAll delivers everything CODI_MSG still holds for the agent (it
	// keeps mail 7 days by default), broadcasts included: mail sent before
	// the agent first connected is not lost. The zero DeliverFrom.
	DeliverAll = DeliverFrom{policy: jetstream.DeliverAllPolicy}
	// DeliverNew delivers only what is stored after the consumer is created.
	DeliverNew = DeliverFrom{policy: jetstream.DeliverNewPolicy}
)

// DeliverSince delivers what was stored at or after t.
func DeliverSince(t time.Time) DeliverFrom {
	return DeliverFrom{policy: jetstream.DeliverByStartTimePolicy, at: t}
}

// ReceiveConfig tunes Receive. The zero value gives the defaults.
type ReceiveConfig struct {
	// AckWait is how long a delivered message may go without word from
	// Receive before JetStream hands it out again (the agent died). While
	// the handler runs Receive tells JetStream it is in progress every
	// AckWait/3, so a handler may take any time. Default DefaultAckWait.
	AckWait time.Duration
	// RetryDelay is how long JetStream waits before it hands a message
	// whose handler returned an error over again; the delay doubles with
	// every further failure up to MaxRetryDelay. Defaults DefaultRetryDelay
	// and DefaultMaxRetryDelay.
	RetryDelay, MaxRetryDelay time.Duration
	// MaxDeliver is the number of deliveries after which a message whose
	// handler still returns an error is terminated (never delivered again)
	// and recorded as the audit event codi.audit.log.<agent>.mail.terminated
	// naming the consumer, the stream sequence and the last error. Default
	// DefaultMaxDeliver; negative retries for as long as the stream keeps
	// the message.
	MaxDeliver int
	// Deliver is where the consumer begins when Receive creates it.
	// Default DeliverAll.
	Deliver DeliverFrom
	// UntilIdle makes Receive return nil once the consumer has nothing left
	// to deliver (nothing pending, nothing awaiting an ack or a retry),
	// instead of waiting for new mail: a catch-up.
	UntilIdle bool
	// Max, when positive, makes Receive return nil after that many
	// messages were handled.
	Max int
	// Log receives what Receive does besides delivering: a consumer
	// recreated, a message terminated, an ack that failed. Default: none.
	Log zerolog.Logger
}

func (c *ReceiveConfig) defaults() {
	if c.AckWait <= 0 {
		c.AckWait = DefaultAckWait
	}
	if c.RetryDelay <= 0 {
		c.RetryDelay = DefaultRetryDelay
	}
	if c.MaxRetryDelay <= 0 {
		c.MaxRetryDelay = DefaultMaxRetryDelay
	}
	if c.MaxDeliver == 0 {
		c.MaxDeliver = DefaultMaxDeliver
	}
}

// pullWait bounds one pull request; the server sends a heartbeat every
// pullHeartbeat while it waits, so a server that went away is noticed
// within two of them.
const (
	pullWait      = 5 * time.Second
	pullHeartbeat = time.Second
	apiTimeout    = 5 * time.Second
	// idleWait is how long a catch-up (UntilIdle) waits for a message
	// before it asks the consumer whether anything is left: what an empty
	// catch-up costs.
	idleWait = 200 * time.Millisecond
)

// Receive consumes this agent's durable consumer on CODI_MSG (named
// ConsumerName(id), filtered on its inbox and on broadcasts), creating it
// on first use at cfg.Deliver: everything addressed to the agent since it
// last acked, including what was sent while it was offline, then new
// messages as they arrive.
//
// h runs for one message at a time, in stream order: the consumer lets
// JetStream hand out one message at a time (MaxAckPending 1) and Receive
// fetches one at a time, so nothing waits in a client buffer while its ack
// timer runs. When h returns nil the message is acked (and the ack
// confirmed); a message h handled is never handed to h again by this call,
// even if its ack was lost to a server restart or the consumer was
// deleted. When h returns an error the same message is handed over again
// after the retry delay (later messages wait behind it) until MaxDeliver.
//
// If the consumer is deleted under it, Receive recreates it to start right
// after the last message it handled. It returns nil when ctx is done (once
// h has returned), or with UntilIdle or Max when those are met; it fails
// when the connection is closed or the consumer cannot be made, with an
// error naming the consumer.
func (a *Agent) Receive(ctx context.Context, cfg ReceiveConfig, h func(context.Context, Message) error) error {
	cfg.defaults()
	name := ConsumerName(a.id)
	r := &receiver{a: a, cfg: cfg, h: h, name: name,
		log: cfg.Log.With().Str("agent", a.id).Str("consumer", name).Logger()}
	if err := r.open(ctx, false); err != nil {
		return err
	}
	return r.run(ctx)
}

type receiver struct {
	a    *Agent
	cfg  ReceiveConfig
	h    func(context.Context, Message) error
	name string
	log  zerolog.Logger
	cons jetstream.Consumer
	// floor is the last stream sequence handed to h with success (or
	// terminated), or the consumer's ack floor when it was opened: nothing
	// at or below it goes to h again.
	floor   uint64
	handled int
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// Open makes sure the agent's inbox consumer exists, creating it to begin
// at from when it does not (an existing one goes on from where it is): for
// an agent whose id is new by construction (one per Claude Code session)
// DeliverNew keeps it from being handed the week of broadcasts CODI_MSG
// holds from before it existed. Like Receive it asks the inbox service and
// does the work itself when nobody answers. Safe for concurrent use.
func (a *Agent) Open(ctx context.Context, from DeliverFrom) error {
	cfg := ReceiveConfig{Deliver: from}
	cfg.defaults()
	r := &receiver{a: a, cfg: cfg, name: ConsumerName(a.id), log: cfg.Log}
	return r.open(ctx, false)
}

// open finds the consumer, or has it made: at cfg.Deliver the first time,
// right after the floor when it was deleted under us (recreate). It asks
// the inbox service (codi.inbox.open.<id>), which makes consumers for
// agents that may not (auth on), and does the work itself when nobody
// answers. An existing consumer keeps its start but takes the inbox's
// filters, this call's ack wait and one-at-a-time delivery.
func (r *receiver) open(ctx context.Context, recreate bool) error {
	actx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	req := r.cfg.Deliver.request()
	if recreate {
		req.StartSeq = r.floor + 1
	}
	req.AckWaitMS = r.cfg.AckWait.Milliseconds()
	var cons jetstream.Consumer
	_, err := r.a.request(actx, subjects.InboxOpen(r.a.id), req)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		cons, err = ensureInbox(actx, r.a.js, r.a.id, r.cfg.Deliver, req.StartSeq, r.cfg.AckWait)
	case err == nil:
		cons, err = r.a.js.Consumer(actx, StreamMsg, r.name)
	}
	if err != nil {
		return fmt.Errorf("bus: inbox consumer %s on %s: %w", r.name, StreamMsg, err)
	}
	if recreate {
		r.log.Info().Uint64("seq", r.floor+1).Msg("inbox consumer reopened after its pull stopped (made again from this seq if it was deleted)")
	}
	r.cons = cons
	r.floor = max(r.floor, cons.CachedInfo().AckFloor.Stream)
	return nil
}

// errFinished ends consume when UntilIdle or Max is met.
var errFinished = errors.New("bus: receive finished")

func (r *receiver) run(ctx context.Context) error {
	backoff := retry.Backoff{Delay: 20 * time.Millisecond, Max: 2 * time.Second}
	for {
		err := r.consume(ctx)
		switch {
		case errors.Is(err, errFinished), ctx.Err() != nil:
			return nil
		case errors.Is(err, nats.ErrConnectionClosed):
			return fmt.Errorf("bus: inbox consumer %s: %w", r.name, err)
		}
		// The consumer was deleted (409, or missed heartbeats when the next
		// pull found nobody), or the server went away: wait, then find the
		// consumer again or recreate it after the floor.
		r.log.Debug().Err(err).Msg("inbox pull stopped")
		if backoff.Wait(ctx) != nil {
			return nil
		}
		if err := r.open(ctx, true); err != nil {
			if errors.Is(err, nats.ErrConnectionClosed) {
				return err
			}
			r.log.Debug().Err(err).Msg("inbox consumer not reachable yet")
			continue
		}
		backoff.Delay = 20 * time.Millisecond
	}
}

// consume pulls one message at a time until ctx is done (nil), UntilIdle or
// Max is met (errFinished) or the pull fails. When it stops it drains the
// subscription, so that the server drops the pull request it holds, and
// gives back (naks) a message that arrived meanwhile without handing it
// over: no message is left waiting for AckWait.
func (r *receiver) consume(ctx context.Context) error {
	it, err := r.cons.Messages(jetstream.PullMaxMessages(1), jetstream.PullExpiry(pullWait), jetstream.PullHeartbeat(pullHeartbeat))
	if err != nil {
		return err
	}
	defer it.Stop()
	stopDrain := context.AfterFunc(ctx, it.Drain)
	defer stopDrain()
	for {
		var opts []jetstream.NextOpt
		if r.cfg.UntilIdle {
			opts = append(opts, jetstream.NextMaxWait(idleWait))
		}
		msg, err := it.Next(opts...)
		switch {
		case errors.Is(err, nats.ErrTimeout):
			// Nothing came within idleWait: a catch-up asks the consumer
			// whether anything is still pending or awaiting an ack (a
			// retry's delay); if not, it is done.
			// Short waits restart the iterator's heartbeat check, so a
			// consumer deleted meanwhile shows here, as an error.
			if r.cfg.UntilIdle {
				done, err := r.drained(ctx)
				switch {
				case err != nil:
					return r.giveBack(it, err)
				case done:
					return r.giveBack(it, errFinished)
				}
			}
			continue
		case err != nil:
			return err
		case ctx.Err() != nil:
			// Drained after ctx ended: give it back at once.
			_ = msg.Nak()
			continue
		}
		if err := r.deliver(ctx, msg); err != nil {
			return r.giveBack(it, err)
		}
		if r.cfg.Max > 0 && r.handled >= r.cfg.Max {
			return r.giveBack(it, errFinished)
		}
	}
}

// giveBack drains it, naks what still arrives, and returns err.
func (r *receiver) giveBack(it jetstream.MessagesContext, err error) error {
	it.Drain()
	for {
		msg, nerr := it.Next(jetstream.NextMaxWait(apiTimeout))
		if nerr != nil {
			return err
		}
		_ = msg.Nak()
	}
}

// drained reports whether the consumer has nothing left for us.
func (r *receiver) drained(ctx context.Context) (bool, error) {
	actx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	ci, err := r.cons.Info(actx)
	if err != nil {
		return false, err
	}
	return ci.NumPending == 0 && ci.NumAckPending == 0, nil
}

// deliver hands msg to the handler unless it was handled before, then
// acks, retries or terminates it. It fails only when the handler's outcome
// cannot be recorded at all.
func (r *receiver) deliver(ctx context.Context, msg jetstream.Msg) error {
	md, err := msg.Metadata()
	if err != nil {
		return fmt.Errorf("bus: inbox consumer %s: %w", r.name, err)
	}
	seq := md.Sequence.Stream
	// Acks and outcomes go out even when ctx ended while the handler ran.
	octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), apiTimeout)
	defer cancel()
	if seq <= r.floor {
		// Handed to h before (its ack was lost, or the consumer was
		// recreated at an older position): ack it, never hand it over again.
		_ = msg.DoubleAck(octx)
		return nil
	}
	m := parseMessage(msg.Subject(), msg.Data(), msg.Headers())
	m.Seq, m.Time, m.Delivered = seq, md.Timestamp, md.NumDelivered
	herr := r.handle(ctx, msg, m)
	if herr == nil {
		r.floor = seq
		r.handled++
		if err := msg.DoubleAck(octx); err != nil {
			r.log.Debug().Err(err).Uint64("seq", seq).Msg("ack not confirmed; a redelivery will be acked without the handler")
		}
		return nil
	}
	if r.cfg.MaxDeliver > 0 && md.NumDelivered >= uint64(r.cfg.MaxDeliver) && ctx.Err() == nil {
		if err := r.terminate(octx, msg, m, herr); err != nil {
			r.log.Error().Err(err).Uint64("seq", seq).Msg("could not record a terminated message; it will be retried")
			_ = msg.NakWithDelay(r.cfg.MaxRetryDelay)
			return nil
		}
		r.floor = seq
		return nil
	}
	_ = msg.NakWithDelay(r.retryDelay(md.NumDelivered))
	return nil
}

// handle runs the handler, telling JetStream the message is in progress
// every AckWait/3 while it runs.
func (r *receiver) handle(ctx context.Context, msg jetstream.Msg, m Message) error {
	stop := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		t := time.NewTicker(max(r.cfg.AckWait/3, time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				_ = msg.InProgress()
			}
		}
	}()
	defer func() { close(stop); <-exited }()
	return r.h(ctx, m)
}

func (r *receiver) retryDelay(delivered uint64) time.Duration {
	d := r.cfg.RetryDelay
	for i := uint64(1); i < delivered && d < r.cfg.MaxRetryDelay; i++ {
		d *= 2
	}
	return min(d, r.cfg.MaxRetryDelay)
}

// Terminated is the payload of the audit event Receive records when it
// gives up on a message (ReceiveConfig.MaxDeliver), on
// codi.audit.log.<agent>.mail.terminated.
type Terminated struct {
	Agent      string    `json:"agent"`
	Consumer   string    `json:"consumer"`
	Seq        uint64    `json:"seq"`
	Subject    string    `json:"subject"`
	Time       time.Time `json:"time"`
	Deliveries uint64    `json:"deliveries"`
	Error      string    `json:"error"`
}

// terminate records m as given up and terminates it. The record's
// Nats-Msg-Id (mail-terminated-<consumer>-<seq>-<stored ns>) makes a retry
// of this step store it once.
func (r *receiver) terminate(ctx context.Context, msg jetstream.Msg, m Message, herr error) error {
	subj, err := subjects.AuditLog(r.a.id, "mail", "terminated")
	if err != nil {
		return err
	}
	data, err := json.Marshal(Terminated{Agent: r.a.id, Consumer: r.name, Seq: m.Seq, Subject: m.Subject,
		Time: m.Time, Deliveries: m.Delivered, Error: herr.Error()})
	if err != nil {
		return err
	}
	rec := &nats.Msg{Subject: subj, Data: data, Header: nats.Header{}}
	rec.Header.Set(jetstream.MsgIDHeader, "mail-terminated-"+r.name+"-"+strconv.FormatUint(m.Seq, 10)+"-"+strconv.FormatInt(m.Time.UnixNano(), 10))
	if _, err := r.a.js.PublishMsg(ctx, rec); err != nil {
		return fmt.Errorf("bus: record terminated message %d: %w", m.Seq, err)
	}
	r.log.Warn().Uint64("seq", m.Seq).Uint64("deliveries", m.Delivered).Str("subject", m.Subject).AnErr("handler_error", herr).
		Msg("message terminated after its last delivery failed")
	return msg.TermWithReason("codi2: handler failed " + strconv.FormatUint(m.Delivered, 10) + " times: " + herr.Error())
}

package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/codi2/codi2/subjects"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// OpenRequest is the body of codi.inbox.open.<agent>: how the agent's inbox
// consumer is made when it does not exist, and its ack wait.
type OpenRequest struct {
	// Deliver is "all" (default), "new" or "since" (with Since).
	Deliver string    `json:"deliver,omitempty"`
	Since   time.Time `json:"since,omitzero"`
	// StartSeq, when set, makes a missing consumer start at this stream
	// sequence: Receive recreating a consumer deleted under it.
	StartSeq uint64 `json:"start_seq,omitempty"`
	// AckWaitMS is the consumer's ack wait in milliseconds.
	AckWaitMS int64 `json:"ack_wait_ms,omitempty"`
}

// PeekReply is the answer of codi.inbox.peek.<agent>: pending messages in
// stream order, and More when some were left out to fit the reply.
type PeekReply struct {
	Messages []PeekedMessage `json:"messages"`
	More     bool            `json:"more,omitempty"`
}

// PeekedMessage is one message of a PeekReply; Data is base64 in JSON.
type PeekedMessage struct {
	Subject string      `json:"subject"`
	Seq     uint64      `json:"seq"`
	Time    time.Time   `json:"time"`
	Header  nats.Header `json:"header,omitempty"`
	Data    []byte      `json:"data"`
}

// InboxService makes and reads agents' inbox consumers on their behalf, so
// that with auth on an agent needs no right to create consumers at all
// (JetStream cannot check the filters of a consumer that has several, so a
// right to create "its own" consumer would let it read anyone's mail). It
// answers codi.inbox.open.<agent> and codi.inbox.peek.<agent>; the server's
// permissions let agent X publish only its own. Receive and Peek use it,
// and do the work themselves when nobody answers (a plain NATS server in
// tests). Handlers run on the subscriptions' delivery goroutines, one
// request at a time each; Stop drains them.
type InboxService struct {
	js   jetstream.JetStream
	log  zerolog.Logger
	subs []*nats.Subscription

	mu sync.Mutex
	// acked is the highest CODI_MSG sequence each inbox consumer acked, as
	// JetStream's ack metrics told (inbox consumers sample every ack): the
	// position to make a consumer again at, should an operator delete it
	// while no Receive runs. Kept in memory, for the life of the process.
	acked map[string]uint64
}

// ServeInboxes starts the inbox service on nc.
func ServeInboxes(nc *nats.Conn, log zerolog.Logger) (*InboxService, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	s := &InboxService{js: js, log: log.With().Str("component", "inbox").Logger(), acked: map[string]uint64{}}
	for subj, h := range map[string]nats.MsgHandler{subjects.InboxOpenWildcard: s.open, subjects.InboxPeekWildcard: s.peek,
		ackMetrics: s.ackMetric} {
		sub, err := nc.Subscribe(subj, h)
		if err != nil {
			_ = s.Stop()
			return nil, fmt.Errorf("bus: inbox service %s: %w", subj, err)
		}
		s.subs = append(s.subs, sub)
	}
	if err := nc.Flush(); err != nil {
		_ = s.Stop()
		return nil, fmt.Errorf("bus: inbox service: %w", err)
	}
	return s, nil
}

// Stop stops answering, after the requests in hand.
func (s *InboxService) Stop() error {
	var errs []error
	for _, sub := range s.subs {
		errs = append(errs, sub.Drain())
	}
	return errors.Join(errs...)
}

// ackMetrics is where JetStream publishes the sampled acks of CODI_MSG's
// consumers (nats-server JSMetricConsumerAckPre).
const ackMetrics = "$JS.EVENT.METRIC.CONSUMER.ACK." + StreamMsg + ".*"

func (s *InboxService) ackMetric(m *nats.Msg) {
	var a struct {
		Consumer  string `json:"consumer"`
		StreamSeq uint64 `json:"stream_seq"`
	}
	if json.Unmarshal(m.Data, &a) != nil || a.Consumer == "" {
		return
	}
	s.mu.Lock()
	s.acked[a.Consumer] = max(s.acked[a.Consumer], a.StreamSeq)
	s.mu.Unlock()
}

// Acked is the highest CODI_MSG sequence agent's inbox consumer is known to
// have acked (0 when none is known). Safe for concurrent use.
func (s *InboxService) Acked(agent string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acked[ConsumerName(agent)]
}

func respondErr(m *nats.Msg, code string, err error) {
	reply := &nats.Msg{Header: nats.Header{}}
	reply.Header.Set(ErrorHeader, err.Error())
	reply.Header.Set(ErrorCodeHeader, code)
	_ = m.RespondMsg(reply)
}

func (s *InboxService) agent(m *nats.Msg) (string, bool) {
	id := subjects.Token(m.Subject, 3)
	if err := subjects.ValidAgent(id); err != nil {
		respondErr(m, "400", err)
		return "", false
	}
	return id, true
}

func (s *InboxService) open(m *nats.Msg) {
	id, ok := s.agent(m)
	if !ok {
		return
	}
	var req OpenRequest
	if len(m.Data) > 0 {
		if err := json.Unmarshal(m.Data, &req); err != nil {
			respondErr(m, "400", fmt.Errorf("open request: %w", err))
			return
		}
	}
	from, err := req.deliverFrom()
	if err != nil {
		respondErr(m, "400", err)
		return
	}
	// A consumer deleted while no Receive ran is made again after what it
	// had acked, not from its start: mail handled is not handed over again.
	if acked := s.Acked(id); req.StartSeq == 0 && acked > 0 {
		req.StartSeq = acked + 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	cons, err := ensureInbox(ctx, s.js, id, from, req.StartSeq, time.Duration(req.AckWaitMS)*time.Millisecond)
	if err != nil {
		s.log.Warn().Err(err).Str("agent", id).Msg("inbox consumer")
		respondErr(m, "500", err)
		return
	}
	_ = m.Respond([]byte(`{"consumer":` + string(mustMarshal(cons.CachedInfo().Name)) + `}`))
}

func (s *InboxService) peek(m *nats.Msg) {
	id, ok := s.agent(m)
	if !ok {
		return
	}
	var req struct {
		Max int `json:"max"`
	}
	if len(m.Data) > 0 {
		if err := json.Unmarshal(m.Data, &req); err != nil {
			respondErr(m, "400", fmt.Errorf("peek request: %w", err))
			return
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	msgs, err := peek(ctx, s.js, id, min(max(req.Max, 1), 1000))
	if err != nil {
		respondErr(m, "500", err)
		return
	}
	// Fit the reply in the connection's max payload.
	limit := int(s.js.Conn().MaxPayload()) - 1024
	out := PeekReply{Messages: []PeekedMessage{}}
	size := 64
	for _, msg := range msgs {
		pm := PeekedMessage{Subject: msg.Subject, Seq: msg.Seq, Time: msg.Time, Header: msg.Header, Data: msg.Data}
		n := len(mustMarshal(pm)) + 1
		if size+n > limit {
			out.More = true
			break
		}
		size += n
		out.Messages = append(out.Messages, pm)
	}
	_ = m.Respond(mustMarshal(out))
}

func mustMarshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only values this file builds
	}
	return b
}

func (r OpenRequest) deliverFrom() (DeliverFrom, error) {
	switch r.Deliver {
	case "", "all":
		return DeliverAll, nil
	case "new":
		return DeliverNew, nil
	case "since":
		if r.Since.IsZero() {
			return DeliverFrom{}, errors.New(`open request: deliver "since" needs since`)
		}
		return DeliverSince(r.Since), nil
	}
	return DeliverFrom{}, fmt.Errorf("open request: deliver %q: want all, new or since", r.Deliver)
}

func (d DeliverFrom) request() OpenRequest {
	switch d.policy {
	case jetstream.DeliverNewPolicy:
		return OpenRequest{Deliver: "new"}
	case jetstream.DeliverByStartTimePolicy:
		return OpenRequest{Deliver: "since", Since: d.at}
	}
	return OpenRequest{}
}

// inboxConfig is agent's inbox consumer: its filters, one message at a time,
// explicit acks, retries left to Receive.
func inboxConfig(agent string, from DeliverFrom, ackWait time.Duration) jetstream.ConsumerConfig {
	if ackWait <= 0 {
		ackWait = DefaultAckWait
	}
	return jetstream.ConsumerConfig{
		Durable:        ConsumerName(agent),
		Description:    "codi2 inbox of " + agent,
		FilterSubjects: subjects.MsgInboxFilters(agent),
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        ackWait,
		MaxAckPending:  1,
		MaxDeliver:     -1,
		DeliverPolicy:  from.policy,
		OptStartTime:   optTime(from.at),
		// Every ack is published as a metric, which the inbox service keeps
		// as the consumer's position.
		SampleFrequency: "100%",
	}
}

// ensureInbox finds agent's inbox consumer or creates it: at from, or at
// startSeq when set. An existing consumer keeps its start (JetStream cannot
// change it) but takes the inbox's filters, ack wait and one-at-a-time
// delivery.
func ensureInbox(ctx context.Context, js jetstream.JetStream, agent string, from DeliverFrom, startSeq uint64, ackWait time.Duration) (jetstream.Consumer, error) {
	name := ConsumerName(agent)
	want := inboxConfig(agent, from, ackWait)
	cons, err := js.Consumer(ctx, StreamMsg, name)
	switch {
	case err == nil:
		cur := cons.CachedInfo().Config
		cur.Description, cur.AckWait, cur.MaxAckPending, cur.MaxDeliver = want.Description, want.AckWait, 1, -1
		cur.SampleFrequency = want.SampleFrequency
		cur.FilterSubject, cur.FilterSubjects = "", want.FilterSubjects
		cons, err = js.UpdateConsumer(ctx, StreamMsg, cur)
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		if startSeq > 0 {
			want.DeliverPolicy, want.OptStartSeq, want.OptStartTime = jetstream.DeliverByStartSequencePolicy, startSeq, nil
		}
		cons, err = js.CreateConsumer(ctx, StreamMsg, want)
	}
	if err != nil {
		return nil, fmt.Errorf("bus: inbox consumer %s on %s: %w", name, StreamMsg, err)
	}
	return cons, nil
}

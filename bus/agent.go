package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/codi2/codi2/subjects"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// Micro-convention error headers, used by Serve and understood by Call.
const (
	ErrorHeader     = "Nats-Service-Error"
	ErrorCodeHeader = "Nats-Service-Error-Code"
)

// Agent is one agent's client to the bus. Every subject it sends on carries
// its own id as the sender, so an agent cannot send as another through it.
// An Agent is safe for concurrent use; it does not own the connection.
type Agent struct {
	id string
	nc *nats.Conn
	js jetstream.JetStream
}

// NewAgent returns the client for agent id over nc. id must be a valid agent
// id (a subject token other than "all").
func NewAgent(id string, nc *nats.Conn) (*Agent, error) {
	if err := subjects.ValidAgent(id); err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("bus: agent %s: %w", id, err)
	}
	return &Agent{id: id, nc: nc, js: js}, nil
}

// ID is the agent's id.
func (a *Agent) ID() string { return a.id }

// Message is a message received by an agent.
type Message struct {
	// Subject is the full subject, codi.msg.<to>.<from>.<type…>.
	Subject string
	// To is the target (the agent, or "all"); From is the sender.
	To, From string
	// Type is the message type, its tokens joined by dots ("task.assign").
	Type   string
	Data   []byte
	Header nats.Header
	// Seq and Time are the CODI_MSG stream sequence and store time; zero on
	// live (Subscribe) deliveries, which do not go through the stream.
	Seq  uint64
	Time time.Time
	// Delivered counts deliveries of this message to this agent's durable
	// consumer; above 1 it is a redelivery.
	Delivered uint64
}

func parseMessage(subject string, data []byte, hdr nats.Header) (Message, error) {
	p, err := subjects.Parse(subject)
	if err != nil {
		return Message{}, err
	}
	return Message{Subject: subject, To: p.To, From: p.From, Type: strings.Join(p.Rest, "."), Data: data, Header: hdr}, nil
}

// SendOption is a per-call option of Send and Broadcast.
type SendOption func(*nats.Msg)

// WithMsgID sets the Nats-Msg-Id. Retrying a send with the same id within the
// stream's duplicate window stores it once. Send generates a unique id when
// this option is absent.
func WithMsgID(id string) SendOption {
	return func(m *nats.Msg) { m.Header.Set(jetstream.MsgIDHeader, id) }
}

// WithHeader adds a header to the message.
func WithHeader(key, value string) SendOption {
	return func(m *nats.Msg) { m.Header.Add(key, value) }
}

// Send stores a durable message from this agent to agent to (or "all") with
// type typ ("task.assign": one or more dot-separated tokens) and returns the
// PubAck: once it returns without error the message is in CODI_MSG and will
// be delivered. PubAck.Duplicate is true when the Nats-Msg-Id was seen before.
func (a *Agent) Send(ctx context.Context, to, typ string, data []byte, opts ...SendOption) (*jetstream.PubAck, error) {
	subj, err := subjects.Msg(to, a.id, strings.Split(typ, ".")...)
	if err != nil {
		return nil, err
	}
	if err := a.checkPayload(data); err != nil {
		return nil, err
	}
	m := &nats.Msg{Subject: subj, Data: data, Header: nats.Header{}}
	m.Header.Set(jetstream.MsgIDHeader, nuid.Next())
	for _, o := range opts {
		o(m)
	}
	ack, err := a.js.PublishMsg(ctx, m)
	if err != nil {
		return nil, fmt.Errorf("bus: send %s: %w", subj, err)
	}
	return ack, nil
}

// Broadcast is Send to every agent.
func (a *Agent) Broadcast(ctx context.Context, typ string, data []byte, opts ...SendOption) (*jetstream.PubAck, error) {
	return a.Send(ctx, subjects.All, typ, data, opts...)
}

func (a *Agent) checkPayload(data []byte) error {
	if max := a.nc.MaxPayload(); int64(len(data)) > max {
		return fmt.Errorf("%w: %d bytes, the server allows %d", ErrPayloadTooLarge, len(data), max)
	}
	return nil
}

// Inbox is a live subscription to an agent's inbox and to broadcasts.
type Inbox struct {
	subs []*nats.Subscription
}

// Unsubscribe stops delivery at once.
func (i *Inbox) Unsubscribe() error {
	var errs []error
	for _, s := range i.subs {
		errs = append(errs, s.Unsubscribe())
	}
	return errors.Join(errs...)
}

// Subscribe delivers, live, every message sent to this agent or to all from
// now on (the subscription is registered on the server when Subscribe
// returns), calling h from the connection's delivery goroutine, one message at
// a time. Live delivery is at most once: use Receive to catch up on what was
// sent while the agent was away.
func (a *Agent) Subscribe(h func(Message)) (*Inbox, error) {
	inbox, _ := subjects.MsgInbox(a.id)
	in := &Inbox{}
	for _, subj := range []string{inbox, subjects.MsgBroadcast} {
		sub, err := a.nc.Subscribe(subj, func(m *nats.Msg) {
			msg, err := parseMessage(m.Subject, m.Data, m.Header)
			if err == nil {
				h(msg)
			}
		})
		if err != nil {
			_ = in.Unsubscribe()
			return nil, fmt.Errorf("bus: subscribe %s: %w", subj, err)
		}
		in.subs = append(in.subs, sub)
	}
	// Round trip to the server so that the inbox is live when we return.
	if err := a.nc.Flush(); err != nil {
		_ = in.Unsubscribe()
		return nil, fmt.Errorf("bus: subscribe: %w", err)
	}
	return in, nil
}

// ConsumerName is the durable CODI_MSG consumer of agent id: the id itself,
// with '/' and '\' (which consumer names may not hold) escaped as %2F and %5C.
func ConsumerName(id string) string {
	return strings.NewReplacer("/", "%2F", `\`, "%5C").Replace(id)
}

// ReceiveConfig tunes Receive. The zero value gives the defaults.
type ReceiveConfig struct {
	// AckWait is how long a delivered message may stay unacknowledged
	// before JetStream redelivers it. Default 30s.
	AckWait time.Duration
	// RetryDelay is how long JetStream waits to redeliver a message whose
	// handler returned an error. Default 100ms.
	RetryDelay time.Duration
}

// Receive consumes this agent's durable consumer on CODI_MSG (named
// ConsumerName(id), filtered on its inbox and on broadcasts), creating it on
// first use: everything addressed to the agent since it was last acked,
// including what was sent while it was offline, then new messages as they
// arrive. h runs for one message at a time, in stream order; when it returns
// nil the message is acked (and the ack confirmed), when it returns an error
// the message is redelivered after RetryDelay. Receive blocks until ctx is
// done, then stops the consumer and returns nil once h has returned.
func (a *Agent) Receive(ctx context.Context, cfg ReceiveConfig, h func(context.Context, Message) error) error {
	if cfg.AckWait <= 0 {
		cfg.AckWait = 30 * time.Second
	}
	if cfg.RetryDelay <= 0 {
		cfg.RetryDelay = 100 * time.Millisecond
	}
	inbox, _ := subjects.MsgInbox(a.id)
	cons, err := a.js.CreateOrUpdateConsumer(ctx, StreamMsg, jetstream.ConsumerConfig{
		Durable:        ConsumerName(a.id),
		Description:    "codi2 inbox of " + a.id,
		FilterSubjects: []string{inbox, subjects.MsgBroadcast},
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        cfg.AckWait,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fmt.Errorf("bus: consumer %s: %w", ConsumerName(a.id), err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		msg, err := parseMessage(m.Subject(), m.Data(), m.Headers())
		if err != nil {
			// Not a contract subject: nobody can handle it, so don't redeliver it.
			_ = m.Term()
			return
		}
		if md, err := m.Metadata(); err == nil {
			msg.Seq, msg.Time, msg.Delivered = md.Sequence.Stream, md.Timestamp, md.NumDelivered
		}
		if err := h(ctx, msg); err != nil {
			_ = m.NakWithDelay(cfg.RetryDelay)
			return
		}
		_ = m.DoubleAck(ctx)
	})
	if err != nil {
		return fmt.Errorf("bus: consume %s: %w", ConsumerName(a.id), err)
	}
	<-ctx.Done()
	cc.Drain()
	<-cc.Closed()
	return nil
}

// RPCRequest is a live call received by Serve.
type RPCRequest struct {
	// From is the calling agent; Method the method tokens joined by dots.
	From, Method string
	Data         []byte
	Header       nats.Header
}

// Call makes a live request to agent to's method and returns the reply data.
// It fails with nats.ErrNoResponders when nobody serves the agent, with the
// context's error on timeout, and with ErrRemote carrying the remote's
// message when the handler returned an error.
func (a *Agent) Call(ctx context.Context, to, method string, data []byte) ([]byte, error) {
	subj, err := subjects.RPC(to, a.id, strings.Split(method, ".")...)
	if err != nil {
		return nil, err
	}
	if err := a.checkPayload(data); err != nil {
		return nil, err
	}
	resp, err := a.nc.RequestWithContext(ctx, subj, data)
	if err != nil {
		return nil, fmt.Errorf("bus: call %s: %w", subj, err)
	}
	if msg := resp.Header.Get(ErrorHeader); msg != "" {
		return nil, fmt.Errorf("%w: %s: %s %s", ErrRemote, subj, resp.Header.Get(ErrorCodeHeader), msg)
	}
	return resp.Data, nil
}

// Serve answers live calls made to this agent, calling h on the connection's
// delivery goroutine. Instances of one agent serving at once share the calls
// (queue group named after the agent). Calls reach h once Serve has
// returned. A handler error is returned to the
// caller in the NATS micro convention (Nats-Service-Error, code 500). The
// caller owns the returned subscription.
func (a *Agent) Serve(h func(RPCRequest) ([]byte, error)) (*nats.Subscription, error) {
	inbox, _ := subjects.RPCInbox(a.id)
	sub, err := a.nc.QueueSubscribe(inbox, ConsumerName(a.id), func(m *nats.Msg) {
		p, err := subjects.Parse(m.Subject)
		if err != nil {
			return
		}
		out, err := h(RPCRequest{From: p.From, Method: strings.Join(p.Rest, "."), Data: m.Data, Header: m.Header})
		reply := &nats.Msg{Data: out}
		if err != nil {
			reply.Header = nats.Header{}
			reply.Header.Set(ErrorHeader, err.Error())
			reply.Header.Set(ErrorCodeHeader, "500")
			reply.Data = nil
		}
		_ = m.RespondMsg(reply)
	})
	if err != nil {
		return nil, fmt.Errorf("bus: serve %s: %w", inbox, err)
	}
	// Round trip to the server so that calls reach us when we return.
	if err := a.nc.Flush(); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("bus: serve %s: %w", inbox, err)
	}
	return sub, nil
}

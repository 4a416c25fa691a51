package bus

import (
	"context"
	"encoding/json"
	"fmt"
	"net/textproto"
	"strings"

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
	m := &nats.Msg{Subject: subj, Data: data, Header: nats.Header{}}
	m.Header.Set(jetstream.MsgIDHeader, nuid.Next())
	for _, o := range opts {
		o(m)
	}
	if err := a.checkMsgSize(m); err != nil {
		return nil, err
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

// checkMsgSize applies the server's max_payload as the server does: to the
// data and the headers together (the NATS protocol's HPUB size). So the
// largest payload Send takes is the max payload minus its headers' size:
// 49 bytes for the Nats-Msg-Id Send sets, more with WithMsgID's longer ids
// or WithHeader.
func (a *Agent) checkMsgSize(m *nats.Msg) error {
	hdr := headerSize(m.Header)
	if max := a.nc.MaxPayload(); int64(len(m.Data)+hdr) > max {
		return fmt.Errorf("%w: %d bytes of data and %d of headers, the server allows %d in all (at most %d of data with these headers)",
			ErrPayloadTooLarge, len(m.Data), hdr, max, max-int64(hdr))
	}
	return nil
}

// headerSize is the size of h on the wire, as nats.go encodes it:
// "NATS/1.0\r\n", a "key: value\r\n" line per value (trimmed), "\r\n".
func headerSize(h nats.Header) int {
	if len(h) == 0 {
		return 0
	}
	n := len("NATS/1.0\r\n") + len("\r\n")
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(textproto.TrimString(v)) + len(": \r\n")
		}
	}
	return n
}

// request sends a JSON request to one of codi2's services and returns the
// reply's data, or an ErrRemote error carrying the micro-convention error
// the service answered; nats.ErrNoResponders when nobody serves it.
func (a *Agent) request(ctx context.Context, subj string, body any) ([]byte, error) {
	data, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	resp, err := a.nc.RequestWithContext(ctx, subj, data)
	if err != nil {
		return nil, err
	}
	if msg := resp.Header.Get(ErrorHeader); msg != "" {
		return nil, fmt.Errorf("%w: %s: %s %s", ErrRemote, subj, resp.Header.Get(ErrorCodeHeader), msg)
	}
	return resp.Data, nil
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

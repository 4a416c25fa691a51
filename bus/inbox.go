package bus

import (
	"fmt"
	"sync"
	"time"

	"github.com/codi2/codi2/subjects"
	"github.com/nats-io/nats.go"
)

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
	// Err is not nil when the subject breaks the contract (no type, no
	// sender, the reserved "all" as sender, a bad token): anyone who may
	// publish on the agent's inbox can store such a message, so it is still
	// delivered (never dropped without a trace) with what could be read of
	// To, From and Type, and the handler decides. It wraps a subjects error.
	Err error
}

// parseMessage reads a delivered codi.msg subject. It never fails: what
// does not parse is kept as read, with Err saying why.
func parseMessage(subject string, data []byte, hdr nats.Header) Message {
	m := Message{
		Subject: subject, Data: data, Header: hdr,
		To: subjects.Token(subject, 2), From: subjects.Token(subject, 3), Type: subjects.Tail(subject, 4),
	}
	if _, err := subjects.Parse(subject); err != nil {
		m.Err = err
	}
	return m
}

// liveBuffer is how many live messages an Inbox holds for a handler that
// is behind: nats.go's default pending limit for a subscription.
const liveBuffer = 64 * 1024

// Inbox is a live subscription to an agent's inbox and to broadcasts. It
// owns the goroutine that calls the handler.
type Inbox struct {
	subs []*nats.Subscription
	ch   chan *nats.Msg
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// Unsubscribe stops delivery: once it returns no handler call starts, and
// what the inbox still held is dropped. A handler call in progress goes on:
// wait on Done for it (not from the handler itself). Unsubscribe may be
// called from the handler; it is idempotent and safe for concurrent use.
func (i *Inbox) Unsubscribe() error {
	var err error
	i.once.Do(func() {
		for _, s := range i.subs {
			if e := s.Unsubscribe(); e != nil && err == nil {
				err = e
			}
		}
		close(i.stop)
	})
	return err
}

// Done is closed when the inbox's goroutine has returned after
// Unsubscribe: no handler call is in progress any more.
func (i *Inbox) Done() <-chan struct{} { return i.done }

// Subscribe delivers, live, every message sent to this agent or to all from
// now on (the subscription is registered on the server when Subscribe
// returns). h runs on one goroutine owned by the Inbox, one message at a
// time, in the order the server delivered them (for one sender, the order
// it sent them in), inbox and broadcasts alike. Live delivery is at most
// once: a handler more than 65,536 messages behind loses the overflow, which
// the connection's error handler reports as a slow consumer; use Receive to
// catch up on what was sent while the agent was away. A message whose
// subject breaks the contract is delivered with Message.Err set.
func (a *Agent) Subscribe(h func(Message)) (*Inbox, error) {
	in := &Inbox{ch: make(chan *nats.Msg, liveBuffer), stop: make(chan struct{}), done: make(chan struct{})}
	// Both subscriptions feed one channel from the connection's single
	// reader, so the handler sees the server's order across them.
	for _, subj := range subjects.MsgInboxFilters(a.id) {
		sub, err := a.nc.ChanSubscribe(subj, in.ch)
		if err != nil {
			_ = in.Unsubscribe()
			close(in.done)
			return nil, fmt.Errorf("bus: subscribe %s: %w", subj, err)
		}
		in.subs = append(in.subs, sub)
	}
	// Round trip to the server so that the inbox is live when we return.
	if err := a.nc.Flush(); err != nil {
		_ = in.Unsubscribe()
		close(in.done)
		return nil, fmt.Errorf("bus: subscribe: %w", err)
	}
	go in.run(h)
	return in, nil
}

func (i *Inbox) run(h func(Message)) {
	defer close(i.done)
	for {
		select {
		case <-i.stop:
			return
		case m := <-i.ch:
			// A message and the stop can both be ready: stop wins, so no
			// handler call starts after Unsubscribe.
			select {
			case <-i.stop:
				return
			default:
			}
			h(parseMessage(m.Subject, m.Data, m.Header))
		}
	}
}

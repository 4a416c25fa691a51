package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/codi2/codi2/subjects"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Peek returns up to max of the messages Receive would hand over next,
// without taking or acking them: those after the inbox consumer's ack floor
// (everything CODI_MSG holds for the agent when it has no consumer yet), in
// stream order. It reads through an ephemeral consumer of its own, so it
// never disturbs Receive. Safe for concurrent use.
//
// It asks the inbox service (codi.inbox.peek.<id>), which reads for agents
// that may not make consumers (auth on), and reads itself when nobody
// answers.
func (a *Agent) Peek(ctx context.Context, max int) ([]Message, error) {
	if max <= 0 {
		return nil, nil
	}
	data, err := a.request(ctx, subjects.InboxPeek(a.id), map[string]int{"max": max})
	if errors.Is(err, nats.ErrNoResponders) {
		return peek(ctx, a.js, a.id, max)
	}
	if err != nil {
		return nil, err
	}
	var pr PeekReply
	if err := json.Unmarshal(data, &pr); err != nil {
		return nil, fmt.Errorf("bus: peek %s: %w", a.id, err)
	}
	out := make([]Message, len(pr.Messages))
	for i, pm := range pr.Messages {
		out[i] = parseMessage(pm.Subject, pm.Data, pm.Header)
		out[i].Seq, out[i].Time = pm.Seq, pm.Time
	}
	return out, nil
}

// peekIdle is how long an idle peek consumer lives on the server.
const peekIdle = 5 * time.Second

// peek reads up to max of agent's pending messages through an ephemeral
// consumer of its own.
func peek(ctx context.Context, js jetstream.JetStream, agent string, max int) ([]Message, error) {
	name := ConsumerName(agent)
	var start uint64
	cons, err := js.Consumer(ctx, StreamMsg, name)
	switch {
	case err == nil:
		start = cons.CachedInfo().AckFloor.Stream + 1
	case !errors.Is(err, jetstream.ErrConsumerNotFound):
		return nil, fmt.Errorf("bus: peek %s: %w", name, err)
	}
	// An ephemeral consumer that takes no acks; the server removes it once
	// idle, so nothing here needs the right to delete consumers.
	cc := jetstream.ConsumerConfig{FilterSubjects: subjects.MsgInboxFilters(agent), AckPolicy: jetstream.AckNonePolicy,
		InactiveThreshold: peekIdle, MemoryStorage: true}
	if start > 1 {
		cc.DeliverPolicy, cc.OptStartSeq = jetstream.DeliverByStartSequencePolicy, start
	}
	oc, err := js.CreateConsumer(ctx, StreamMsg, cc)
	if err != nil {
		return nil, fmt.Errorf("bus: peek %s: %w", name, err)
	}
	batch, err := oc.FetchNoWait(max)
	if err != nil {
		return nil, fmt.Errorf("bus: peek %s: %w", name, err)
	}
	var out []Message
	for m := range batch.Messages() {
		msg := parseMessage(m.Subject(), m.Data(), m.Headers())
		if md, err := m.Metadata(); err == nil {
			msg.Seq, msg.Time, msg.Delivered = md.Sequence.Stream, md.Timestamp, 0
		}
		out = append(out, msg)
	}
	if err := batch.Error(); err != nil {
		return out, fmt.Errorf("bus: peek %s: %w", name, err)
	}
	return out, nil
}

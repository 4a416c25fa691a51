package bus

import (
	"context"
	"errors"
	"fmt"

	"github.com/codi2/codi2/subjects"
	"github.com/nats-io/nats.go/jetstream"
)

// Peek returns up to max of the messages Receive would hand over next,
// without taking or acking them: those after the inbox consumer's ack floor
// (everything CODI_MSG holds for the agent when it has no consumer yet), in
// stream order. It reads through an ordered consumer of its own, so it
// never disturbs Receive. Safe for concurrent use.
func (a *Agent) Peek(ctx context.Context, max int) ([]Message, error) {
	if max <= 0 {
		return nil, nil
	}
	name := ConsumerName(a.id)
	var start uint64
	cons, err := a.js.Consumer(ctx, StreamMsg, name)
	switch {
	case err == nil:
		start = cons.CachedInfo().AckFloor.Stream + 1
	case !errors.Is(err, jetstream.ErrConsumerNotFound):
		return nil, fmt.Errorf("bus: peek %s: %w", name, err)
	}
	occ := jetstream.OrderedConsumerConfig{FilterSubjects: subjects.MsgInboxFilters(a.id)}
	if start > 1 {
		occ.DeliverPolicy, occ.OptStartSeq = jetstream.DeliverByStartSequencePolicy, start
	}
	oc, err := a.js.OrderedConsumer(ctx, StreamMsg, occ)
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

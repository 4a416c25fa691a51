package bus_test

import (
	"context"
	"testing"
	"time"

	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/bus/bustest"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Peek shows what Receive would hand over next, from the inbox consumer's
// ack floor (or the stream's start without one), and takes nothing.
func TestAgent_Peek(t *testing.T) {
	b := bustest.Run(t)
	ctx := context.Background()
	a := newAgent(t, b, "agent-1")
	got, err := a.Peek(ctx, 0)
	require.NoError(t, err)
	assert.Empty(t, got)
	sendN(t, b, "agent-1", 1, 3)

	got, err = a.Peek(ctx, 2)
	require.NoError(t, err)
	assert.Equal(t, []string{"1", "2"}, datas(got), "no consumer yet: from the start")
	assert.Equal(t, uint64(1), got[0].Seq)
	assert.Equal(t, "orchestrator", got[0].From)

	// The inbox consumer acked the first: Peek starts after it.
	cons, err := b.JetStream().CreateOrUpdateConsumer(ctx, bus.StreamMsg, jetstream.ConsumerConfig{
		Durable: bus.ConsumerName("agent-1"), AckPolicy: jetstream.AckExplicitPolicy,
		FilterSubjects: []string{"codi.msg.agent-1.>", "codi.msg.all.>"},
	})
	require.NoError(t, err)
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	require.NoError(t, err)
	for m := range batch.Messages() {
		require.NoError(t, m.DoubleAck(ctx))
	}
	got, err = a.Peek(ctx, 10)
	require.NoError(t, err)
	assert.Equal(t, []string{"2", "3"}, datas(got))

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = a.Peek(cctx, 10)
	require.Error(t, err, "a cancelled context")
}

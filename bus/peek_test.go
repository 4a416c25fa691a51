package bus_test

import (
	"context"
	"testing"
	"time"

	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/bus/bustest"
	"github.com/codi2/codi2/internal/auth"
	"github.com/codi2/codi2/subjects"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAgent_Peek(t *testing.T) {
	b := bustest.Run(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	orch := newAgent(t, b, "orchestrator")
	for _, m := range []struct{ to, data string }{{"agent-1", "one"}, {"agent-2", "other"}, {"all", "standup"}, {"agent-1", "two"}} {
		var err error
		if m.to == "all" {
			_, err = orch.Broadcast(ctx, "note", []byte(m.data))
		} else {
			_, err = orch.Send(ctx, m.to, "note", []byte(m.data))
		}
		require.NoError(t, err)
	}
	a := newAgent(t, b, "agent-1")
	none, err := a.Peek(ctx, 0)
	require.NoError(t, err)
	assert.Empty(t, none)
	got, err := a.Peek(ctx, 10)
	require.NoError(t, err)
	assert.Equal(t, []string{"one", "standup", "two"}, datas(got), "no consumer yet: everything for agent-1")
	assert.Equal(t, uint64(1), got[0].Seq)

	require.NoError(t, a.Receive(ctx, bus.ReceiveConfig{Max: 1}, func(context.Context, bus.Message) error { return nil }))
	got, err = a.Peek(ctx, 1)
	require.NoError(t, err)
	assert.Equal(t, []string{"standup"}, datas(got), "after the ack floor, at most max")
	got, err = a.Peek(ctx, 10)
	require.NoError(t, err)
	assert.Equal(t, []string{"standup", "two"}, datas(got), "peeking takes nothing")
}

// Under auth an agent may not create consumers of other names than its
// inbox's, so Peek (an ordered consumer with a random name) is refused:
// the limit the README states.
// Under auth an agent may not make consumers: the server's inbox service
// peeks for it, and answers only for the agent in its credentials.
func TestAgent_Peek_UnderAuth(t *testing.T) {
	b, a := authBus(t)
	var v violations
	nc := bustest.Connect(t, b, bus.Credentials(creds(t, a, "agent-1", auth.RoleAgent)), nats.ErrorHandler(v.handler))
	ag, err := bus.NewAgent("agent-1", nc)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = ag.Send(ctx, "agent-1", "note", []byte("to self"))
	require.NoError(t, err)
	_, err = ag.Send(ctx, "agent-2", "note", []byte("not mine"))
	require.NoError(t, err)
	got, err := ag.Peek(ctx, 10)
	require.NoError(t, err)
	require.Len(t, got, 1)
	assert.Equal(t, "to self", string(got[0].Data))
	assert.NotZero(t, got[0].Seq)
	// agent-1 asking the service for agent-2's mail is refused by the server.
	_, err = nc.Request(subjects.InboxPeek("agent-2"), []byte(`{"max":10}`), time.Second)
	require.Error(t, err)
	require.Eventually(t, func() bool { return v.count() >= 1 }, 5*time.Second, 10*time.Millisecond)
	// So is making a consumer of one's own with another agent's filter.
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	_, err = js.CreateConsumer(ctx, bus.StreamMsg, jetstream.ConsumerConfig{Durable: "agent-1", FilterSubjects: []string{"codi.msg.agent-2.>", "codi.msg.all.>"}})
	require.Error(t, err)
}

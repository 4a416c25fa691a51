package bus_test

import (
	"context"
	"testing"
	"time"

	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/bus/bustest"
	"github.com/codi2/codi2/internal/auth"
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
func TestAgent_Peek_RefusedUnderAuth(t *testing.T) {
	b, a := authBus(t)
	nc := bustest.Connect(t, b, bus.Credentials(creds(t, a, "agent-1", auth.RoleAgent)))
	ag, err := bus.NewAgent("agent-1", nc)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err = ag.Peek(ctx, 10)
	require.Error(t, err)
}

package bus_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/bus/bustest"
)

// Peek shows what Receive would hand over next, in stream order, without
// taking it: peeking twice shows the same messages.
func TestAgent_Peek(t *testing.T) {
	b := bustest.Run(t)
	from, err := bus.NewAgent("agent-1", bustest.Connect(t, b))
	require.NoError(t, err)
	to, err := bus.NewAgent("agent-2", bustest.Connect(t, b))
	require.NoError(t, err)
	ctx := context.Background()
	for _, d := range []string{"a", "b", "c"} {
		_, err := from.Send(ctx, "agent-2", "note", []byte(d))
		require.NoError(t, err)
	}
	_, err = from.Send(ctx, "agent-3", "note", []byte("not for agent-2"))
	require.NoError(t, err)
	for range 2 {
		got, err := to.Peek(ctx, 10)
		require.NoError(t, err)
		require.Len(t, got, 3)
		for i, d := range []string{"a", "b", "c"} {
			assert.Equal(t, d, string(got[i].Data))
			assert.Equal(t, "agent-1", got[i].From)
		}
	}
	got, err := to.Peek(ctx, 2)
	require.NoError(t, err)
	assert.Len(t, got, 2)
	got, err = to.Peek(ctx, 0)
	require.NoError(t, err)
	assert.Empty(t, got)
}

package bus_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/bus/bustest"
)

// TestStreamWatch_RecreatesDeletedStream is issue 11's input 4 for
// CODI_MSG: deleted under the running server, it is created again with
// its configuration, so mail is stored again instead of failing with "no
// responders", and the messages it held are recorded as lost in the audit
// stream, naming the stream and the range.
func TestStreamWatch_RecreatesDeletedStream(t *testing.T) {
	b := bustest.Run(t)
	nc := bustest.Connect(t, b)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	w := bus.NewStreamWatch(js, b.Config(), 20*time.Millisecond, bustest.Logger(t))
	ctx := context.Background()
	for range 3 {
		_, err := js.Publish(ctx, "codi.msg.agent-2.agent-1.note", []byte("hi"))
		require.NoError(t, err)
	}
	w.Check(ctx) // sees CODI_MSG with its 3 messages
	require.NoError(t, js.DeleteStream(ctx, bus.StreamMsg))
	_, err = js.Publish(ctx, "codi.msg.agent-2.agent-1.note", []byte("lost"))
	require.Error(t, err, "no stream, no responders")
	w.Check(ctx)
	_, err = js.Publish(ctx, "codi.msg.agent-2.agent-1.note", []byte("again"))
	require.NoError(t, err, "mail is stored again")
	s, err := js.Stream(ctx, bus.StreamMsg)
	require.NoError(t, err)
	assert.Equal(t, bus.StreamConfigs(b.Config())[0].Subjects, s.CachedInfo().Config.Subjects)

	audit, err := js.Stream(ctx, bus.StreamAudit)
	require.NoError(t, err)
	msg, err := audit.GetLastMsgForSubject(ctx, "codi.audit.log.codi-server.lost")
	require.NoError(t, err, "the loss is recorded")
	var lost map[string]any
	require.NoError(t, json.Unmarshal(msg.Data, &lost))
	assert.Equal(t, map[string]any{"stream": "CODI_MSG", "first_seq": 1.0, "last_seq": 3.0, "count": 3.0, "reason": "stream recreated"}, lost)
	assert.NoError(t, w.Problem())
}

// TestStreamWatch_Run checks the streams until stopped: a stream deleted
// while it runs comes back by itself.
func TestStreamWatch_Run(t *testing.T) {
	b := bustest.Run(t)
	js, err := jetstream.New(bustest.Connect(t, b))
	require.NoError(t, err)
	w := bus.NewStreamWatch(js, b.Config(), 0, bustest.Logger(t), bus.StreamMsg, bus.StreamState)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	require.NoError(t, js.DeleteStream(ctx, bus.StreamState))
	require.Eventually(t, func() bool {
		_, err := js.Stream(ctx, bus.StreamState)
		return err == nil
	}, 5*time.Second, 10*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
}

func TestRecreateStream(t *testing.T) {
	b := bustest.Run(t)
	js, err := jetstream.New(bustest.Connect(t, b))
	require.NoError(t, err)
	ctx := context.Background()
	cfg := bus.StreamConfigs(b.Config())[0]
	s, created, err := bus.RecreateStream(ctx, js, cfg)
	require.NoError(t, err)
	assert.False(t, created, "it exists")
	assert.Equal(t, bus.StreamMsg, s.CachedInfo().Config.Name)

	// A stream that cannot be created (its subjects taken) is an error
	// naming it.
	require.NoError(t, js.DeleteStream(ctx, bus.StreamMsg))
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "SQUAT", Subjects: cfg.Subjects})
	require.NoError(t, err)
	_, created, err = bus.RecreateStream(ctx, js, cfg)
	require.ErrorContains(t, err, bus.StreamMsg)
	assert.False(t, created)
	w := bus.NewStreamWatch(js, b.Config(), 0, bustest.Logger(t))
	w.Check(ctx)
	assert.ErrorContains(t, w.Problem(), bus.StreamMsg)

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, _, err = bus.RecreateStream(cctx, js, cfg)
	require.Error(t, err)
}

func TestLostTail(t *testing.T) {
	b := bustest.Run(t)
	js, err := jetstream.New(bustest.Connect(t, b))
	require.NoError(t, err)
	ctx := context.Background()
	s, err := js.Stream(ctx, bus.StreamMsg)
	require.NoError(t, err)
	for range 4 {
		_, err := js.Publish(ctx, "codi.msg.agent-2.agent-1.note", nil)
		require.NoError(t, err)
	}
	_, _, ok, err := bus.LostTail(ctx, s, 4, "codi.msg.>")
	require.NoError(t, err)
	assert.False(t, ok, "nothing after the end")
	_, _, ok, err = bus.LostTail(ctx, s, 1, "codi.msg.>")
	require.NoError(t, err)
	assert.False(t, ok, "messages follow")
	require.NoError(t, s.DeleteMsg(ctx, 3))
	require.NoError(t, s.DeleteMsg(ctx, 4))
	first, last, ok, err := bus.LostTail(ctx, s, 2, "codi.msg.>")
	require.NoError(t, err)
	assert.True(t, ok)
	assert.Equal(t, [2]uint64{3, 4}, [2]uint64{first, last})
	require.NoError(t, js.DeleteStream(ctx, bus.StreamMsg))
	_, _, _, err = bus.LostTail(ctx, s, 2, "codi.msg.>")
	assert.ErrorContains(t, err, bus.StreamMsg)
}

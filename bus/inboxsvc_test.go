package bus_test

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/bus/bustest"
	"github.com/codi2/codi2/subjects"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// serveInboxes runs the inbox service on b, as codi2 serve does.
func serveInboxes(t *testing.T, b *bus.Bus) {
	t.Helper()
	svc, err := bus.ServeInboxes(b.Conn(), bustest.Logger(t))
	require.NoError(t, err)
	t.Cleanup(func() { _ = svc.Stop() })
}

// Receive through the inbox service: each start point, and a consumer
// deleted under a running Receive, made again by the service after the
// last message handled.
func TestInboxService_Receive(t *testing.T) {
	b := bustest.Run(t)
	serveInboxes(t, b)
	ctx := context.Background()
	orch := newAgent(t, b, "orchestrator")
	since := oldAndMid(t, b, orch)
	for _, tt := range []struct {
		id      string
		deliver bus.DeliverFrom
		want    []string
	}{
		{"a-all", bus.DeliverAll, []string{"old", "mid"}},
		{"a-new", bus.DeliverNew, []string{}},
		{"a-since", bus.DeliverSince(since), []string{"mid"}},
	} {
		r := startReceiver(t, newAgent(t, b, tt.id), bus.ReceiveConfig{Deliver: tt.deliver, UntilIdle: true}, nil)
		require.NoError(t, r.wait(t))
		assert.Equal(t, tt.want, datas(r.got()), tt.id)
	}

	r := startReceiver(t, newAgent(t, b, "agent-1"), bus.ReceiveConfig{Deliver: bus.DeliverNew}, nil)
	require.Eventually(t, func() bool {
		_, err := b.JetStream().Consumer(ctx, bus.StreamMsg, "agent-1")
		return err == nil
	}, 5*time.Second, 5*time.Millisecond)
	sendN(t, b, "agent-1", 1, 2)
	require.Eventually(t, func() bool { return len(r.got()) == 2 }, 5*time.Second, 5*time.Millisecond)
	require.NoError(t, b.JetStream().DeleteConsumer(ctx, bus.StreamMsg, "agent-1"))
	sendN(t, b, "agent-1", 3, 1)
	require.Eventually(t, func() bool { return len(r.got()) == 3 }, 10*time.Second, 5*time.Millisecond)
	require.NoError(t, r.stop())
	assert.Equal(t, seq(1, 3), datas(r.got()))
}

func TestInboxService_BadRequests(t *testing.T) {
	b := bustest.Run(t)
	serveInboxes(t, b)
	nc := bustest.Connect(t, b)
	for _, tt := range []struct {
		subject, body, code, msg string
	}{
		{"codi.inbox.open.a%ZZ", "", "400", "escape"},
		{subjects.InboxOpen("agent-1"), "{", "400", "open request"},
		{subjects.InboxOpen("agent-1"), `{"deliver":"sometimes"}`, "400", `deliver "sometimes"`},
		{subjects.InboxOpen("agent-1"), `{"deliver":"since"}`, "400", "needs since"},
		{subjects.InboxPeek("agent-1"), "[", "400", "peek request"},
	} {
		m, err := nc.Request(tt.subject, []byte(tt.body), 5*time.Second)
		require.NoError(t, err, tt.subject)
		assert.Equal(t, tt.code, m.Header.Get(bus.ErrorCodeHeader), "%s %s", tt.subject, tt.body)
		assert.Contains(t, m.Header.Get(bus.ErrorHeader), tt.msg)
	}
	// A consumer that cannot be an inbox (a push consumer by that name):
	// the service says why, and Receive fails naming the consumer.
	// Push consumers need a deliver subject; the legacy API makes one.
	jsc, err := bustest.Connect(t, b).JetStream()
	require.NoError(t, err)
	_, err = jsc.AddConsumer(bus.StreamMsg, &nats.ConsumerConfig{Durable: "agent-8", DeliverSubject: "push.agent-8", AckPolicy: nats.AckExplicitPolicy})
	require.NoError(t, err)
	m, err := nc.Request(subjects.InboxOpen("agent-8"), nil, 5*time.Second)
	require.NoError(t, err)
	assert.Equal(t, "500", m.Header.Get(bus.ErrorCodeHeader))
	err = newAgent(t, b, "agent-8").Receive(context.Background(), bus.ReceiveConfig{UntilIdle: true}, nil)
	require.ErrorIs(t, err, bus.ErrRemote)
	assert.Contains(t, err.Error(), "agent-8")
}

// A peek answer fits the server's max payload: what does not fit is left
// for the next peek, and More says so.
func TestInboxService_PeekFitsReply(t *testing.T) {
	b := bustest.Run(t)
	serveInboxes(t, b)
	a := newAgent(t, b, "agent-1")
	big := strings.Repeat("x", 400_000) // base64 in the reply: about 533 KB each
	for i := range 3 {
		_, err := newAgent(t, b, "orchestrator").Send(context.Background(), "agent-1", "blob", []byte(big+strconv.Itoa(i)))
		require.NoError(t, err)
	}
	got, err := a.Peek(context.Background(), 10)
	require.NoError(t, err)
	require.Len(t, got, 1, "one fits")
	nc := bustest.Connect(t, b)
	m, err := nc.Request(subjects.InboxPeek("agent-1"), []byte(`{"max":10}`), 5*time.Second)
	require.NoError(t, err)
	var pr bus.PeekReply
	require.NoError(t, json.Unmarshal(m.Data, &pr))
	assert.True(t, pr.More)
	assert.Len(t, pr.Messages, 1)
}

// An operator deleting an inbox consumer while no Receive runs (between two
// `codi2 inbox` calls): the inbox service makes it again after what it had
// acked, so handled mail is not handed over again.
func TestInboxService_ConsumerDeletedBetweenReceives(t *testing.T) {
	b := bustest.Run(t)
	svc, err := bus.ServeInboxes(b.Conn(), bustest.Logger(t))
	require.NoError(t, err)
	t.Cleanup(func() { _ = svc.Stop() })
	sendN(t, b, "agent-1", 1, 3)
	r := startReceiver(t, newAgent(t, b, "agent-1"), bus.ReceiveConfig{UntilIdle: true}, nil)
	require.NoError(t, r.wait(t))
	require.Equal(t, seq(1, 3), datas(r.got()))
	require.Eventually(t, func() bool { return svc.Acked("agent-1") == 3 }, 5*time.Second, 5*time.Millisecond)
	require.NoError(t, b.JetStream().DeleteConsumer(context.Background(), bus.StreamMsg, "agent-1"))
	sendN(t, b, "agent-1", 4, 1)
	r = startReceiver(t, newAgent(t, b, "agent-1"), bus.ReceiveConfig{UntilIdle: true}, nil)
	require.NoError(t, r.wait(t))
	assert.Equal(t, []string{"4"}, datas(r.got()))
}

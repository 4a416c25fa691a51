package bus_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/bus/bustest"
	"github.com/codi2/codi2/internal/proctest"
	"github.com/codi2/codi2/subjects"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newAgent(t *testing.T, b *bus.Bus, id string) *bus.Agent {
	t.Helper()
	a, err := bus.NewAgent(id, bustest.Connect(t, b))
	require.NoError(t, err)
	return a
}

// receiver runs Receive in the background and collects what it gets; stop
// cancels it and waits for Receive to return.
type receiver struct {
	mu   sync.Mutex
	msgs []bus.Message
	stop func() error
	done chan error
}

func startReceiver(t *testing.T, a *bus.Agent, cfg bus.ReceiveConfig, h func(bus.Message) error) *receiver {
	r := &receiver{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	r.done = done
	go func() {
		done <- a.Receive(ctx, cfg, func(_ context.Context, m bus.Message) error {
			if h != nil {
				if err := h(m); err != nil {
					return err
				}
			}
			r.mu.Lock()
			r.msgs = append(r.msgs, m)
			r.mu.Unlock()
			return nil
		})
	}()
	var once sync.Once
	var err error
	r.stop = func() error {
		once.Do(func() { cancel(); err = <-done })
		return err
	}
	t.Cleanup(func() { _ = r.stop() })
	return r
}

// wait waits for Receive to return by itself (UntilIdle, Max) and returns
// its error; it fails the test after 20s.
func (r *receiver) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err // for stop
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("Receive did not return by itself")
		return nil
	}
}

func (r *receiver) got() []bus.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]bus.Message(nil), r.msgs...)
}

func TestNewAgent_InvalidID(t *testing.T) {
	b := bustest.Run(t)
	nc := bustest.Connect(t, b)
	for _, id := range []string{"", "a.b", "all", "a b", "x>"} {
		_, err := bus.NewAgent(id, nc)
		assert.Error(t, err, id)
	}
	a, err := bus.NewAgent("agent-1", nc)
	require.NoError(t, err)
	assert.Equal(t, "agent-1", a.ID())
}

func TestAgent_Subscribe_LiveAndBroadcast(t *testing.T) {
	b := bustest.Run(t)
	sender := newAgent(t, b, "agent-1")
	rcv := newAgent(t, b, "agent-2")
	other := newAgent(t, b, "agent-3")

	var mu sync.Mutex
	got := map[string][]bus.Message{}
	for _, a := range []*bus.Agent{rcv, other} {
		in, err := a.Subscribe(func(m bus.Message) {
			mu.Lock()
			got[a.ID()] = append(got[a.ID()], m)
			mu.Unlock()
		})
		require.NoError(t, err)
		t.Cleanup(func() { _ = in.Unsubscribe() })
	}
	// Subscriptions are registered on the server once each conn has flushed.
	ctx := context.Background()
	_, err := sender.Send(ctx, "agent-2", "task.assign", []byte(`{"task":"ADR-028"}`))
	require.NoError(t, err)
	_, err = sender.Broadcast(ctx, "hello", []byte("hi all"))
	require.NoError(t, err)

	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got["agent-2"]) == 2 && len(got["agent-3"]) == 1
	}, 5*time.Second, 5*time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	direct := got["agent-2"][0]
	assert.Equal(t, "agent-2", direct.To)
	assert.Equal(t, "agent-1", direct.From)
	assert.Equal(t, "task.assign", direct.Type)
	assert.Equal(t, `{"task":"ADR-028"}`, string(direct.Data))
	assert.Zero(t, direct.Seq, "live deliveries do not carry a stream sequence")
	assert.Equal(t, subjects.All, got["agent-2"][1].To)
	assert.Equal(t, "hello", got["agent-3"][0].Type, "agent-3 gets only the broadcast")
}

func TestAgent_Receive_CatchUpExactlyOnce(t *testing.T) {
	b := bustest.Run(t)
	ctx := context.Background()
	orch := newAgent(t, b, "orchestrator")
	// Sent while agent-2 has never connected.
	for i := range 5 {
		_, err := orch.Send(ctx, "agent-2", "task.assign", []byte{byte('0' + i)})
		require.NoError(t, err)
	}
	_, err := orch.Send(ctx, "agent-9", "task.assign", []byte("not for agent-2"))
	require.NoError(t, err)
	_, err = orch.Broadcast(ctx, "standup", []byte("all"))
	require.NoError(t, err)

	a2 := newAgent(t, b, "agent-2")
	r := startReceiver(t, a2, bus.ReceiveConfig{}, nil)
	require.Eventually(t, func() bool { return len(r.got()) == 6 }, 5*time.Second, 5*time.Millisecond)
	require.NoError(t, r.stop())
	msgs := r.got()
	for i := range 5 {
		assert.Equal(t, []byte{byte('0' + i)}, msgs[i].Data, "stream order")
		assert.Equal(t, uint64(1), msgs[i].Delivered)
		assert.NotZero(t, msgs[i].Seq)
		assert.False(t, msgs[i].Time.IsZero())
	}
	assert.Equal(t, "standup", msgs[5].Type)

	// Reconnecting later: nothing is delivered twice, new mail arrives.
	_, err = orch.Send(ctx, "agent-2", "task.assign", []byte("late"))
	require.NoError(t, err)
	r2 := startReceiver(t, newAgent(t, b, "agent-2"), bus.ReceiveConfig{}, nil)
	require.Eventually(t, func() bool { return len(r2.got()) == 1 }, 5*time.Second, 5*time.Millisecond)
	require.NoError(t, r2.stop())
	got := r2.got()
	require.Len(t, got, 1)
	assert.Equal(t, "late", string(got[0].Data))

	info, err := b.JetStream().Consumer(ctx, bus.StreamMsg, "agent-2")
	require.NoError(t, err)
	ci, err := info.Info(ctx)
	require.NoError(t, err)
	assert.Zero(t, ci.NumAckPending)
	assert.Zero(t, ci.NumPending)
	assert.ElementsMatch(t, []string{"codi.msg.agent-2.>", "codi.msg.all.>", "codi.msg.agent-2", "codi.msg.all"}, ci.Config.FilterSubjects)
}

func TestAgent_Receive_RedeliversOnError(t *testing.T) {
	b := bustest.Run(t)
	ctx := context.Background()
	orch := newAgent(t, b, "orchestrator")
	_, err := orch.Send(ctx, "agent-2", "task.assign", []byte("flaky"))
	require.NoError(t, err)

	var mu sync.Mutex
	attempts := 0
	r := startReceiver(t, newAgent(t, b, "agent-2"), bus.ReceiveConfig{RetryDelay: 10 * time.Millisecond}, func(bus.Message) error {
		mu.Lock()
		defer mu.Unlock()
		attempts++
		if attempts < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	require.Eventually(t, func() bool { return len(r.got()) == 1 }, 5*time.Second, 5*time.Millisecond)
	require.NoError(t, r.stop())
	assert.Equal(t, uint64(3), r.got()[0].Delivered)
	mu.Lock()
	assert.Equal(t, 3, attempts)
	mu.Unlock()
}

func TestAgent_Receive_RedeliversAfterAckWait(t *testing.T) {
	b := bustest.Run(t)
	ctx := context.Background()
	_, err := newAgent(t, b, "orchestrator").Send(ctx, "agent-2", "task.assign", []byte("x"))
	require.NoError(t, err)

	// The first receiver never finishes its handler before it is stopped: the
	// message is not acked, so a second receiver gets it again after AckWait.
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	a2 := newAgent(t, b, "agent-2")
	cfg := bus.ReceiveConfig{AckWait: 200 * time.Millisecond}
	r1 := startReceiver(t, a2, cfg, func(bus.Message) error {
		started <- struct{}{}
		<-release
		return errors.New("crashed")
	})
	<-started
	close(release)
	require.NoError(t, r1.stop())

	r2 := startReceiver(t, newAgent(t, b, "agent-2"), cfg, nil)
	require.Eventually(t, func() bool { return len(r2.got()) == 1 }, 5*time.Second, 5*time.Millisecond)
	assert.GreaterOrEqual(t, r2.got()[0].Delivered, uint64(2))
}

func TestAgent_Send_DedupesRetries(t *testing.T) {
	b := bustest.Run(t)
	ctx := context.Background()
	a := newAgent(t, b, "agent-1")
	first, err := a.Send(ctx, "agent-2", "task.assign", []byte("x"), bus.WithMsgID("assign-ADR-028"))
	require.NoError(t, err)
	assert.False(t, first.Duplicate)
	retry, err := a.Send(ctx, "agent-2", "task.assign", []byte("x"), bus.WithMsgID("assign-ADR-028"))
	require.NoError(t, err)
	assert.True(t, retry.Duplicate)
	assert.Equal(t, first.Sequence, retry.Sequence)

	other, err := a.Send(ctx, "agent-2", "task.assign", []byte("x"), bus.WithHeader("X-Trace", "t1"))
	require.NoError(t, err)
	assert.False(t, other.Duplicate, "without an id every send is its own message")

	s, err := b.JetStream().Stream(ctx, bus.StreamMsg)
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	assert.Equal(t, uint64(2), info.State.Msgs)
	m, err := s.GetMsg(ctx, other.Sequence)
	require.NoError(t, err)
	assert.Equal(t, "t1", m.Header.Get("X-Trace"))
	assert.NotEmpty(t, m.Header.Get(jetstream.MsgIDHeader))
}

// Live delivery is core NATS: every publish reaches the live inbox, the
// stream's duplicate check only decides what is stored. A retried send is
// stored once, handed over once by Receive, and delivered live twice.
func TestAgent_Subscribe_RetriedSendDeliveredLiveAgain(t *testing.T) {
	b := bustest.Run(t)
	ctx := context.Background()
	sender, rcv := newAgent(t, b, "agent-1"), newAgent(t, b, "agent-2")
	var live atomic.Int32
	in, err := rcv.Subscribe(func(bus.Message) { live.Add(1) })
	require.NoError(t, err)
	t.Cleanup(func() { _ = in.Unsubscribe() })

	for range 2 {
		_, err := sender.Send(ctx, "agent-2", "task.assign", []byte("x"), bus.WithMsgID("assign-ADR-028"))
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return live.Load() == 2 }, 5*time.Second, 5*time.Millisecond)

	var handed []uint64
	err = rcv.Receive(ctx, bus.ReceiveConfig{UntilIdle: true}, func(_ context.Context, m bus.Message) error {
		handed = append(handed, m.Seq)
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, []uint64{1}, handed, "stored once")
}

func TestAgent_Send_BadInput(t *testing.T) {
	b := bustest.Run(t)
	ctx := context.Background()
	a := newAgent(t, b, "agent-1")
	tests := []struct {
		name    string
		to, typ string
		data    []byte
		wantErr error
	}{
		{"bad target", "a.b", "x", nil, subjects.ErrBadToken},
		{"empty type", "agent-2", "", nil, subjects.ErrBadToken},
		{"type with empty token", "agent-2", "task..assign", nil, subjects.ErrBadToken},
		{"type with space", "agent-2", "task assign", nil, subjects.ErrBadToken},
		{"oversized", "agent-2", "x", make([]byte, bus.DefaultMaxPayload+1), bus.ErrPayloadTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := a.Send(ctx, tt.to, tt.typ, tt.data)
			require.ErrorIs(t, err, tt.wantErr)
		})
	}
	s, err := b.JetStream().Stream(ctx, bus.StreamMsg)
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	assert.Zero(t, info.State.Msgs, "nothing bad was stored")

	_, err = a.Call(ctx, "agent-2", "x", make([]byte, bus.DefaultMaxPayload+1))
	require.ErrorIs(t, err, bus.ErrPayloadTooLarge)
	_, err = a.Call(ctx, subjects.All, "x", nil)
	require.ErrorIs(t, err, subjects.ErrReserved)
}

func TestAgent_Send_ServerDown(t *testing.T) {
	b := bustest.Run(t)
	nc, err := nats.Connect(b.ClientURL(), nats.NoReconnect())
	require.NoError(t, err)
	a, err := bus.NewAgent("agent-1", nc)
	require.NoError(t, err)
	nc.Close()
	_, err = a.Send(context.Background(), "agent-2", "x", nil)
	require.ErrorIs(t, err, nats.ErrConnectionClosed)
	_, err = a.Subscribe(func(bus.Message) {})
	require.ErrorIs(t, err, nats.ErrConnectionClosed)
	err = a.Receive(context.Background(), bus.ReceiveConfig{}, nil)
	require.Error(t, err)
}

func TestAgent_CallServe(t *testing.T) {
	b := bustest.Run(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	caller := newAgent(t, b, "agent-1")
	server := newAgent(t, b, "agent-2")
	sub, err := server.Serve(func(r bus.RPCRequest) ([]byte, error) {
		if r.Method == "fail" {
			return nil, errors.New("no such task")
		}
		return []byte(r.From + " called " + r.Method + " with " + string(r.Data)), nil
	})
	require.NoError(t, err)
	defer sub.Unsubscribe()

	out, err := caller.Call(ctx, "agent-2", "task.status", []byte("ADR-028"))
	require.NoError(t, err)
	assert.Equal(t, "agent-1 called task.status with ADR-028", string(out))

	_, err = caller.Call(ctx, "agent-2", "fail", nil)
	require.ErrorIs(t, err, bus.ErrRemote)
	assert.Contains(t, err.Error(), "no such task")

	_, err = caller.Call(ctx, "agent-7", "ping", nil)
	require.ErrorIs(t, err, nats.ErrNoResponders)

	_, err = caller.Call(ctx, "agent-2", "bad method", nil)
	require.ErrorIs(t, err, subjects.ErrBadToken)

	// RPC never touches a stream.
	s, err := b.JetStream().Stream(ctx, bus.StreamMsg)
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	assert.Zero(t, info.State.Msgs)
}

func TestConsumerName(t *testing.T) {
	assert.Equal(t, "agent-1", bus.ConsumerName("agent-1"))
	assert.Equal(t, "team%2Fagent%5C1", bus.ConsumerName(`team/agent\1`))
}

func TestBus_Restart_KeepsUnacked(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	start := func() *bus.Bus {
		b, err := bus.Start(ctx, bus.Config{DataDir: dir, Listen: "127.0.0.1:-1"}, bustest.Logger(t))
		require.NoError(t, err)
		return b
	}
	b := start()
	orch, err := bus.NewAgent("orchestrator", b.Conn())
	require.NoError(t, err)
	for i := range 3 {
		_, err := orch.Send(ctx, "agent-2", "task.assign", []byte{byte('a' + i)})
		require.NoError(t, err)
	}
	// agent-2 handles the first message only, then the server restarts.
	a2, err := bus.NewAgent("agent-2", b.Conn())
	require.NoError(t, err)
	r := startReceiver(t, a2, bus.ReceiveConfig{}, func(m bus.Message) error {
		if string(m.Data) != "a" {
			return errors.New("busy")
		}
		return nil
	})
	require.Eventually(t, func() bool { return len(r.got()) == 1 }, 5*time.Second, 5*time.Millisecond)
	require.NoError(t, r.stop())
	b.Close()

	b = start()
	defer b.Close()
	a2, err = bus.NewAgent("agent-2", b.Conn())
	require.NoError(t, err)
	r = startReceiver(t, a2, bus.ReceiveConfig{}, nil)
	require.Eventually(t, func() bool { return len(r.got()) == 2 }, 5*time.Second, 5*time.Millisecond)
	require.NoError(t, r.stop())
	got := r.got()
	assert.Equal(t, "b", string(got[0].Data))
	assert.Equal(t, "c", string(got[1].Data))
}

func TestAgent_Serve_IgnoresNonContractSubjects(t *testing.T) {
	b := bustest.Run(t)
	sub, err := newAgent(t, b, "agent-2").Serve(func(bus.RPCRequest) ([]byte, error) { return []byte("answered"), nil })
	require.NoError(t, err)
	defer sub.Unsubscribe()
	nc := bustest.Connect(t, b)
	_, err = nc.Request("codi.rpc.agent-2.all.ping", nil, 200*time.Millisecond)
	require.ErrorIs(t, err, nats.ErrTimeout, "a call claiming to come from all is not answered")
	m, err := nc.Request("codi.rpc.agent-2.agent-1.ping", nil, 2*time.Second)
	require.NoError(t, err)
	assert.Equal(t, "answered", string(m.Data))

	nc.Close()
	a, err := bus.NewAgent("agent-3", nc)
	require.NoError(t, err)
	_, err = a.Serve(func(bus.RPCRequest) ([]byte, error) { return nil, nil })
	require.ErrorIs(t, err, nats.ErrConnectionClosed)
}

func TestStart_DebugAndTrace(t *testing.T) {
	var logs proctest.Buffer
	b, err := bus.Start(context.Background(), bus.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:-1", Debug: true, Trace: true},
		zerolog.New(&logs).Level(zerolog.TraceLevel))
	require.NoError(t, err)
	nc := bustest.Connect(t, b)
	require.NoError(t, nc.Publish("codi.trace.me", []byte("x")))
	require.NoError(t, nc.Flush())
	nc.Close()
	b.Close()
	assert.Contains(t, logs.String(), `"level":"trace"`)
	assert.Contains(t, logs.String(), "codi.trace.me")
}

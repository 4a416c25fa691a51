package bus_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
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
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sendN sends n messages "1".."n" from orchestrator to agent to.
func sendN(t *testing.T, b *bus.Bus, to string, from, n int) {
	t.Helper()
	orch := newAgent(t, b, "orchestrator")
	for i := from; i < from+n; i++ {
		_, err := orch.Send(context.Background(), to, "task.assign", []byte(strconv.Itoa(i)))
		require.NoError(t, err)
	}
}

func datas(msgs []bus.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = string(m.Data)
	}
	return out
}

func seq(from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, strconv.Itoa(i))
	}
	return out
}

// Issue 10, input 1: an operator deletes the inbox consumer while Receive
// runs; mail sent afterwards is still delivered, and nothing handled before
// is handed over again.
func TestAgent_Receive_ConsumerDeletedIsRecreated(t *testing.T) {
	for _, tt := range []struct {
		name    string
		deliver bus.DeliverFrom
	}{
		{"deliver all", bus.DeliverAll},
		{"deliver new", bus.DeliverNew},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := bustest.Run(t)
			ctx := context.Background()
			r := startReceiver(t, newAgent(t, b, "agent-1"), bus.ReceiveConfig{Deliver: tt.deliver}, nil)
			// The consumer exists once Receive pulls.
			require.Eventually(t, func() bool {
				_, err := b.JetStream().Consumer(ctx, bus.StreamMsg, "agent-1")
				return err == nil
			}, 5*time.Second, 5*time.Millisecond)
			sendN(t, b, "agent-1", 1, 3)
			require.Eventually(t, func() bool { return len(r.got()) == 3 }, 5*time.Second, 5*time.Millisecond)

			require.NoError(t, b.JetStream().DeleteConsumer(ctx, bus.StreamMsg, "agent-1"))
			sendN(t, b, "agent-1", 4, 2)
			require.Eventually(t, func() bool { return len(r.got()) == 5 }, 10*time.Second, 5*time.Millisecond,
				"mail sent after the consumer was deleted is delivered")
			require.NoError(t, r.stop())
			assert.Equal(t, seq(1, 5), datas(r.got()), "in order, once each")
			_, err := b.JetStream().Consumer(ctx, bus.StreamMsg, "agent-1")
			require.NoError(t, err, "the consumer exists again")
		})
	}
}

// Issue 10, input 2: a handler slower than a third of AckWait must not see
// a message twice, however many are queued, nor one that outlasts AckWait.
func TestAgent_Receive_SlowHandlerSeesEachOnce(t *testing.T) {
	b := bustest.Run(t)
	sendN(t, b, "agent-1", 1, 6)
	cfg := bus.ReceiveConfig{AckWait: time.Second}
	var running atomic.Int32
	r := startReceiver(t, newAgent(t, b, "agent-1"), cfg, func(m bus.Message) error {
		if running.Add(1) != 1 {
			return errors.New("two handlers at once")
		}
		defer running.Add(-1)
		d := 400 * time.Millisecond
		if string(m.Data) == "3" {
			d = 2500 * time.Millisecond // longer than AckWait
		}
		time.Sleep(d) // the handler's work
		return nil
	})
	require.Eventually(t, func() bool { return len(r.got()) == 6 }, 20*time.Second, 10*time.Millisecond)
	require.NoError(t, r.stop())
	assert.Equal(t, seq(1, 6), datas(r.got()))
	for _, m := range r.got() {
		assert.Equal(t, uint64(1), m.Delivered, "message %s delivered once", m.Data)
	}
	// The consumer's delivery count includes redeliveries: there were none.
	cons, err := b.JetStream().Consumer(context.Background(), bus.StreamMsg, "agent-1")
	require.NoError(t, err)
	ci, err := cons.Info(context.Background())
	require.NoError(t, err)
	assert.Equal(t, uint64(6), ci.Delivered.Consumer)
	assert.Zero(t, ci.NumRedelivered)
	assert.Zero(t, ci.NumAckPending)
}

// Issue 10, input 3: Subscribe calls the handler one message at a time, in
// the order one sender sent them, inbox and broadcasts interleaved.
func TestAgent_Subscribe_OneAtATimeInOrder(t *testing.T) {
	b := bustest.Run(t)
	sender := newAgent(t, b, "agent-1")
	rcv := newAgent(t, b, "agent-2")
	const n = 2000
	var (
		running atomic.Int32
		overlap atomic.Bool
		mu      sync.Mutex
		got     []string
	)
	in, err := rcv.Subscribe(func(m bus.Message) {
		if running.Add(1) != 1 {
			overlap.Store(true)
		}
		mu.Lock()
		got = append(got, string(m.Data))
		mu.Unlock()
		running.Add(-1)
	})
	require.NoError(t, err)
	defer in.Unsubscribe()
	// Core NATS publishes on one connection keep their order and fill the
	// inbox faster than a handler drains it (the stream stores them too).
	nc := bustest.Connect(t, b)
	var want []string
	for i := range n {
		to := "agent-2"
		if i%3 == 0 {
			to = subjects.All
		}
		subj, err := subjects.Msg(to, sender.ID(), "seq")
		require.NoError(t, err)
		want = append(want, strconv.Itoa(i))
		require.NoError(t, nc.Publish(subj, []byte(strconv.Itoa(i))))
	}
	require.NoError(t, nc.Flush())
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == n
	}, 20*time.Second, 5*time.Millisecond)
	assert.False(t, overlap.Load(), "the handler ran on two goroutines at once")
	mu.Lock()
	assert.Equal(t, want, got)
	mu.Unlock()
}

func TestInbox_Unsubscribe_StopsAndWaits(t *testing.T) {
	b := bustest.Run(t)
	rcv := newAgent(t, b, "agent-2")
	entered := make(chan struct{})
	release := make(chan struct{})
	var calls atomic.Int32
	var in *bus.Inbox
	in, err := rcv.Subscribe(func(m bus.Message) {
		if calls.Add(1) == 1 {
			close(entered)
			<-release
		}
	})
	require.NoError(t, err)
	sendN(t, b, "agent-2", 1, 3)
	<-entered
	require.NoError(t, in.Unsubscribe())
	select {
	case <-in.Done():
		t.Fatal("Done closed while the handler ran")
	default:
	}
	close(release)
	<-in.Done()
	assert.Equal(t, int32(1), calls.Load(), "no handler call starts after Unsubscribe")
	require.NoError(t, in.Unsubscribe(), "idempotent")

	// Unsubscribe from the handler itself returns at once.
	var in2 *bus.Inbox
	ready := make(chan struct{})
	in2, err = rcv.Subscribe(func(bus.Message) {
		<-ready
		_ = in2.Unsubscribe()
	})
	require.NoError(t, err)
	close(ready)
	sendN(t, b, "agent-2", 4, 1)
	select {
	case <-in2.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Unsubscribe from the handler did not stop the inbox")
	}
}

// Issue 10, input 4: consumer names are one-to-one and fit JetStream's
// 255-byte limit; a 256-byte agent id can receive.
func TestConsumerName_OneToOneAndFits(t *testing.T) {
	long := strings.Repeat("a", subjects.MaxTokenLen)
	longSlash := strings.Repeat("/", subjects.MaxTokenLen)
	tests := []struct{ id, want string }{
		{"agent-1", "agent-1"},
		{`team/agent\1`, "team%2Fagent%5C1"},
		{"team/x", "team%2Fx"},
		{"team%2Fx", "team%252Fx"},
		{"100%", "100%25"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, bus.ConsumerName(tt.id), tt.id)
	}
	for _, id := range []string{long, longSlash, long[:255] + "é"[:1], "é" + long[:254]} {
		name := bus.ConsumerName(id)
		assert.LessOrEqual(t, len(name), 255, id)
		assert.Contains(t, name, "%H")
	}
	assert.Equal(t, strings.Repeat("a", 255), bus.ConsumerName(long[:255]), "255 bytes fit as they are")
	assert.NotEqual(t, bus.ConsumerName(long), bus.ConsumerName(long[:255]+"b"))

	// Agent ids are tokens with one spelling (issue 12): "team%2Fx" and a
	// bare "%" are not ids, "team%25x" (the escape of "team%x") is.
	require.Error(t, subjects.ValidAgent("team%2Fx"))
	b := bustest.Run(t)
	ids := []string{"team/x", "team%25x", "team%252Fx", long, strings.Repeat("%25", 66)}
	for i, id := range ids {
		_, err := newAgent(t, b, "orchestrator").Send(context.Background(), id, "task", []byte(strconv.Itoa(i)))
		require.NoError(t, err)
	}
	for i, id := range ids {
		r := startReceiver(t, newAgent(t, b, id), bus.ReceiveConfig{UntilIdle: true}, nil)
		require.NoError(t, r.wait(t))
		require.Len(t, r.got(), 1, id)
		assert.Equal(t, strconv.Itoa(i), string(r.got()[0].Data), id)
	}
}

func FuzzConsumerName(f *testing.F) {
	for _, s := range []string{"agent-1", "team/x", "team%2Fx", `a\b`, strings.Repeat("%", 90), strings.Repeat("é", 128)} {
		f.Add(s, s+"x")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		if subjects.ValidAgent(a) != nil || subjects.ValidAgent(b) != nil {
			return
		}
		na, nb := bus.ConsumerName(a), bus.ConsumerName(b)
		if len(na) > 255 || strings.ContainsAny(na, "/\\ \t\r\n.*>") {
			t.Fatalf("bad consumer name %q for %q", na, a)
		}
		if (a == b) != (na == nb) {
			t.Fatalf("%q and %q map to %q and %q", a, b, na, nb)
		}
	})
}

// Issue 10, input 5: the limit is the server's max payload for data and
// headers together; every payload over what Send can carry is refused with
// ErrPayloadTooLarge naming the numbers, and the largest it names is stored.
func TestAgent_Send_PayloadLimitCountsHeaders(t *testing.T) {
	b := bustest.Run(t)
	ctx := context.Background()
	a := newAgent(t, b, "agent-1")
	for _, size := range []int{1_048_528, 1_048_536, 1_048_550, 1_048_576, 1_048_577} {
		_, err := a.Send(ctx, "agent-2", "blob", make([]byte, size))
		require.ErrorIs(t, err, bus.ErrPayloadTooLarge, "size %d", size)
		assert.Contains(t, err.Error(), "the server allows 1048576")
	}
	_, err := a.Send(ctx, "agent-2", "blob", make([]byte, 1_048_536))
	var most int
	_, scanErr := fmtSscanfAtMost(err.Error(), &most)
	require.NoError(t, scanErr, err.Error())
	assert.Equal(t, 1_048_527, most, "the README's figure")
	ack, err := a.Send(ctx, "agent-2", "blob", make([]byte, most))
	require.NoError(t, err, "the largest payload the error names is stored")
	assert.NotZero(t, ack.Sequence)
	_, err = a.Send(ctx, "agent-2", "blob", make([]byte, most+1))
	require.ErrorIs(t, err, bus.ErrPayloadTooLarge)
	// A header of the caller's counts too.
	_, err = a.Send(ctx, "agent-2", "blob", make([]byte, most), bus.WithHeader("X-Trace", "t"))
	require.ErrorIs(t, err, bus.ErrPayloadTooLarge)
}

// fmtSscanfAtMost reads the "at most N of data" figure of a payload error.
func fmtSscanfAtMost(s string, n *int) (int, error) {
	_, rest, ok := strings.Cut(s, "at most ")
	if !ok {
		return 0, errors.New("no 'at most' in the error")
	}
	num, _, _ := strings.Cut(rest, " ")
	v, err := strconv.Atoi(num)
	*n = v
	return 1, err
}

// Issue 10, input 6: a stored message whose subject breaks the contract
// reaches the handler, with Err saying why, on both paths.
func TestAgent_Receive_DeliversMalformedSubjects(t *testing.T) {
	b := bustest.Run(t)
	ctx := context.Background()
	nc := bustest.Connect(t, b)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	a2 := newAgent(t, b, "agent-2")
	live := make(chan bus.Message, 10)
	in, err := a2.Subscribe(func(m bus.Message) { live <- m })
	require.NoError(t, err)
	defer in.Unsubscribe()
	for _, subj := range []string{"codi.msg.agent-2.agent-1", "codi.msg.agent-2.all.x", "codi.msg.all.agent-1", "codi.msg.agent-2", "codi.msg.all"} {
		_, err = js.Publish(ctx, subj, []byte("{}"))
		require.NoError(t, err)
	}
	_, err = newAgent(t, b, "agent-1").Send(ctx, "agent-2", "good", []byte("ok"))
	require.NoError(t, err)

	r := startReceiver(t, a2, bus.ReceiveConfig{UntilIdle: true}, nil)
	require.NoError(t, r.wait(t))
	got := r.got()
	require.Len(t, got, 6, "every stored message reaches the handler")
	assert.Equal(t, "agent-1", got[0].From)
	assert.Equal(t, "", got[0].Type)
	assert.ErrorIs(t, got[0].Err, subjects.ErrUnknown)
	assert.Equal(t, "all", got[1].From)
	assert.Error(t, got[1].Err)
	assert.Equal(t, "all", got[2].To)
	assert.Equal(t, "agent-1", got[2].From)
	assert.Equal(t, "", got[2].Type)
	assert.Error(t, got[2].Err)
	for _, m := range got[3:5] {
		assert.Equal(t, "", m.From, m.Subject)
		assert.Error(t, m.Err, m.Subject)
	}
	assert.Equal(t, "agent-2", got[3].To)
	assert.Equal(t, "all", got[4].To)
	assert.Equal(t, "good", got[5].Type)
	assert.NoError(t, got[5].Err)
	for range 6 {
		select {
		case <-live:
		case <-time.After(5 * time.Second):
			t.Fatal("the live inbox dropped a message")
		}
	}
}

// A consumer deleted while a catch-up runs (from the handler, to hit the
// moment exactly): the catch-up recreates it and still hands over every
// message once, then returns.
func TestAgent_Receive_UntilIdle_ConsumerDeleted(t *testing.T) {
	b := bustest.Run(t)
	sendN(t, b, "agent-1", 1, 50)
	js := b.JetStream()
	r := startReceiver(t, newAgent(t, b, "agent-1"), bus.ReceiveConfig{UntilIdle: true}, func(m bus.Message) error {
		if string(m.Data) == "20" {
			return js.DeleteConsumer(context.Background(), bus.StreamMsg, "agent-1")
		}
		return nil
	})
	require.NoError(t, r.wait(t))
	assert.Equal(t, seq(1, 50), datas(r.got()))
}

// Issue 10, input 7: a handler that keeps failing gets the message with a
// growing delay, MaxDeliver times, then the message is terminated and
// recorded in CODI_AUDIT; the messages behind it go on, in order.
func TestAgent_Receive_PoisonMessageIsTerminatedAndRecorded(t *testing.T) {
	b := bustest.Run(t)
	ctx := context.Background()
	sendN(t, b, "agent-2", 1, 2)
	var (
		mu       sync.Mutex
		attempts []time.Time
	)
	cfg := bus.ReceiveConfig{MaxDeliver: 4, RetryDelay: 50 * time.Millisecond, MaxRetryDelay: 150 * time.Millisecond, UntilIdle: true}
	r := startReceiver(t, newAgent(t, b, "agent-2"), cfg, func(m bus.Message) error {
		if string(m.Data) == "1" {
			mu.Lock()
			attempts = append(attempts, time.Now())
			mu.Unlock()
			return errors.New("cannot parse task")
		}
		return nil
	})
	require.NoError(t, r.wait(t), "UntilIdle returns once the poison message is terminated")
	assert.Equal(t, []string{"2"}, datas(r.got()))
	mu.Lock()
	require.Len(t, attempts, 4)
	for i, want := range []time.Duration{50, 100, 150} {
		assert.GreaterOrEqual(t, attempts[i+1].Sub(attempts[i]), want*time.Millisecond-5*time.Millisecond, "retry %d waited", i+1)
	}
	mu.Unlock()

	audit, err := b.JetStream().Stream(ctx, bus.StreamAudit)
	require.NoError(t, err)
	m, err := audit.GetLastMsgForSubject(ctx, "codi.audit.log.agent-2.mail.terminated")
	require.NoError(t, err)
	var rec bus.Terminated
	require.NoError(t, json.Unmarshal(m.Data, &rec))
	assert.Equal(t, "agent-2", rec.Agent)
	assert.Equal(t, uint64(1), rec.Seq)
	assert.Equal(t, uint64(4), rec.Deliveries)
	assert.Equal(t, "cannot parse task", rec.Error)
	assert.Equal(t, "codi.msg.agent-2.orchestrator.task.assign", rec.Subject)
}

// Issue 10, input 8: the start points of a new consumer.
func TestAgent_Receive_DeliverFrom(t *testing.T) {
	b := bustest.Run(t)
	ctx := context.Background()
	orch := newAgent(t, b, "orchestrator")
	since := oldAndMid(t, b, orch)

	for _, tt := range []struct {
		name    string
		deliver bus.DeliverFrom
		want    []string
	}{
		{"all by default", bus.DeliverFrom{}, []string{"old", "mid", "new"}},
		{"all", bus.DeliverAll, []string{"old", "mid", "new"}},
		{"since", bus.DeliverSince(since), []string{"mid", "new"}},
		{"new", bus.DeliverNew, []string{"new"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			id := "agent-" + strings.ReplaceAll(tt.name, " ", "-")
			a := newAgent(t, b, id)
			// Create the consumer, then send "new" to this agent only.
			r := startReceiver(t, a, bus.ReceiveConfig{Deliver: tt.deliver, UntilIdle: true}, nil)
			require.NoError(t, r.wait(t))
			_, err := orch.Send(ctx, id, "standup", []byte("new"))
			require.NoError(t, err)
			r2 := startReceiver(t, a, bus.ReceiveConfig{Deliver: bus.DeliverAll, UntilIdle: true}, nil)
			require.NoError(t, r2.wait(t))
			assert.Equal(t, tt.want, append(datas(r.got()), datas(r2.got())...), "an existing consumer keeps its start")
		})
	}
}

// Issue 10, input 9: catch up on what is pending, then return.
func TestAgent_Receive_UntilIdleAndMax(t *testing.T) {
	b := bustest.Run(t)
	a := newAgent(t, b, "agent-1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []string
	h := func(_ context.Context, m bus.Message) error { got = append(got, string(m.Data)); return nil }

	start := time.Now()
	require.NoError(t, a.Receive(ctx, bus.ReceiveConfig{UntilIdle: true}, h), "empty inbox")
	assert.Less(t, time.Since(start), 3*time.Second, "an empty catch-up does not wait for a pull to expire")
	assert.Empty(t, got)

	sendN(t, b, "agent-1", 1, 5)
	require.NoError(t, a.Receive(ctx, bus.ReceiveConfig{Max: 2}, h))
	assert.Equal(t, seq(1, 2), got)
	require.NoError(t, a.Receive(ctx, bus.ReceiveConfig{UntilIdle: true}, h))
	assert.Equal(t, seq(1, 5), got)
	require.NoError(t, ctx.Err(), "returned by itself")
}

// An existing consumer made with other settings (the nats CLI, an older
// codi2) is brought to one-at-a-time delivery, keeping its position.
func TestAgent_Receive_UpdatesExistingConsumer(t *testing.T) {
	b := bustest.Run(t)
	ctx := context.Background()
	sendN(t, b, "agent-1", 1, 3)
	_, err := b.JetStream().CreateConsumer(ctx, bus.StreamMsg, jetstream.ConsumerConfig{
		Durable: "agent-1", AckPolicy: jetstream.AckExplicitPolicy, FilterSubject: "codi.msg.agent-1.>",
		DeliverPolicy: jetstream.DeliverLastPolicy,
	})
	require.NoError(t, err)
	r := startReceiver(t, newAgent(t, b, "agent-1"), bus.ReceiveConfig{UntilIdle: true}, nil)
	require.NoError(t, r.wait(t))
	assert.Equal(t, []string{"3"}, datas(r.got()), "the consumer kept its start")
	cons, err := b.JetStream().Consumer(ctx, bus.StreamMsg, "agent-1")
	require.NoError(t, err)
	ci := cons.CachedInfo()
	assert.Equal(t, 1, ci.Config.MaxAckPending)
	assert.ElementsMatch(t, []string{"codi.msg.agent-1.>", "codi.msg.all.>", "codi.msg.agent-1", "codi.msg.all"}, ci.Config.FilterSubjects)
}

func TestAgent_Receive_ClosedConnection(t *testing.T) {
	b := bustest.Run(t)
	nc, err := nats.Connect(b.ClientURL())
	require.NoError(t, err)
	a, err := bus.NewAgent("agent-1", nc)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() {
		done <- a.Receive(context.Background(), bus.ReceiveConfig{}, func(context.Context, bus.Message) error { return nil })
	}()
	require.Eventually(t, func() bool {
		_, err := b.JetStream().Consumer(context.Background(), bus.StreamMsg, "agent-1")
		return err == nil
	}, 5*time.Second, 5*time.Millisecond)
	nc.Close()
	select {
	case err := <-done:
		require.ErrorIs(t, err, nats.ErrConnectionClosed)
		assert.Contains(t, err.Error(), "agent-1")
	case <-time.After(15 * time.Second):
		t.Fatal("Receive did not return after its connection closed")
	}
}

// A consumer recreated by someone else at an older position (here: deleted,
// then made again delivering everything) brings back messages Receive has
// handled: they are acked without reaching the handler again.
func TestAgent_Receive_OlderPositionNotHandedOverAgain(t *testing.T) {
	b := bustest.Run(t)
	ctx := context.Background()
	r := startReceiver(t, newAgent(t, b, "agent-1"), bus.ReceiveConfig{}, nil)
	sendN(t, b, "agent-1", 1, 3)
	require.Eventually(t, func() bool { return len(r.got()) == 3 }, 5*time.Second, 5*time.Millisecond)
	js := b.JetStream()
	// Receive notices the delete and makes the consumer again itself: delete
	// and create until the one delivering everything is ours.
	require.Eventually(t, func() bool {
		_ = js.DeleteConsumer(ctx, bus.StreamMsg, "agent-1")
		cons, err := js.CreateConsumer(ctx, bus.StreamMsg, jetstream.ConsumerConfig{
			Durable: "agent-1", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 1,
			FilterSubjects: []string{"codi.msg.agent-1.>", "codi.msg.all.>"},
		})
		return err == nil && cons.CachedInfo().Config.DeliverPolicy == jetstream.DeliverAllPolicy
	}, 10*time.Second, 10*time.Millisecond)
	sendN(t, b, "agent-1", 4, 1)
	require.Eventually(t, func() bool { return len(r.got()) == 4 }, 10*time.Second, 5*time.Millisecond)
	require.NoError(t, r.stop())
	assert.Equal(t, seq(1, 4), datas(r.got()))
	cons, err := js.Consumer(ctx, bus.StreamMsg, "agent-1")
	require.NoError(t, err)
	ci, err := cons.Info(ctx)
	require.NoError(t, err)
	assert.Equal(t, uint64(4), ci.AckFloor.Stream, "the old messages were acked")
}

// Receive rides out a restart of the server: the mail sent after it
// arrives, nothing is handed over twice.
func TestAgent_Receive_ServerRestart(t *testing.T) {
	dir := t.TempDir()
	port := proctest.FreePort(t)
	listen := "127.0.0.1:" + strconv.Itoa(port)
	start := func() *bus.Bus {
		b, err := bus.Start(context.Background(), bus.Config{DataDir: dir, Listen: listen}, bustest.Logger(t))
		require.NoError(t, err)
		return b
	}
	b := start()
	nc := bustest.Connect(t, b, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	a, err := bus.NewAgent("agent-1", nc)
	require.NoError(t, err)
	r := startReceiver(t, a, bus.ReceiveConfig{}, nil)
	sendN(t, b, "agent-1", 1, 2)
	require.Eventually(t, func() bool { return len(r.got()) == 2 }, 5*time.Second, 5*time.Millisecond)
	b.Close()
	b = start()
	defer b.Close()
	sendN(t, b, "agent-1", 3, 2)
	require.Eventually(t, func() bool { return len(r.got()) == 4 }, 20*time.Second, 10*time.Millisecond)
	require.NoError(t, r.stop())
	assert.Equal(t, seq(1, 4), datas(r.got()))
}

// When the terminated message's audit record cannot be stored (CODI_AUDIT
// is gone), the message is not terminated: it is retried until the record
// is stored.
func TestAgent_Receive_TerminateWaitsForItsRecord(t *testing.T) {
	b := bustest.Run(t)
	ctx := context.Background()
	js := b.JetStream()
	audit, err := js.Stream(ctx, bus.StreamAudit)
	require.NoError(t, err)
	auditCfg := audit.CachedInfo().Config
	require.NoError(t, js.DeleteStream(ctx, bus.StreamAudit))
	sendN(t, b, "agent-2", 1, 1)
	var calls atomic.Int32
	cfg := bus.ReceiveConfig{MaxDeliver: 1, RetryDelay: 10 * time.Millisecond, MaxRetryDelay: 20 * time.Millisecond, UntilIdle: true}
	r := startReceiver(t, newAgent(t, b, "agent-2"), cfg, func(bus.Message) error {
		if calls.Add(1) == 2 {
			_, err := js.CreateStream(ctx, auditCfg)
			if err != nil {
				return err
			}
		}
		return errors.New("poison")
	})
	require.NoError(t, r.wait(t))
	assert.GreaterOrEqual(t, calls.Load(), int32(2), "tried again while the record could not be stored")
	audit, err = js.Stream(ctx, bus.StreamAudit)
	require.NoError(t, err)
	_, err = audit.GetLastMsgForSubject(ctx, "codi.audit.log.agent-2.mail.terminated")
	require.NoError(t, err)
}

// oldAndMid broadcasts "old" and then "mid" from orch, the first stored
// strictly before the returned time and the second at or after it: for
// tests of where a new consumer starts.
func oldAndMid(t *testing.T, b *bus.Bus, orch *bus.Agent) time.Time {
	t.Helper()
	ctx := context.Background()
	_, err := orch.Broadcast(ctx, "standup", []byte("old"))
	require.NoError(t, err)
	s, err := b.JetStream().Stream(ctx, bus.StreamMsg)
	require.NoError(t, err)
	old, err := s.GetMsg(ctx, 1)
	require.NoError(t, err)
	since := old.Time.Add(time.Nanosecond)
	require.Eventually(t, func() bool { return time.Now().After(since) }, time.Second, time.Millisecond)
	_, err = orch.Broadcast(ctx, "standup", []byte("mid"))
	require.NoError(t, err)
	return since
}

// Open makes the inbox consumer without taking anything: with DeliverNew
// what was stored before is never handed over (a session-derived agent);
// an existing consumer keeps its start. With and without the inbox
// service.
func TestAgent_Open(t *testing.T) {
	for _, withService := range []bool{false, true} {
		t.Run(fmt.Sprintf("inbox service %v", withService), func(t *testing.T) {
			b := bustest.Run(t)
			if withService {
				serveInboxes(t, b)
			}
			ctx := context.Background()
			orch := newAgent(t, b, "orchestrator")
			oldAndMid(t, b, orch)
			a := newAgent(t, b, "agent-1")
			require.NoError(t, a.Open(ctx, bus.DeliverNew))
			pending, err := a.Peek(ctx, 10)
			require.NoError(t, err)
			assert.Empty(t, pending, "nothing from before the consumer")
			_, err = orch.Send(ctx, "all", "standup", []byte("new"))
			require.NoError(t, err)
			require.NoError(t, a.Open(ctx, bus.DeliverAll), "an existing consumer keeps its start")
			r := startReceiver(t, a, bus.ReceiveConfig{UntilIdle: true}, nil)
			require.NoError(t, r.wait(t))
			assert.Equal(t, []string{"new"}, datas(r.got()))
		})
	}
}
